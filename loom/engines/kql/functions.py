"""Scalar functions duckdb-kql 1.1.2 lacks, and how the embedded engine supplies them.

Two ways, each the smallest that is exact: a `let` written in the KQL duckdb-kql has, put before
a query that calls the function (`PRELUDES`); or a row in duckdb-kql's own function table
(`SCALAR_FUNCTIONS`, the registry its translator consults by name), in the form a contribution
upstream would take. Both are added here only; nothing of duckdb-kql's own is changed.
"""

from __future__ import annotations

from antlr4 import ParserRuleContext
from duckdb_kql.translate.functions import SCALAR_FUNCTIONS, FunctionSpec

from loom.engines.kql.validator import function_calls

PRELUDES = {
    "bin_at": "let bin_at = (value: datetime, size: timespan, fixed: datetime) "
    "{ fixed + size * bin((value - fixed) / size, 1) };",
}

# `range(start, stop[, step])`: the dynamic array start, start + step, … up to stop inclusive, for
# long, real and datetime values (step 1 when left out). DuckDB binds every branch of a CASE
# whatever the values, so the number of steps is computed three ways, each with casts that bind
# for any type (TRY_CAST is NULL where it does not apply), and the operand's type picks one.
_INTEGERS = "('TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'UTINYINT', 'USMALLINT', 'UINTEGER')"
_STEPS = (
    "CASE WHEN typeof({0}) LIKE 'TIMESTAMP%' OR typeof({0}) = 'DATE' "
    "THEN floor((epoch(TRY_CAST({1} AS TIMESTAMP)) - epoch(TRY_CAST({0} AS TIMESTAMP)))"
    " / epoch(TRY_CAST({2} AS INTERVAL))) "
    f"WHEN typeof({{0}}) IN {_INTEGERS} AND typeof({{1}}) IN {_INTEGERS} AND typeof({{2}}) IN {_INTEGERS} "
    "THEN (TRY_CAST({1} AS BIGINT) - TRY_CAST({0} AS BIGINT)) // TRY_CAST({2} AS BIGINT) "
    "ELSE floor((TRY_CAST({1} AS DOUBLE) - TRY_CAST({0} AS DOUBLE)) / TRY_CAST({2} AS DOUBLE)) END"
)
_RANGE = (
    f"to_json(list_transform(generate_series(0, CAST({_STEPS} AS BIGINT)), "
    "_loom_i -> {0} + _loom_i * {2}))"
)


class _Range(FunctionSpec):
    def render(self, args: list[str]) -> str:
        if len(args) not in self.arities:
            raise ValueError(f"range() takes start, stop and an optional step, got {len(args)} argument(s)")
        return self.template.format(*args, "1")


RANGE = _Range("range", "template", _RANGE, (2, 3), note="loom: long, real and datetime")
SCALAR_FUNCTIONS.setdefault("range", RANGE)


def preludes(tree: ParserRuleContext) -> str:
    """A `let` for each function of `PRELUDES` the query calls (found on its syntax tree)."""
    called = {name.lower() for name in function_calls(tree)}
    return "".join(f"{text}\n" for name, text in PRELUDES.items() if name in called)
