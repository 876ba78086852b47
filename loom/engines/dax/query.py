"""A whole DAX query → one SQL SELECT: DEFINE'd measures, variables, columns and tables, EVALUATE,
ORDER BY.

Result columns are named as Power BI's executeQueries names them: `Table[Column]` for a model
column, `[Name]` for a computed one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from loom.engines.contracts import QueryError
from loom.engines.dax.calculated import define_column, define_table, scoped
from loom.engines.dax.compiler import Compiler, Env
from loom.engines.dax.filters import Context
from loom.engines.dax.model import Measure, SemanticModel
from loom.engines.dax.parser import parse_query
from loom.engines.dax.relations import Rel, RelRow
from loom.engines.dax.scope import Sources, quote
from loom.engines.dax.syntax import Query
from loom.engines.dax.values import Expr


@dataclass(frozen=True)
class Compiled:
    sql: str
    columns: list[str]  # the result's column names, as Power BI gives them
    measures: list[str]  # the model's measures the query used


def compile_query(
    text: str, model: SemanticModel, sources: Sources, now: dt.datetime | None = None
) -> Compiled:
    query = parse_query(text)
    return _compile(query, model, sources, now)


def _compile(query: Query, model: SemanticModel, sources: Sources, now: dt.datetime | None) -> Compiled:
    if len(query.evaluates) != 1:
        raise QueryError("unsupported", "One EVALUATE per query: run each table as a query of its own.")
    if any(d.kind in ("COLUMN", "TABLE") for d in query.defines):
        model, sources = scoped(model, sources)
    c = Compiler(model, sources, now)
    env = Env(Context(), (), _defined(c, query))
    evaluate = query.evaluates[0]
    rel = c.table(evaluate.table, env)
    alias = c.aliases.new("q")
    names = _unique([f"[{col.name}]" if col.given else col.name for col in rel.columns])
    listing = ", ".join(f"{alias}.{col.sql} AS {quote(n)}" for col, n in zip(rel.columns, names, strict=True))
    sql = f"SELECT {listing} FROM ({rel.sql}) AS {alias}"
    if evaluate.start_at:
        raise QueryError("unsupported", "START AT is not supported by the embedded DAX engine.")
    if evaluate.order_by:
        row_env = env.with_row(RelRow(rel, alias))
        keys = []
        for key in evaluate.order_by:
            value = c.scalar(key.expr, row_env)
            sql_value = f"lower({value.sql})" if value.kind == "string" else value.sql
            keys.append(f"{sql_value} {'DESC NULLS LAST' if key.descending else 'ASC NULLS FIRST'}")
        sql += " ORDER BY " + ", ".join(keys)
    used = [m for m in c.used_measures if model.measure(m) is not None]
    return Compiled(sql, names, used)


def _defined(c: Compiler, query: Query) -> dict[str, Expr | Rel]:
    """DEFINE's measures (first: the others may use them, as measures use each other), then its
    variables, columns and tables in order. Returns the variables."""
    for d in query.defines:
        if d.kind == "MEASURE":
            c.query_measures[d.name.lower()] = Measure(d.name, d.table or "", "")
            c._parsed[f"{d.table}\x00{d.name}".lower()] = d.expr
    variables: dict[str, Expr | Rel] = {}
    for d in query.defines:
        if d.kind == "VAR":
            here = Env(vars=dict(variables))
            variables[d.name.lower()] = (
                c.table(d.expr, here) if c.is_table(d.expr, here) else c.scalar(d.expr, here)
            )
            c.query_vars = dict(variables)
        elif d.kind == "COLUMN":
            define_column(c, d.table or "", d.name, d.expr, variables)
        elif d.kind == "TABLE":
            define_table(c, d.name, d.expr, variables)
    return variables


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        count = seen.get(n.lower(), 0)
        seen[n.lower()] = count + 1
        out.append(n if count == 0 else f"{n}{count}")
    return out
