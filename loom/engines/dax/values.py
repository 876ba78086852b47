"""Scalar values in SQL, with DAX's rules for BLANK (NULL here) and for text.

BLANK is 0, "" or FALSE when compared or added (`BLANK() = 0` is true, `BLANK() + 1` is 1), but a
product or quotient with BLANK is BLANK; text compares without regard to case. Each operand is
written once in what is built (a measure may be a whole subquery: writing it twice would run it twice).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from loom.engines.contracts import QueryError

NUMBER, TEXT, BOOLEAN, DATETIME, BLANK, ANY = "number", "string", "boolean", "datetime", "blank", "any"
_ZERO = {NUMBER: "0", TEXT: "''", BOOLEAN: "FALSE", DATETIME: "TIMESTAMP '1899-12-30 00:00:00'"}


@dataclass(frozen=True)
class Expr:
    sql: str
    kind: str = ANY
    literal: object = None  # the value, when the expression is a constant
    # As a filter condition, where NULL counts as false: the same test without the COALESCE that
    # makes a value of it (a COALESCE around a comparison costs DuckDB 2.3x on a 2 M-row filter).
    test: str | None = None

    @property
    def constant(self) -> bool:
        return self.literal is not None


def kind_of(data_type: str) -> str:
    return {"int64": NUMBER, "double": NUMBER, "decimal": NUMBER, "string": TEXT, "boolean": BOOLEAN,
            "dateTime": DATETIME}.get(data_type, ANY)  # fmt: skip


def text_literal(value: str) -> Expr:
    return Expr("'" + value.replace("'", "''") + "'", TEXT, value)


def number_literal(value: int | float) -> Expr:
    sql = repr(value) if isinstance(value, int) else f"CAST({value!r} AS DOUBLE)"
    return Expr(sql, NUMBER, value)


def blank() -> Expr:
    return Expr("NULL", BLANK)


def datetime_literal(value: dt.datetime) -> Expr:
    return Expr(f"TIMESTAMP '{value.isoformat(sep=' ')}'", DATETIME, value)


def common_kind(a: Expr, b: Expr) -> str:
    kinds = {a.kind, b.kind} - {BLANK, ANY}
    if len(kinds) > 1:
        if kinds <= {NUMBER, BOOLEAN}:
            return NUMBER
        raise QueryError(
            "type_mismatch",
            f"DAX cannot compare or combine a {a.kind} value with a {b.kind} value "
            f"({a.sql[:60]} and {b.sql[:60]}): convert one with VALUE() or FORMAT().",
        )
    return kinds.pop() if kinds else (BLANK if a.kind == b.kind == BLANK else ANY)


def compare(op: str, a: Expr, b: Expr) -> Expr:
    """`=`, `<>`, `<`, … with BLANK as the other side's zero; `==` is strict (BLANK == 0 is false)."""
    kind = common_kind(a, b)
    if op == "==":
        return Expr(f"({a.sql} IS NOT DISTINCT FROM {b.sql})", BOOLEAN)
    sql_op = "<>" if op == "<>" else op
    # Against a constant that BLANK does not satisfy (`x > 150`: 0 > 150 is false) a BLANK may stay
    # NULL, which fails the test as well; then DuckDB can filter the column as it reads it.
    plain = _blank_fails(op, a, b) or _blank_fails(_MIRROR.get(op, op), b, a)
    left, right = _comparable(a, kind, plain), _comparable(b, kind, plain)
    compared = f"({left} {sql_op} {right})"
    return Expr(f"COALESCE({compared}, FALSE)", BOOLEAN, test=compared)


_MIRROR = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
_TESTS = {"=": lambda x, y: x == y, "<>": lambda x, y: x != y, "<": lambda x, y: x < y,
          ">": lambda x, y: x > y, "<=": lambda x, y: x <= y, ">=": lambda x, y: x >= y}  # fmt: skip


def _blank_fails(op: str, variable: Expr, constant: Expr) -> bool:
    """Whether `BLANK op constant` is false, so a BLANK `variable` needs no zero in its place."""
    value = constant.literal
    if variable.constant or isinstance(value, bool) or not isinstance(value, int | float | str):
        return False
    zero: int | str = "" if isinstance(value, str) else 0
    comparable = value.lower() if isinstance(value, str) else value
    return not _TESTS[op](zero, comparable)


def _comparable(e: Expr, kind: str, plain: bool = False) -> str:
    """The operand as compared: a non-blank constant as it is; anything that may be BLANK with
    the zero of its kind in its place (unless `plain`); text in lower case."""
    sql = e.sql
    if not plain and not _never_blank_or_zero(e) and kind in _ZERO:
        sql = f"COALESCE({sql}, {_ZERO[kind]})"
    return f"lower({sql})" if kind == TEXT else sql


def _never_blank_or_zero(e: Expr) -> bool:
    return e.constant and e.literal not in (0, "", False)


def add(op: str, a: Expr, b: Expr) -> Expr:
    """`+` and `-`: BLANK counts as 0, and BLANK only when both sides are."""
    common_kind(a, b)
    if a.kind == BLANK and b.kind == BLANK:
        return blank()
    right = b.sql if op == "+" else f"-({b.sql})"
    kind = DATETIME if DATETIME in (a.kind, b.kind) else NUMBER
    if kind == DATETIME:
        return Expr(f"({a.sql} {op} CAST({b.sql} AS DOUBLE) * INTERVAL 1 DAY)", DATETIME)
    return Expr(f"list_sum([{a.sql}, {right}])", NUMBER)


def multiply(a: Expr, b: Expr) -> Expr:
    return Expr(f"({a.sql} * {b.sql})", NUMBER)


def divide(a: Expr, b: Expr) -> Expr:
    """`/`: a double; x/0 and x/BLANK are ±infinity (NaN for 0/0), BLANK/x is BLANK."""
    return Expr(f"(CAST({a.sql} AS DOUBLE) / COALESCE({b.sql}, 0))", NUMBER)


def concat(a: Expr, b: Expr) -> Expr:
    return Expr(f"concat({as_text(a)}, {as_text(b)})", TEXT)


def as_text(e: Expr) -> str:
    """How DAX writes a value as text: whole numbers without a decimal point, BLANK as ""."""
    if e.kind == TEXT:
        return e.sql
    if e.kind == NUMBER:
        return f"regexp_replace(CAST({e.sql} AS VARCHAR), '\\.0$', '')"
    if e.kind == BOOLEAN:
        return f"(CASE WHEN {e.sql} THEN 'True' WHEN NOT {e.sql} THEN 'False' END)"
    return f"CAST({e.sql} AS VARCHAR)"


def condition(e: Expr) -> str:
    """A filter condition (WHERE, CASE WHEN): NULL counts as false there, so a comparison needs
    no COALESCE; anything else as `truth`."""
    return e.test if e.test is not None else truth(e)


def both(a: Expr, b: Expr) -> Expr:
    return Expr(f"({truth(a)} AND {truth(b)})", BOOLEAN, test=f"({condition(a)} AND {condition(b)})")


def either(a: Expr, b: Expr) -> Expr:
    return Expr(f"({truth(a)} OR {truth(b)})", BOOLEAN, test=f"({condition(a)} OR {condition(b)})")


def truth(e: Expr) -> str:
    """A condition: BLANK is false; a number is true when it is not 0."""
    if e.kind == NUMBER:
        return f"COALESCE({e.sql} <> 0, FALSE)"
    return f"COALESCE({e.sql}, FALSE)"
