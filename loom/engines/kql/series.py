"""`make-series`, which duckdb-kql 1.1.2 does not translate: written here as SQL around its parts.

`T | … | make-series A = agg(x) default = d, … on Axis from lo to hi step s by G, … | …` becomes:
the part before it (translated as usual), the axis and each bin (`time_bucket` from `lo` for a
datetime axis, `lo + floor((x - lo) / s) * s` for a number), the aggregations per group and bin
(translated by duckdb-kql as a `summarize … by G, __bin`), every bin of every group that has data
(`range(lo, hi, s)`, so empty bins get `d`, default 0), and one row per group with the axis and
each aggregation as arrays in bin order (`list(… ORDER BY bin)`: a list's order is otherwise not
defined). The part after it is translated over that, as a table. Without `from`/`to`, the series
runs from the bin of the first value to the bin after the last (bins aligned to 0001-01-01, as
Kusto's `bin()`). Every part is written out as DuckDB SQL: sqlglot's default dialect counts list
indexes from 0, DuckDB's from 1. A make-series inside a `let`, a join or a union is not supported
(refused, not guessed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from antlr4 import ParserRuleContext
from sqlglot import exp

from loom.engines.contracts import QueryError
from loom.engines.kql.gaps import KUSTO_EPOCH
from loom.engines.kql.tree import Translate, children, only_on_top, quote, scalar, sql, statement, text
from loom.engines.sql.validator import parse_sql


@dataclass(frozen=True)
class Series:
    lets: str  # the statements before the query's own (`let k = 2;`): every part is translated after them
    before: str  # the query's statement up to the operator's pipe
    after: str  # the rest of the query after it ("" or "| …")
    aggregations: tuple[tuple[str, str | None], ...]  # (named aggregation, its default)
    axis: str
    axis_name: str
    lo: str | None
    hi: str | None
    step: str
    groups: tuple[str, ...]


def find_series(tree: ParserRuleContext, query: str) -> Series | None:
    """The query's make-series, when it has one at the top of its pipeline."""
    node = only_on_top(tree, "MakeSeriesOperatorContext", "make-series")
    if node is None:
        return None
    pipe, stmt = node.parentCtx, statement(node)
    bounds = _range(node, query)
    step = bounds.get("step")
    if step is None:
        raise QueryError("parse_error", "make-series needs a step: `… on Axis step 1d`.")
    return Series(
        lets=query[: stmt.start.start],
        before=query[stmt.start.start : pipe.start.start].rstrip().removesuffix("|").rstrip(),
        after=query[pipe.stop.stop + 1 :].strip(),
        aggregations=tuple(_aggregations(node, query)),
        axis=text(_only(node, "MakeSeriesOperatorOnClauseContext", "NamedExpressionContext"), query),
        axis_name=_axis_name(
            text(_only(node, "MakeSeriesOperatorOnClauseContext", "NamedExpressionContext"), query)
        ),
        lo=bounds.get("lo"),
        hi=bounds.get("hi"),
        step=step,
        groups=tuple(text(g, query) for g in _by(node)),
    )


