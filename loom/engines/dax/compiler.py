"""DAX → one DuckDB SQL query, with DAX's semantics.

Every scalar is a SQL expression evaluated where the rows it depends on are in scope: an
aggregation in a filter context is a correlated subquery over the aggregated table, its filters
written on that table's rows (and the tables it looks up, joined); a SUMMARIZECOLUMNS row is a row
of the group-by columns' values, each measure a subquery correlated to it. DuckDB decorrelates such
subqueries into joins and group-bys (measured: within 1.2× of hand-written SQL when the correlation
is an equality at the top of the subquery, which is the only shape written here).

The filter context is kept symbolically (`filters.Context`) while compiling: CALCULATE's filter
arguments, ALL and KEEPFILTERS change it, context transition adds the current rows to it, and each
aggregation writes what reaches its table. Functions are in tables by name (`scalars.py`,
`tables.py`, `aggregations.py`); a name in none of them is refused with its name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from loom.engines.contracts import QueryError
from loom.engines.dax import values as v
from loom.engines.dax.filters import Context
from loom.engines.dax.model import Measure, SemanticModel
from loom.engines.dax.parser import parse_expression
from loom.engines.dax.relations import Rel, RelColumn, Row, TableRow
from loom.engines.dax.scope import Aliases, Col, Sources, TableScope, column_sql
from loom.engines.dax.syntax import (
    Binary,
    Bracket,
    Call,
    ColumnRef,
    Name,
    Node,
    Number,
    TableConstructor,
    Text,
    Unary,
    VarBlock,
)
from loom.engines.dax.values import Expr

MAX_MEASURE_DEPTH = 64  # measures calling measures: the model check refuses cycles; this bounds the rest


@dataclass(frozen=True)
class Env:
    ctx: Context = Context()
    rows: tuple[Row, ...] = ()
    vars: Mapping[str, Expr | Rel] = field(default_factory=dict)
    # How many of `rows` a CALCULATE has already turned into filters: their columns can still be
    # read, but an inner CALCULATE does not turn them into filters again (or the share-of-total
    # pattern, CALCULATE([m], ALL(T)) inside an iteration of T, would see one row's filter again).
    transitioned: int = 0
    home: str | None = None  # the table of the measure being evaluated: `SUM([Value])` reads its column

    def with_row(self, row: Row) -> Env:
        return replace(self, rows=(*self.rows, row))


class Compiler:
    def __init__(self, model: SemanticModel, sources: Sources, now: dt.datetime | None = None) -> None:
        from loom.engines.dax import aggregations, grouping, scalars, setops, tables, textdate, timeintel

        self.model = model
        self.sources = sources
        self.now = now or dt.datetime.now()  # TODAY() and NOW()
        self.aliases = Aliases()
        self.query_measures: dict[str, Measure] = {}
        self.query_vars: dict[str, Expr | Rel] = {}  # DEFINE VAR: seen by the query's own measures
        self.used_measures: list[str] = []
        self._parsed: dict[str, Node] = {}
        self._depth = 0
        self.scalar_functions: dict[str, Callable[[Compiler, tuple[Node, ...], Env], Expr]] = {
            **scalars.FUNCTIONS,
            **aggregations.FUNCTIONS,
            **timeintel.SCALAR_FUNCTIONS,
            **textdate.FUNCTIONS,
        }
        self.table_functions: dict[str, Callable[[Compiler, tuple[Node, ...], Env], Rel]] = {
            **tables.FUNCTIONS,
            **timeintel.TABLE_FUNCTIONS,
            **setops.FUNCTIONS,
            **grouping.FUNCTIONS,
        }

    # --- scalars ---------------------------------------------------------------------------------

    def scalar(self, node: Node, env: Env) -> Expr:
        if isinstance(node, Number):
            return v.number_literal(node.value)
        if isinstance(node, Text):
            return v.text_literal(node.value)
        if isinstance(node, VarBlock):
            return self.scalar(node.body, self.bind(node, env))
        handler = _SCALAR_NODES.get(type(node))
        if handler is not None:
            return handler(self, node, env)
        if isinstance(node, TableConstructor):
            raise QueryError(
                "type_mismatch", "A table constructor {…} is a table; a single value is expected here."
            )
        raise QueryError("unsupported", f"This expression is not supported here: {type(node).__name__}.")

    def _scalar_call(self, node: Call, env: Env) -> Expr:
        handler = self.scalar_functions.get(node.name)
        if handler is not None:
            return handler(self, node.args, env)
        if node.name in self.table_functions:
            return self.one_value(self.table(node, env), node.name)
        raise unsupported_function(node.name)

    def one_value(self, rel: Rel, what: str) -> Expr:
        """A table of one column where a single value is expected: its one value (BLANK when it is
        empty; more than one row fails the query, as in DAX)."""
        if len(rel.columns) != 1:
            raise QueryError(
                "type_mismatch",
                f"{what} returns a table of {len(rel.columns)} columns; a single value is expected here "
                f"(aggregate it, e.g. COUNTROWS(…), or use it as a filter).",
            )
        alias = self.aliases.new("v")
        return Expr(f"(SELECT {alias}.c0 FROM ({rel.sql}) AS {alias})", rel.columns[0].kind)

    def _column_value(self, node: ColumnRef, env: Env) -> Expr:
        """`T[c]` in a row context: the current row's value. `T[Measure]` is the measure."""
        if self.model.tables.get(node.table.lower()) is not None:
            table = self.model.table(node.table)
            column = table.column(node.column)
            if column is None and self._measure(node.column) is not None:
                return self.measure(node.column, env)
            col = Col(table.name, self.model.column(node.table, node.column).name)
            for row in reversed(env.rows):
                found = row.column(col)
                if found is not None:
                    return found
            raise QueryError(
                "no_row_context",
                f"A single value for {col.dax()} cannot be determined here: there is no row of "
                f"'{table.name}' being iterated. Aggregate it (SUM, MAX, SELECTEDVALUE…) or iterate "
                f"the table (SUMX, FILTER, ADDCOLUMNS).",
            )
        var = env.vars.get(node.table.lower())
        if isinstance(var, Rel):
            for row in reversed(env.rows):
                found = row.named(node.column)
                if found is not None:
                    return found
        raise self.model_unknown_table(node.table)

    def _bracket(self, node: Bracket, env: Env) -> Expr:
        """`[Name]`: a column of a row being iterated, else a measure. A query's own column may be
        named as a measure (Power BI names a visual's `"Revenue", [Revenue]` so, then sorts with
        `TOPN(…, [Revenue])` and `ORDER BY [Revenue]`): the column, computed in its context, wins."""
        for row in reversed(env.rows):
            found = row.named(node.name)
            if found is not None:
                return found
        if self._measure(node.name) is not None:
            return self.measure(node.name, env)
        raise self.unknown_measure(node.name)

    def _scalar_name(self, node: Name, env: Env) -> Expr:
        bound = env.vars.get(node.name.lower())
        if isinstance(bound, Expr):
            return bound
        if isinstance(bound, Rel):
            return self.one_value(bound, node.name)
        if node.name.lower() in self.model.tables:
            raise QueryError(
                "type_mismatch",
                f"{node.name} is a table; a single value is expected here (e.g. COUNTROWS({node.name})).",
            )
        raise QueryError("unknown_name", f"Unknown variable or table {node.name!r}.")

    def _binary(self, node: Binary, env: Env) -> Expr:
        if node.op == "IN":
            return self.membership(node, env)
        a, b = self.scalar(node.left, env), self.scalar(node.right, env)
        if node.op in ("=", "==", "<>", "<", "<=", ">", ">="):
            return v.compare(node.op, a, b)
        if node.op in ("+", "-"):
            return v.add(node.op, a, b)
        if node.op == "*":
            return v.multiply(a, b)
        if node.op == "/":
            return v.divide(a, b)
        if node.op == "^":
            return Expr(f"power({a.sql}, {b.sql})", v.NUMBER)
        if node.op == "&":
            return v.concat(a, b)
        if node.op == "&&":
            return v.both(a, b)
        return v.either(a, b)

    def _unary(self, node: Unary, env: Env) -> Expr:
        operand = self.scalar(node.operand, env)
        if node.op == "NOT":
            return Expr(f"(NOT {v.truth(operand)})", v.BOOLEAN)
        return operand if node.op == "+" else Expr(f"(-{operand.sql})", v.NUMBER)

    def membership(self, node: Binary, env: Env) -> Expr:
        """`x IN {…}` or `x IN <table>`: BLANK is in a list that has BLANK (or 0, "")."""
        value = self.scalar(node.left, env)
        if isinstance(node.right, TableConstructor) and all(len(r) == 1 for r in node.right.rows):
            items = [self.scalar(r[0], env) for r in node.right.rows]
            if not items:
                return Expr("FALSE", v.BOOLEAN)
            return Expr("(" + " OR ".join(v.compare("=", value, i).sql for i in items) + ")", v.BOOLEAN)
        rel = self.table(node.right, env)
        if len(rel.columns) != 1:
            raise QueryError("type_mismatch", "IN compares one value with a table of one column.")
        alias = self.aliases.new("m")
        probe = Expr(f"{alias}.{rel.columns[0].sql}", rel.columns[0].kind)
        test = v.compare("=", value, probe).sql
        return Expr(f"EXISTS (SELECT 1 FROM ({rel.sql}) AS {alias} WHERE {test})", v.BOOLEAN)

    # --- measures and variables ------------------------------------------------------------------

    def _measure(self, name: str) -> Measure | None:
        return self.query_measures.get(name.lower()) or self.model.measure(name)

    def measure(self, name: str, env: Env) -> Expr:
        """A measure is CALCULATE(<its expression>): the current rows become filters, and its
        expression sees no row context and none of the caller's variables."""
        measure = self._measure(name)
        if measure is None:
            raise self.unknown_measure(name)
        if measure.name not in self.used_measures:
            self.used_measures.append(measure.name)
        self._depth += 1
        if self._depth > MAX_MEASURE_DEPTH:
            raise QueryError(
                "too_complex", f"The measures call each other more than {MAX_MEASURE_DEPTH} deep."
            )
        try:
            tree = self._parsed_measure(measure)
            own = measure.name.lower() in self.query_measures
            variables = dict(self.query_vars) if own else {}
            return self.scalar(tree, Env(self.transition(env), (), variables, home=measure.table))
        finally:
            self._depth -= 1

    def _parsed_measure(self, measure: Measure) -> Node:
        key = f"{measure.table}\x00{measure.name}".lower()
        tree = self._parsed.get(key)
        if tree is None:
            try:
                tree = parse_expression(measure.expression)
            except QueryError as e:
                raise QueryError(
                    "model_error", f"The measure [{measure.name}] does not parse: {e.message}"
                ) from e
            self._parsed[key] = tree
        return tree

    @contextmanager
    def using(self, model: SemanticModel) -> Iterator[None]:
        """Compile with `model` in place of the query's (USERELATIONSHIP: another relationship active)."""
        kept, self.model = self.model, model
        try:
            yield
        finally:
            self.model = kept

    def transition(self, env: Env) -> Context:
        """Context transition: every row being iterated becomes a filter (overwriting filters on
        the same columns)."""
        ctx = env.ctx
        for row in env.rows[env.transitioned :]:
            for f in row.transition():
                ctx = ctx.apply(f, self.model)
        return ctx

    def bind(self, node: VarBlock, env: Env) -> Env:
        """VAR … RETURN: each variable is evaluated in the context where it is defined (its SQL
        carries that context, so using it elsewhere does not change its value)."""
        bound = dict(env.vars)
        for name, expr in node.bindings:
            here = replace(env, vars=dict(bound))
            bound[name.lower()] = (
                self.table(expr, here) if self.is_table(expr, here) else self.scalar(expr, here)
            )
        return replace(env, vars=bound)

    # --- tables ----------------------------------------------------------------------------------

    def is_table(self, node: Node, env: Env) -> bool:
        if isinstance(node, TableConstructor):
            return True
        if isinstance(node, Name):
            return isinstance(env.vars.get(node.name.lower()), Rel) or (
                node.name.lower() not in env.vars and node.name.lower() in self.model.tables
            )
        if isinstance(node, Call):
            return node.name in self.table_functions and node.name not in self.scalar_functions
        if isinstance(node, VarBlock):
            return self.is_table(node.body, self.bind(node, env))
        return False

    def table(self, node: Node, env: Env) -> Rel:
        if isinstance(node, Name):
            bound = env.vars.get(node.name.lower())
            if isinstance(bound, Rel):
                return bound
            if isinstance(bound, Expr):
                raise QueryError("type_mismatch", f"{node.name} is a single value; a table is expected here.")
            return self.model_table(node.name, env)
        if isinstance(node, VarBlock):
            return self.table(node.body, self.bind(node, env))
        if isinstance(node, Call):
            handler = self.table_functions.get(node.name)
            if handler is None:
                if node.name in self.scalar_functions:
                    raise QueryError(
                        "type_mismatch", f"{node.name} returns a single value; a table is expected here."
                    )
                raise unsupported_function(node.name)
            return handler(self, node.args, env)
        if isinstance(node, TableConstructor):
            from loom.engines.dax.tables import constructor

            return constructor(self, node, env)
        if isinstance(node, ColumnRef | Bracket):
            raise QueryError(
                "type_mismatch",
                "A column alone is not a table here: write VALUES(Table[Column]) or ALL(Table[Column]).",
            )
        raise QueryError("type_mismatch", "A table expression is expected here.")

    def model_table(self, name: str, env: Env, ignore_filters: bool = False) -> Rel:
        """A model table's rows that the filter context lets through (all of them for ALL)."""
        table = self.model.tables.get(name.lower())
        if table is None:
            raise self.model_unknown_table(name)
        ctx = Context() if ignore_filters else env.ctx

        def condition(scope: TableScope) -> str:
            return " AND ".join(ctx.restrict(scope)) or "TRUE"

        return self.rows_rel(table.name, condition)

    def rows_rel(self, table_name: str, condition: Callable[[TableScope], str]) -> Rel:
        """Some rows of a model table, as a Rel that keeps the table and the condition."""
        table = self.model.table(table_name)
        scope = self.scope(table.name)
        where = condition(scope)
        columns = [
            RelColumn(f"{table.name}[{c.name}]", f"c{i}", v.kind_of(c.data_type), Col(table.name, c.name))
            for i, c in enumerate(table.columns.values())
        ]
        listing = ", ".join(
            f"{column_sql(scope.alias, c)} AS c{i}" for i, c in enumerate(table.columns.values())
        )
        sql = f"SELECT {listing} FROM {scope.from_clause()} WHERE {where}"
        return Rel(sql, columns, base=table, condition=condition)

    def scope(self, table: str) -> TableScope:
        return TableScope(
            self.model, self.sources, self.aliases, self.model.table(table), self.aliases.new("t")
        )

    def table_row(self, scope: TableScope) -> TableRow:
        return TableRow(scope, self.model, self.sources, self.aliases)

    # --- errors ----------------------------------------------------------------------------------

    def model_unknown_table(self, name: str) -> QueryError:
        try:
            self.model.table(name)
        except QueryError as e:
            return e
        return QueryError("unknown_table", f"Unknown table '{name}'.")

    def unknown_measure(self, name: str) -> QueryError:
        from loom.engines.dax.model import unknown

        known = [m.name for m in (*self.model.measures.values(), *self.query_measures.values())]
        owners = [t.name for t in self.model.tables.values() if t.column(name) is not None]
        hint = (
            f" [{name}] is a column of {', '.join(repr(o) for o in owners)}: write "
            f"'{owners[0]}'[{name}] and aggregate it, or iterate the table."
            if owners
            else ""
        )
        return unknown("measure", f"[{name}]", name, known, hint)


# How each kind of node is compiled as a scalar (literals and VAR blocks are handled first).
_SCALAR_NODES: dict[type, Callable[[Compiler, Any, Env], Expr]] = {
    ColumnRef: Compiler._column_value,
    Bracket: Compiler._bracket,
    Name: Compiler._scalar_name,
    Binary: Compiler._binary,
    Unary: Compiler._unary,
    Call: Compiler._scalar_call,
}


def unsupported_function(name: str) -> QueryError:
    return QueryError(
        "unsupported_function",
        f"The DAX function {name} is not supported by the embedded DAX engine; write the query "
        f"with the supported functions (see the tool's description), or run it on Power BI.",
    )
