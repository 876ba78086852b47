"""Where duckdb-kql 1.1.2 would answer differently from Kusto, and what the embedded engine does
about it: refuse the construct by name, or correct the SQL it wrote.

Only for the embedded engine: an ADX cluster runs these constructs itself. Each gap was found by
the golden suite (`tests/engines/test_kql_golden.py`) comparing answers with pandas; a wrong
answer nobody notices is worse than a refusal the model can write around.
"""

from __future__ import annotations

from collections.abc import Iterator

from antlr4 import ParserRuleContext
from sqlglot import exp

from loom.engines.contracts import QueryError

# Aggregations whose size limit (`make_list(x, 3)`) duckdb-kql drops: it returns every value.
_SIZE_LIMITED = {"make_list": 1, "make_set": 1, "make_list_with_nulls": 1}

# Kusto bins a datetime from 0001-01-01 (a Monday); DuckDB's epoch is 1970-01-01 (a Thursday).
# The 719,162 days between them are a whole number of hours, so only whole-day steps that do not
# divide it (7d, 30d…) land differently — weekly bins among them.
KUSTO_EPOCH_US = 719_162 * 86_400 * 1_000_000


def refuse_gaps(tree: ParserRuleContext) -> None:
    """QueryError `unsupported` for the first construct the embedded engine would answer wrongly."""
    for name, arguments, line, column in _calls(tree):
        limit = _SIZE_LIMITED.get(name.lower())
        if limit is not None and arguments > limit:
            raise QueryError(
                "unsupported",
                f"{name}() with a size limit (line {line}, column {column + 1}) is not supported by the "
                f"embedded KQL engine: write {name}() with one argument and limit the rows before it.",
            )


def _calls(node: ParserRuleContext) -> Iterator[tuple[str, int, int, int]]:
    """(name, number of arguments, line, column) of every function call in the tree."""
    if type(node).__name__ == "NamedFunctionCallExpressionContext":
        arguments = sum(type(c).__name__ == "ArgumentExpressionContext" for c in node.getChildren())
        yield node.getChild(0).getText(), arguments, node.start.line, node.start.column
    for child in node.children or ():
        if isinstance(child, ParserRuleContext):
            yield from _calls(child)


def align_datetime_bins(tree: exp.Expr) -> None:
    """Rewrite each datetime `bin()`/`floor()` duckdb-kql wrote,
    `to_timestamp(floor(epoch(x) / epoch(step)) * epoch(step))`, to count from Kusto's epoch, in
    whole microseconds (seconds as a double lose microseconds that far from 1970)."""
    for node in list(tree.find_all(exp.UnixToTime)):
        parts = _datetime_bin(node)
        if parts is not None:
            node.set("this", _aligned(*parts))


def _datetime_bin(node: exp.UnixToTime) -> tuple[exp.Expr, exp.Expr] | None:
    """(value, step) when `node` is the shape above, else None."""
    product = node.this
    if not isinstance(product, exp.Mul) or not isinstance(product.this, exp.Floor):
        return None
    quotient, step = product.this.this, product.expression
    if not isinstance(quotient, exp.Div) or not isinstance(step, exp.TimeToUnix):
        return None
    value, divisor = quotient.this, quotient.expression
    if not isinstance(value, exp.TimeToUnix) or isinstance(value.this, exp.Interval) or divisor != step:
        return None
    return value.this, step.this


def _aligned(value: exp.Expr, step: exp.Expr) -> exp.Expr:
    """Seconds since 1970 of the start of `value`'s bin, counted in steps from 0001-01-01."""
    step_us = exp.cast(
        exp.Mul(this=exp.TimeToUnix(this=step.copy()), expression=exp.Literal.number(1_000_000)),
        exp.DataType.Type.BIGINT,
    )
    shifted = exp.Add(
        this=exp.Anonymous(this="epoch_us", expressions=[value.copy()]),
        expression=exp.Literal.number(KUSTO_EPOCH_US),
    )
    start = exp.Sub(
        this=exp.Mul(this=exp.IntDiv(this=exp.paren(shifted), expression=step_us), expression=step_us.copy()),
        expression=exp.Literal.number(KUSTO_EPOCH_US),
    )
    return exp.Div(this=exp.paren(start), expression=exp.Literal.number("1000000.0"))
