"""`top-nested`, which duckdb-kql 1.1.2 does not translate: written here as SQL around its parts.

`T | … | top-nested N1 of K1 by A1 = agg1 [asc|desc], top-nested N2 of K2 by agg2, … | …` keeps
the N1 values of K1 with the largest agg1 over their rows (the smallest with `asc`), then within
each the N2 values of K2 with the largest agg2, and so on; the result has two columns per level,
the value (`K1`, or its name) and its aggregation (`aggregated_K1`, or its name). In SQL: the
part before it as a CTE, the level keys added to its rows (`extend __k1 = K1, …`, translated by
duckdb-kql), and per level the aggregation by every key so far (a `summarize` duckdb-kql
translates) ranked within the level above (`row_number() OVER (PARTITION BY …)`) and kept to its
N. Ties are broken by the key, so the same data gives the same rows. `with others` is refused, as
is a top-nested inside a let, a join or a union.
"""

from __future__ import annotations

from dataclasses import dataclass

from antlr4 import ParserRuleContext
from sqlglot import exp

from loom.engines.contracts import QueryError
from loom.engines.kql.tree import Translate, children, only_on_top, quote, scalar, sql, statement, text
from loom.engines.sql.validator import parse_sql


@dataclass(frozen=True)
class Level:
    count: str | None  # N (None: every value)
    key: str  # the expression whose values this level keeps
    key_name: str
    aggregation: str
    aggregation_name: str
    ascending: bool


@dataclass(frozen=True)
class Nested:
    lets: str  # the statements before the query's own
    before: str
    after: str
    levels: tuple[Level, ...]


def find_nested(tree: ParserRuleContext, query: str) -> Nested | None:
    node = only_on_top(tree, "TopNestedOperatorContext", "top-nested")
    if node is None:
        return None
    pipe, stmt = node.parentCtx, statement(node)
    parts = list(children(node, "TopNestedOperatorPartContext"))
    return Nested(
        lets=query[: stmt.start.start],
        before=query[stmt.start.start : pipe.start.start].rstrip().removesuffix("|").rstrip(),
        after=query[pipe.stop.stop + 1 :].strip(),
        levels=tuple(_level(part, query, i) for i, part in enumerate(parts, 1)),
    )


def _level(part: ParserRuleContext, query: str, number: int) -> Level:
    if next(children(part, "TopNestedOperatorWithOthersClauseContext"), None) is not None:
        raise QueryError(
            "unsupported",
            "top-nested … with others is not supported by the embedded KQL engine: write the query "
            "without `with others`.",
        )
    named = list(children(part, "NamedExpressionContext"))
    count, key = (named[0], named[1]) if len(named) == 2 else (None, named[0])
    ordered = next(children(part, "OrderedExpressionContext"))
    aggregation = next(children(ordered, "NamedExpressionContext"))
    ordering = next(children(ordered, "SortOrderingContext"), None)
    key_name = _name(key, query) or _column(text(key, query)) or f"Column{number}"
    return Level(
        count=text(count, query) if count is not None else None,
        key=_expression(key, query),
        key_name=key_name,
        aggregation=_expression(aggregation, query),
        aggregation_name=_name(aggregation, query) or f"aggregated_{key_name}",
        ascending=ordering is not None and ordering.getText().lower() == "asc",
    )


def _name(node: ParserRuleContext, query: str) -> str | None:
    """The `Name` of a `Name = expression`, unbracketed; None when the expression has none."""
    clause = next(children(node, "NamedExpressionNameClauseContext"), None)
    if clause is None:
        return None
    return _unbracketed(text(clause, query).rstrip().removesuffix("=").rstrip())


def _expression(node: ParserRuleContext, query: str) -> str:
    unnamed = next(children(node, "UnnamedExpressionContext"), None)
    return text(unnamed if unnamed is not None else node, query)


def _column(expression: str) -> str | None:
    """A bare column's name (`State`, `['date']`); None for anything computed."""
    name = _unbracketed(expression.strip())
    return name if name.replace("_", "a").isalnum() else None


def _unbracketed(name: str) -> str:
    if name.startswith("[") and name.endswith("]"):
        return name[1:-1].strip().strip("'\"")
    return name


def nested_sql(nested: Nested, translate_part: Translate) -> exp.Expr:
    """The whole query as SQL: the levels as CTEs, the part after them over `__tn`."""

    def translate(kql: str, tables: dict[str, list[str]]) -> exp.Expr:
        return translate_part(nested.lets + kql, tables)

    keys = ", ".join(f"__k{i} = {level.key}" for i, level in enumerate(nested.levels, 1))
    ctes = {
        "__src": sql(translate(nested.before, {})),
        "__keyed": sql(translate(f"__src | extend {keys}", {})),
    }
    for i, level in enumerate(nested.levels, 1):
        by = ", ".join(f"__k{j}" for j in range(1, i + 1))
        ctes[f"__g{i}"] = sql(translate(f"__keyed | summarize __a{i} = {level.aggregation} by {by}", {}))
        ctes[f"__t{i}"] = _kept(i, level, translate)
    out = [name for level in nested.levels for name in (level.key_name, level.aggregation_name)]
    picks = ", ".join(
        f"__k{i} AS {quote(level.key_name)}, __a{i} AS {quote(level.aggregation_name)}"
        for i, level in enumerate(nested.levels, 1)
    )
    ctes["__tn"] = f"SELECT {picks} FROM __t{len(nested.levels)}"
    rest = sql(translate(f"__tn {nested.after}", {"__tn": out})) if nested.after else "SELECT * FROM __tn"
    with_ = ", ".join(f"{name} AS ({body})" for name, body in ctes.items())
    return parse_sql(f"WITH {with_} SELECT * FROM ({rest}) AS __out", "duckdb")


def _kept(i: int, level: Level, translate: Translate) -> str:
    """Level i's rows: its groups within the rows kept above, ranked within their parent and cut
    to N, with every aggregation so far."""
    above = [f"__k{j}" for j in range(1, i)]
    direction = "ASC" if level.ascending else "DESC"
    rank = (
        f"row_number() OVER ({'PARTITION BY ' + ', '.join(f'g.{k}' for k in above) + ' ' if above else ''}"
        f"ORDER BY g.__a{i} {direction} NULLS LAST, g.__k{i})"
    )
    carried = ", ".join(f"t.__a{j}" for j in range(1, i))
    joined = (
        f" JOIN __t{i - 1} AS t ON " + " AND ".join(f"g.{k} IS NOT DISTINCT FROM t.{k}" for k in above)
        if above
        else ""
    )
    ranked = f"SELECT g.*{', ' + carried if carried else ''}, {rank} AS __r FROM __g{i} AS g{joined}"
    limit = f" WHERE __r <= {sql(scalar(level.count, translate))}" if level.count else ""
    return f"SELECT * EXCLUDE (__r) FROM ({ranked}){limit}"
