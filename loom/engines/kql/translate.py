"""A checked KQL query → the DuckDB SQL that answers it over the source's tables.

`duckdb-kql` writes the SQL (a chain of CTEs, one per operator), with the query clock as a
parameter; here the clock is bound as a literal and each KQL table name is replaced by the
catalog's table, on the parsed SQL (sqlglot), so that what runs is one plain statement the SQL
engine can check and run like any other.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb_kql
from antlr4 import ParserRuleContext
from sqlglot import exp

from loom.engines.contracts import Catalog, QueryError
from loom.engines.kql.budget import MAX_TRANSLATE_S, rendering_budget, translation_deadline
from loom.engines.kql.expansion import check_expansion
from loom.engines.kql.functions import preludes as kql_preludes
from loom.engines.kql.gaps import align_datetime_bins, index_by_key, real_ranges, refuse_gaps
from loom.engines.kql.names import kql_schema, kql_tables, preferred_names, shown_name
from loom.engines.kql.nested import find_nested, nested_sql
from loom.engines.kql.series import find_series, series_sql
from loom.engines.kql.tree import Translate
from loom.engines.kql.validator import kql_problems, parse_kql
from loom.engines.sql.qualify import cte_references, unknown_table_problem
from loom.engines.sql.screen import too_complex
from loom.engines.sql.validator import parse_sql


def kql_to_sql(
    query: str, catalog: Catalog, now: dt.datetime | None = None, limit_s: float | None = None
) -> str:
    """The DuckDB SQL for `query`, or QueryError naming what cannot run and where. The work stops
    at `limit_s` (the query's time limit) or `MAX_TRANSLATE_S`, whichever comes first."""
    seconds = MAX_TRANSLATE_S if limit_s is None else min(limit_s, MAX_TRANSLATE_S)
    with translation_deadline(seconds, limit_s):
        return _kql_to_sql(query, catalog, now)


def _kql_to_sql(query: str, catalog: Catalog, now: dt.datetime | None) -> str:
    tree = parse_kql(query)
    problems = kql_problems(tree)
    if problems:
        raise QueryError(problems[0].code, problems[0].message, problems)
    refuse_gaps(tree)
    check_expansion(tree, query)  # before duckdb-kql builds it (probe 11: R11-4)
    clock = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
    names, schema = kql_tables(catalog), kql_schema(catalog)

    def translate(kql: str, tables: dict[str, list[str]]) -> exp.Expr:
        try:
            with rendering_budget():  # whatever form evades the estimate above (probe 13: R13-1)
                translated = duckdb_kql.to_sql(
                    kql, schema={**schema, **tables}, query_now=clock, allow_write=False
                )
        except duckdb_kql.KqlError as e:
            raise _refused(e, names) from e
        except RecursionError as e:  # a long chain of operators (`1 + 2 + … + 3000`) recurses per term
            raise too_complex("it nests or chains more operators than the translator can follow") from e
        sql = parse_sql(str(translated), "duckdb")
        _bind(sql, dict(translated.parameters or {}))
        align_datetime_bins(sql)
        index_by_key(sql)
        real_ranges(sql)
        return sql

    preludes = kql_preludes(tree)

    def after_preludes(kql: str, tables: dict[str, list[str]]) -> exp.Expr:
        return translate(preludes + kql, tables)

    sql = _ours(tree, query, after_preludes) or after_preludes(query, {})
    _name_tables(sql, names)
    return sql.sql("duckdb")


def _ours(tree: ParserRuleContext, query: str, translate: Translate) -> exp.Expr | None:
    """The SQL of an operator duckdb-kql lacks and this package writes (make-series, top-nested),
    when the query has one; None when duckdb-kql translates the whole query."""
    series, nested = find_series(tree, query), find_nested(tree, query)
    if series is not None and nested is not None:
        raise QueryError("unsupported", "make-series and top-nested in one query are not supported.")
    if series is not None:
        return series_sql(series, translate)
    return nested_sql(nested, translate) if nested is not None else None


def _bind(tree: exp.Expr, parameters: dict[str, Any]) -> None:
    """Each `$name` as the literal value the translator meant for it."""
    for node in list(tree.find_all(exp.Placeholder, exp.Parameter)):
        name = node.name
        if name not in parameters:
            raise QueryError("parse_error", f"The query uses a parameter (${name}) that has no value here.")
        node.replace(_literal(parameters[name]))


def _literal(value: Any) -> exp.Expr:
    if isinstance(value, dt.datetime):
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), exp.DataType.Type.TIMESTAMP)
    return exp.convert(value)


def _name_tables(tree: exp.Expr, names: dict[str, str]) -> None:
    """KQL table names → the catalog's (`fact_sales` → `gold.fact_sales`); an unknown one is
    refused with the names KQL knows, closest first."""
    lowered = {name.lower(): full for name, full in names.items()}
    ctes = cte_references(tree)
    for table in list(tree.find_all(exp.Table)):
        if id(table) in ctes or not table.name or table.db:
            continue
        full = lowered.get(table.name.lower())
        if full is None:
            problem = unknown_table_problem(table.name.lower(), _listed(names))
            raise QueryError(problem.code, problem.message, [problem])
        schema, _, bare = full.rpartition(".")
        table.set("this", exp.to_identifier(bare, quoted=True))
        if schema:
            table.set("db", exp.to_identifier(schema, quoted=True))


def _listed(names: dict[str, str]) -> dict[str, str]:
    """Each table once, under the shortest name it answers to, as a query writes it."""
    return {name.lower(): shown_name(name) for name in preferred_names(names).values()}


def _refused(error: duckdb_kql.KqlError, names: dict[str, str]) -> QueryError:
    if isinstance(error, duckdb_kql.KqlUnsupportedError):
        construct = getattr(error, "construct", None) or "part of this query"
        hint = getattr(error, "hint", None) or ""
        if construct.startswith("function:") and " argument" in hint:  # a known function, wrong arity
            return QueryError("parse_error", f"{hint}.")
        return QueryError(
            "unsupported",
            f"{_operator(construct)} is not supported by the embedded KQL engine: write the query "
            "without it (the README lists what is supported).",
        )
    if isinstance(error, duckdb_kql.KqlSyntaxError):
        return QueryError("parse_error", f"KQL syntax error: {error}")
    if isinstance(error, duckdb_kql.KqlSchemaError):
        listing = ", ".join(sorted(_listed(names).values())) or "none"
        return QueryError("unknown_table", f"{error}. Tables: {listing}.")
    return QueryError("parse_error", f"The KQL query cannot be translated: {error}")


def _operator(construct: str) -> str:
    """The name the query wrote: `MakeSeriesOperator` → `make-series`, `aggregate:makeset` →
    `makeset()`, `expression:-string-star-operator-expression` → `string star operator expression`."""
    if ":" in construct:
        kind, name = construct.split(":", 1)
        name = name.strip("-")
        return f"{name}()" if kind in ("function", "aggregate") else name.replace("-", " ")
    if construct != construct[:1] + construct[1:].lower() and " " not in construct:  # CamelCase
        base = construct.removesuffix("Part").removesuffix("Operator")
        return "".join(f"-{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(base))
    return construct
