"""Scalar functions: logic, BLANK handling, text, math and dates, by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from loom.engines.contracts import QueryError
from loom.engines.dax import values as v
from loom.engines.dax.calculate import calculate
from loom.engines.dax.relations import TableRow
from loom.engines.dax.syntax import Call, Empty, Node
from loom.engines.dax.values import Expr

if TYPE_CHECKING:
    from loom.engines.dax.compiler import Compiler, Env

Handler = Callable[["Compiler", tuple[Node, ...], "Env"], Expr]


def _arity(name: str, args: tuple[Node, ...], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise QueryError("wrong_arguments", f"{name} takes {want} arguments, not {len(args)}.")


def _given(node: Node) -> bool:
    return not isinstance(node, Empty)


def if_(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    _arity("IF", args, 2, 3)
    test = v.condition(c.scalar(args[0], env))
    then = c.scalar(args[1], env)
    other = c.scalar(args[2], env) if len(args) == 3 and _given(args[2]) else v.blank()
    return Expr(f"(CASE WHEN {test} THEN {then.sql} ELSE {other.sql} END)", _kind(then, other))


def switch(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    """SWITCH(value, v1, r1, …, [else]); SWITCH(TRUE(), condition1, r1, …) tests conditions."""
    if len(args) < 3:
        raise QueryError(
            "wrong_arguments", "SWITCH takes a value, then value/result pairs, then an optional else."
        )
    subject = c.scalar(args[0], env)
    pairs = args[1:]
    default = c.scalar(pairs[-1], env) if len(pairs) % 2 == 1 else v.blank()
    pairs = pairs[: len(pairs) - len(pairs) % 2]
    branches, results = [], [default]
    by_truth = isinstance(args[0], Call) and args[0].name == "TRUE"
    for test_node, result_node in zip(pairs[::2], pairs[1::2], strict=True):
        test = c.scalar(test_node, env)
        result = c.scalar(result_node, env)
        results.append(result)
        condition = v.condition(test) if by_truth else v.condition(v.compare("=", subject, test))
        branches.append(f"WHEN {condition} THEN {result.sql}")
    kind = results[0].kind
    for r in results[1:]:
        kind = _kind(Expr("", kind), r)
    return Expr(f"(CASE {' '.join(branches)} ELSE {default.sql} END)", kind)


def divide(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    """DIVIDE(a, b, [alternate]): the alternate (BLANK by default) when b is 0 or BLANK."""
    _arity("DIVIDE", args, 2, 3)
    a, b = c.scalar(args[0], env), c.scalar(args[1], env)
    quotient = f"CAST({a.sql} AS DOUBLE) / NULLIF({b.sql}, 0)"
    if len(args) < 3 or not _given(args[2]):
        return Expr(f"({quotient})", v.NUMBER)
    alternate = c.scalar(args[2], env)
    return Expr(f"(CASE WHEN NULLIF({b.sql}, 0) IS NULL THEN {alternate.sql} ELSE {quotient} END)", v.NUMBER)


def _kind(a: Expr, b: Expr) -> str:
    kinds = {a.kind, b.kind} - {v.BLANK}
    return kinds.pop() if len(kinds) == 1 else (v.BLANK if not kinds else v.ANY)


def _simple(name: str, low: int, high: int, build: Callable[..., str], kind: str) -> Handler:
    def compile_it(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
        _arity(name, args, low, high)
        return Expr(build(*[c.scalar(a, env) for a in args]), kind)

    return compile_it


def related(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    """RELATED(Table[Column]): the column of the row the current row looks up."""
    _arity("RELATED", args, 1, 1)
    for row in reversed(env.rows):
        if isinstance(row, TableRow):
            looking = TableRow(row.scope, row.model, row.sources, row.aliases, lookups=True)
            from loom.engines.dax.aggregations import column_arg

            found = looking.column(column_arg(c, args[0], "RELATED"))
            if found is not None:
                return found
    raise QueryError(
        "no_row_context",
        "RELATED needs a row of a table that looks up the column's table (iterate the table with "
        "SUMX, FILTER or ADDCOLUMNS; the relationship must go from it to the column's table).",
    )


def _two(
    name: str, combine: Callable[[Expr, Expr], Expr], c: Compiler, args: tuple[Node, ...], env: Env
) -> Expr:
    _arity(name, args, 2, 2)
    return combine(c.scalar(args[0], env), c.scalar(args[1], env))


def _coalesce(*values: Expr) -> str:
    return f"COALESCE({', '.join(x.sql for x in values)})"


def _blank_kind(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    _arity("BLANK", args, 0, 0)
    return v.blank()


def _mround(a: Expr, b: Expr) -> str:
    return f"(round(CAST({a.sql} AS DOUBLE) / {b.sql}) * {b.sql})"


def _round(a: Expr, digits: Expr | None = None) -> str:
    # DAX rounds halves away from zero, as DuckDB's round does for DOUBLE.
    return f"round(CAST({a.sql} AS DOUBLE), {digits.sql if digits else 0})"


def _value(a: Expr) -> str:
    return f"TRY_CAST(trim({v.as_text(a)}) AS DOUBLE)" if a.kind == v.TEXT else a.sql


FUNCTIONS: dict[str, Handler] = {
    "IF": if_,
    "SWITCH": switch,
    "DIVIDE": divide,
    "CALCULATE": calculate,
    "RELATED": related,
    "BLANK": _blank_kind,
    "TRUE": _simple("TRUE", 0, 0, lambda: "TRUE", v.BOOLEAN),
    "FALSE": _simple("FALSE", 0, 0, lambda: "FALSE", v.BOOLEAN),
    "NOT": _simple("NOT", 1, 1, lambda a: f"(NOT {v.truth(a)})", v.BOOLEAN),
    "AND": lambda c, args, env: _two("AND", v.both, c, args, env),
    "OR": lambda c, args, env: _two("OR", v.either, c, args, env),
    "ISBLANK": _simple("ISBLANK", 1, 1, lambda a: f"({a.sql} IS NULL)", v.BOOLEAN),
    "COALESCE": _simple("COALESCE", 2, 64, _coalesce, v.ANY),
    "ABS": _simple("ABS", 1, 1, lambda a: f"abs({a.sql})", v.NUMBER),
    "ROUND": _simple("ROUND", 1, 2, _round, v.NUMBER),
    "INT": _simple("INT", 1, 1, lambda a: f"CAST(floor({a.sql}) AS BIGINT)", v.NUMBER),
    "TRUNC": _simple("TRUNC", 1, 1, lambda a: f"trunc({a.sql})", v.NUMBER),
    "MROUND": _simple("MROUND", 2, 2, _mround, v.NUMBER),
    "MOD": _simple(
        "MOD",
        2,
        2,
        # DAX gives an error for a divisor of 0, not NaN.
        lambda a, b: (
            f"(CASE WHEN {b.sql} = 0 THEN error('MOD: the divisor is 0') "
            f"ELSE {a.sql} - {b.sql} * floor(CAST({a.sql} AS DOUBLE) / {b.sql}) END)"
        ),
        v.NUMBER,
    ),
    "POWER": _simple("POWER", 2, 2, lambda a, b: f"power({a.sql}, {b.sql})", v.NUMBER),
    "SQRT": _simple("SQRT", 1, 1, lambda a: f"sqrt({a.sql})", v.NUMBER),
    "VALUE": _simple("VALUE", 1, 1, _value, v.NUMBER),
    "LEFT": _simple("LEFT", 1, 2, lambda a, n=None: f"left({v.as_text(a)}, {n.sql if n else 1})", v.TEXT),
    "RIGHT": _simple("RIGHT", 1, 2, lambda a, n=None: f"right({v.as_text(a)}, {n.sql if n else 1})", v.TEXT),
    "MID": _simple("MID", 3, 3, lambda a, s, n: f"substr({v.as_text(a)}, {s.sql}, {n.sql})", v.TEXT),
    "LEN": _simple("LEN", 1, 1, lambda a: f"length(COALESCE({v.as_text(a)}, ''))", v.NUMBER),
    "UPPER": _simple("UPPER", 1, 1, lambda a: f"upper({v.as_text(a)})", v.TEXT),
    "LOWER": _simple("LOWER", 1, 1, lambda a: f"lower({v.as_text(a)})", v.TEXT),
    "TRIM": _simple("TRIM", 1, 1, lambda a: f"trim({v.as_text(a)})", v.TEXT),
    "CONCATENATE": _simple("CONCATENATE", 2, 2, lambda a, b: v.concat(a, b).sql, v.TEXT),
    "YEAR": _simple("YEAR", 1, 1, lambda a: f"year({a.sql})", v.NUMBER),
    "MONTH": _simple("MONTH", 1, 1, lambda a: f"month({a.sql})", v.NUMBER),
    "DAY": _simple("DAY", 1, 1, lambda a: f"day({a.sql})", v.NUMBER),
    "QUARTER": _simple("QUARTER", 1, 1, lambda a: f"quarter({a.sql})", v.NUMBER),
    "DATE": _simple(
        "DATE", 3, 3, lambda y, m, d: f"CAST(make_date({y.sql}, {m.sql}, {d.sql}) AS TIMESTAMP)", v.DATETIME
    ),
}
