"""Where duckdb-kql 1.1.2 would answer differently from Kusto, and what the embedded engine does
about it: refuse the construct by name, or correct the SQL it wrote.

Only for the embedded engine: an ADX cluster runs these constructs itself. Each gap was found by
the golden suite (`tests/engines/test_kql_golden.py`) comparing answers with pandas; a wrong
answer nobody notices is worse than a refusal the model can write around.
"""

from __future__ import annotations

from collections.abc import Iterator

from antlr4 import ParserRuleContext
from sqlglot import exp, parse_one

from loom.engines.contracts import QueryError
from loom.engines.sql.builders import bounded_count

# Aggregations whose size limit (`make_list(x, 3)`) duckdb-kql drops: it returns every value.
_SIZE_LIMITED = {"make_list": 1, "make_set": 1, "make_list_with_nulls": 1}

# Kusto bins a datetime from 0001-01-01 (a Monday); duckdb-kql from 1970-01-01 (a Thursday). The
# 719,162 days between them are a whole number of hours, so only whole-day steps that do not
# divide it (7d, 30d…) land differently — weekly bins among them.
KUSTO_EPOCH = "0001-01-01"


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
    """Each datetime `bin()`/`floor()` duckdb-kql wrote, `to_timestamp(floor(epoch(x) / epoch(step))
    * epoch(step)) AT TIME ZONE 'UTC'`, as `time_bucket(step, x, 0001-01-01)`: Kusto's bins, and
    about ten times faster on a large table (no round trip through seconds as a double)."""
    for node in list(tree.find_all(exp.UnixToTime)):
        parts = _datetime_bin(node)
        if parts is None:
            continue
        bucket = _bucket(*parts)
        outer = node.parent
        if isinstance(outer, exp.AtTimeZone) and outer.args.get("zone") == exp.Literal.string("UTC"):
            outer.replace(bucket)  # both are the bin's start as a UTC timestamp without a zone
        else:
            node.set("this", exp.TimeToUnix(this=bucket))


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


def _bucket(value: exp.Expr, step: exp.Expr) -> exp.Expr:
    """The start of `value`'s bin as a TIMESTAMP. `make_timestamp(epoch_us(x))` is x's UTC wall
    time whether x has a zone or not, and whatever the session's time zone."""
    utc = exp.Anonymous(
        this="make_timestamp", expressions=[exp.Anonymous(this="epoch_us", expressions=[value.copy()])]
    )
    origin = exp.cast(exp.Literal.string(KUSTO_EPOCH), exp.DataType.Type.TIMESTAMP)
    return exp.Anonymous(this="time_bucket", expressions=[step.copy(), utc, origin])


# An index into a dynamic value, `d[k]`, when duckdb-kql cannot tell k's type: it writes an array
# index, '$[' || CASE WHEN k < 0 THEN '#' || k ELSE k END || ']', and a string key then fails
# (`'Public' < 0` does not convert). Kusto reads a string as a property name.
_KEY_PATH = parse_one(
    "CASE WHEN typeof(k) = 'VARCHAR' "
    "THEN '$.\"' || replace(replace(CAST(k AS VARCHAR), '\\', '\\\\'), '\"', '\\\"') || '\"' "
    "ELSE '$[' || CASE WHEN TRY_CAST(k AS BIGINT) < 0 THEN '#' || CAST(k AS VARCHAR) "
    "ELSE CAST(k AS VARCHAR) END || ']' END",
    read="duckdb",
)


def index_by_key(tree: exp.Expr) -> None:
    """Each JSON path duckdb-kql built for an index of unknown type, as one that reads a string
    index as a property name (`$."Emergency Manager"`) and any other as an array index."""
    for node in list(tree.find_all(exp.DPipe)):
        key = _indexed(node)
        if key is not None:
            path = _KEY_PATH.copy()
            for placeholder in list(path.find_all(exp.Column)):
                if placeholder.name == "k":
                    placeholder.replace(key.copy())
            node.replace(path)


def _indexed(node: exp.DPipe) -> exp.Expr | None:
    """k, when `node` is '$[' || CASE WHEN k < 0 THEN '#' || CAST(k) ELSE CAST(k) END || ']'."""
    head, close = node.this, node.expression
    if close != exp.Literal.string("]") or not isinstance(head, exp.DPipe):
        return None
    if head.this != exp.Literal.string("$[") or not isinstance(head.expression, exp.Case):
        return None
    case = head.expression
    ifs, default = case.args.get("ifs") or [], case.args.get("default")
    if len(ifs) != 1 or not isinstance(ifs[0].this, exp.LT) or not isinstance(default, exp.Cast):
        return None
    key = ifs[0].this.this
    if ifs[0].this.expression != exp.Literal.number(0) or default.this != key:
        return None
    return key


_REAL_SERIES = parse_one(
    "(SELECT list(s + _r.i * st ORDER BY _r.i) "
    "FROM range(0, CAST(floor((e - s) / st) AS BIGINT) + 1) AS _r(i))",
    read="duckdb",
)


def real_ranges(tree: exp.Expr) -> None:
    """Each `range` operator duckdb-kql wrote as an integer series although a bound or the step is
    real (it casts `step 2.5` to BIGINT: `range x from 1 to 10 step 2.5` gave 1, 3, 5, 7, 9, and
    `from 1 to 2 step 0.5` no rows; probe 15: R15-7), as the real series Kusto answers: the list
    of `start + i * step` for i from 0 to floor((stop - start) / step)."""
    for node in list(tree.find_all(exp.GenerateSeries)):
        parts = [node.args.get(k) for k in ("start", "end", "step")]
        if any(p is None for p in parts) or not any(_narrowed_real(p) for p in parts):
            continue
        values = dict(zip(("s", "e", "st"), (_unnarrowed(p) for p in parts), strict=True))  # type: ignore[arg-type]
        series = _REAL_SERIES.copy()
        for placeholder in list(series.find_all(exp.Column)):
            if not placeholder.table and placeholder.name in values:
                placeholder.replace(values[placeholder.name].copy())
        # The list is built here, not by a builder the SQL engine bounds: bound its count the same
        # way (probe 16: R16-3, 100 M items in 23 s where the integer form is refused at once).
        count = next(series.find_all(exp.GenerateSeries)).args["end"]
        count.replace(bounded_count(count, "range"))
        node.replace(series)


def _narrowed_real(node: exp.Expr | None) -> bool:
    """`CAST(CAST(x AS DOUBLE) AS BIGINT)`: a real made an integer."""
    return (
        isinstance(node, exp.Cast)
        and node.to.this in exp.DataType.INTEGER_TYPES
        and isinstance(node.this, exp.Cast)
        and node.this.to.this
        in (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT, exp.DataType.Type.DECIMAL)
    )


def _unnarrowed(node: exp.Expr) -> exp.Expr:
    """The value before duckdb-kql's cast to BIGINT, as a DOUBLE."""
    inner = node.this if isinstance(node, exp.Cast) else node
    return exp.cast(inner.copy(), "DOUBLE")