def series_sql(series: Series, translate_part: Translate) -> exp.Expr:
    """The whole query as SQL: make-series's steps as CTEs, the part after it over `__ms`. Each
    part is translated after the query's `let`s, so a name they declare means the same everywhere
    (probe 10: R10-4)."""

    def translate(kql: str, tables: dict[str, list[str]]) -> exp.Expr:
        return translate_part(series.lets + kql, tables)

    step = scalar(series.step, translate)
    timed = step.find(exp.Interval) is not None
    bucket = _bucket(timed, step)
    lo = scalar(series.lo, translate) if series.lo else _first("min", bucket)
    # Without `to`, the series ends with the bin (counted from `lo`) that holds the last value
    # (probe 10: a `from` off the 1970 grid got one empty bin more).
    last = exp.Add(
        this=_first("max", _bin(timed, step).replace("__bounds.lo", f"({sql(lo)})")),
        expression=step.copy(),
    )
    hi = scalar(series.hi, translate) if series.hi else last
    by = [*series.groups, "__bin"]
    aggregations = ", ".join(a for a, _ in series.aggregations)
    agg = translate(f"__binned | summarize {aggregations} by {', '.join(by)}", {})
    names = _output_names(agg)
    group_names, agg_names = names[: len(series.groups)], names[len(series.groups) + 1 :]
    defaults = [scalar(d, translate).sql("duckdb") if d else "0" for _, d in series.aggregations]
    ctes = {
        "__src": translate(series.before, {}).sql("duckdb"),
        "__axised": translate(f"__src | extend __axis = {series.axis}", {}).sql("duckdb"),
        "__bounds": f"SELECT {sql(lo)} AS lo, {sql(hi)} AS hi",
        "__binned": (
            f"SELECT __axised.*, {_bin(timed, step)} AS __bin FROM __axised, __bounds "
            "WHERE __axis >= __bounds.lo AND __axis < __bounds.hi"
        ),
        "__agg": agg.sql("duckdb"),
        "__ms": _series_rows(series, group_names, agg_names, defaults, step, timed),
    }
    out = [*group_names, series.axis_name, *agg_names]
    rest = (
        translate(f"__ms {series.after}", {"__ms": out}).sql("duckdb")
        if series.after
        else "SELECT * FROM __ms"
    )
    with_ = ", ".join(f"{name} AS ({sql})" for name, sql in ctes.items())
    return parse_sql(f"WITH {with_} SELECT * FROM ({rest}) AS __out", "duckdb")


def _series_rows(
    series: Series, groups: list[str], aggs: list[str], defaults: list[str], step: exp.Expr, timed: bool
) -> str:
    quoted = [quote(g) for g in groups]
    keys = ", ".join(quoted) if quoted else "1 AS __one"
    on = " AND ".join([f"a.{g} IS NOT DISTINCT FROM g.{g}" for g in quoted] + ["a.__bin = b.__bin"])
    values = ", ".join(
        f"list(coalesce(a.{quote(a)}, {d}) ORDER BY b.__bin) AS {quote(a)}"
        for a, d in zip(aggs, defaults, strict=True)
    )
    select = ", ".join(
        [*(f"g.{g}" for g in quoted), f"list(b.__bin ORDER BY b.__bin) AS {quote(series.axis_name)}", values]
    )
    # Grouped even without `by`, so that no rows in (nothing in range) is no series out, as in Kusto,
    # not one series of nulls.
    group_by = f" GROUP BY {', '.join(f'g.{g}' for g in quoted) if quoted else 'g.__one'}"
    return (
        f"SELECT {select} FROM (SELECT DISTINCT {keys} FROM __agg) AS g "
        f"CROSS JOIN (SELECT lo + i * {sql(step)} AS __bin FROM __bounds, "
        f"unnest(range(0, {_count(timed, step)})) AS t(i)) AS b "
        f"LEFT JOIN __agg AS a ON {on}{group_by}"
    )


def _count(timed: bool, step: exp.Expr) -> str:
    """How many bins from `lo` to `hi` (the last may end past `hi`): a whole number, so that the
    engine's bound on `range()` holds (16 M bins at most)."""
    if timed:
        return f"CAST(ceil((epoch_us(hi) - epoch_us(lo)) / (epoch({sql(step)}) * 1000000)) AS BIGINT)"
    return f"CAST(ceil((hi - lo) / {sql(step)}) AS BIGINT)"


def _bucket(timed: bool, step: exp.Expr) -> str:
    """The bin of `__axis`, aligned to 0001-01-01 (or 0), as Kusto's `bin()` aligns it."""
    if timed:
        return f"time_bucket({sql(step)}, __axis, TIMESTAMP '{KUSTO_EPOCH}')"
    return f"{_floor(f'__axis / {sql(step)}', step)} * {sql(step)}"


def _floor(value: str, step: exp.Expr) -> str:
    """floor(value), a whole number when the step is one (bins of a long axis stay longs)."""
    whole = isinstance(step, exp.Literal) and step.is_int
    return f"CAST(floor({value}) AS BIGINT)" if whole else f"floor({value})"


def _first(func: str, bucket: str) -> exp.Expr:
    return exp.maybe_parse(f"(SELECT {func}({bucket}) FROM __axised)", dialect="duckdb")


def _bin(timed: bool, step: exp.Expr) -> str:
    """The bin of `__axis` counted from the series' start."""
    if timed:
        return f"time_bucket({sql(step)}, __axis, __bounds.lo)"
    return f"__bounds.lo + {_floor(f'(__axis - __bounds.lo) / {sql(step)}', step)} * {sql(step)}"


def _output_names(tree: exp.Expr) -> list[str]:
    grouped = next(s for s in tree.find_all(exp.Select) if s.args.get("group"))
    return [e.alias_or_name for e in grouped.expressions]


def _aggregations(node: ParserRuleContext, query: str) -> Iterator[tuple[str, str | None]]:
    """Each aggregation's text and default. The grammar reads `revenue = sum(x)` as an operator
    parameter `revenue=sum` followed by the aggregation `(x)` (it knows `count` as a keyword, not
    `sum`): the two are one aggregation when the parameter runs straight into it. A parameter
    that stands alone (`kind=nonempty`) is not supported."""
    pending: ParserRuleContext | None = None
    for child in node.children or ():
        name = type(child).__name__
        if name == "RelaxedQueryOperatorParameterContext":
            if pending is not None:
                raise _unsupported_parameter(pending, query)
            pending = child
        elif name == "MakeSeriesOperatorAggregationContext":
            named = next(children(child, "NamedExpressionContext"))
            start = named.start.start
            if pending is not None:
                if query[pending.stop.stop + 1 : start].strip() or not query[start:].startswith("("):
                    raise _unsupported_parameter(pending, query)
                start, pending = pending.start.start, None
            default = next(children(child, "MakeSeriesOperatorExpressionDefaultClauseContext"), None)
            value = (
                None if default is None else text(next(children(default, "NamedExpressionContext")), query)
            )
            yield query[start : named.stop.stop + 1], value
    if pending is not None:
        raise _unsupported_parameter(pending, query)


def _unsupported_parameter(node: ParserRuleContext, query: str) -> QueryError:
    return QueryError(
        "unsupported", f"make-series {text(node, query)} is not supported by the embedded KQL engine."
    )


def _range(node: ParserRuleContext, query: str) -> dict[str, str | None]:
    clause = next(children(node, "MakeSeriesOperatorFromToStepClauseContext"), None)
    if clause is None:
        raise QueryError("parse_error", "make-series needs a step: `… on Axis step 1d`.")
    parts: dict[str, str | None] = {"lo": None, "hi": None}
    keyword = None
    for child in clause.children or ():
        if isinstance(child, ParserRuleContext):
            parts[{"from": "lo", "to": "hi", "step": "step"}[keyword or "step"]] = text(child, query)
        else:
            keyword = child.getText().lower()
    return parts


def _by(node: ParserRuleContext) -> Iterator[ParserRuleContext]:
    clause = next(children(node, "MakeSeriesOperatorByClauseContext"), None)
    return children(clause, "NamedExpressionContext") if clause is not None else iter(())


def _axis_name(axis: str) -> str:
    """The axis column's name: the column itself (`Timestamp`, `['date']` → `date`), else Column1."""
    name = axis.split("=", 1)[0].strip() if "=" in axis else axis.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1].strip().strip("'\"")
    return name if name and name.replace("_", "a").replace(".", "a").isalnum() else "Column1"


def _only(node: ParserRuleContext, clause: str, child: str) -> ParserRuleContext:
    found = next(children(node, clause), None)
    if found is None:
        raise QueryError("parse_error", "make-series needs an axis: `… on Timestamp step 1d`.")
    return next(children(found, child))
