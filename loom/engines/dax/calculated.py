"""Calculated columns and tables: the model's own (computed when it loads) and a query's
`DEFINE COLUMN` / `DEFINE TABLE` (computed for that query only).

Both are computed as DAX computes them at refresh: a column's expression in the row context of its
table with no filter context; a table's expression with no filter context, its columns new columns
of a new table that no relationship joins (filtering it filters nothing else).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from loom.engines.contracts import QueryError
from loom.engines.dax import values as v
from loom.engines.dax.compiler import Compiler, Env
from loom.engines.dax.model import DataType, ModelColumn, ModelTable, SemanticModel
from loom.engines.dax.relations import Rel
from loom.engines.dax.scope import SQL_TYPES, Sources, quote
from loom.engines.dax.syntax import Node
from loom.engines.dax.values import Expr

# The model type a computed value is held as (a number keeps DuckDB's own type: 2, not 2.0).
_DATA_TYPES: dict[str, DataType] = {
    v.NUMBER: "double",
    v.TEXT: "string",
    v.BOOLEAN: "boolean",
    v.DATETIME: "dateTime",
}


def add_column(
    c: Compiler,
    table: ModelTable,
    name: str,
    node: Node,
    data_type: DataType | None = None,
    variables: Mapping[str, Expr | Rel] | None = None,
) -> str:
    """Column `name` of `table` computed from `node` row by row: the table's SQL in `c.sources`
    gains it, cast to `data_type` when the model gives one. Returns the value's kind."""
    scope = c.scope(table.name)
    value = c.scalar(node, Env(vars=dict(variables or {})).with_row(c.table_row(scope)))
    sql = value.sql if data_type is None else f"CAST({value.sql} AS {SQL_TYPES[data_type]})"
    computed = f"{scope.alias}.*, {sql} AS {quote(name)}"
    c.sources.tables[table.name.lower()] = f"(SELECT {computed} FROM {scope.from_clause()})"
    return value.kind


def define_column(
    c: Compiler, table_name: str, name: str, node: Node, variables: Mapping[str, Expr | Rel]
) -> None:
    """`DEFINE COLUMN T[name] = …`: a column of T for this query."""
    table = c.model.table(table_name)
    if table.column(name) is not None or c.model.measure(name) is not None:
        raise QueryError(
            "duplicate_name",
            f"'{table.name}' already has a column or measure named [{name}]: name it differently.",
        )
    kind = add_column(c, table, name, node, variables=variables)
    column = ModelColumn(name, data_type=_DATA_TYPES.get(kind, "string"))
    grown = replace(table, columns={**table.columns, name.lower(): column})
    c.model.tables[table.name.lower()] = grown
    _may_be_blank(c.sources, grown, [column])


def define_table(c: Compiler, name: str, node: Node, variables: Mapping[str, Expr | Rel]) -> None:
    """`DEFINE TABLE name = …`: a table for this query, joined to nothing."""
    if name.lower() in c.model.tables:
        raise QueryError(
            "duplicate_name", f"The model already has a table '{name}': name the new one differently."
        )
    rel = c.table(node, Env(vars=dict(variables)))
    table = ModelTable(name)
    listing = []
    for col in rel.columns:
        column_name = col.name if col.given else _bare(col.name)
        if table.column(column_name) is not None:
            raise QueryError(
                "duplicate_name",
                f"The table '{name}' would have two columns named [{column_name}]: rename one.",
            )
        table.add(ModelColumn(column_name, data_type=_DATA_TYPES.get(col.kind, "string")))
        listing.append(f"r.{col.sql} AS {quote(column_name)}")
    c.model.add_table(table)
    c.sources.tables[name.lower()] = f"(SELECT {', '.join(listing)} FROM ({rel.sql}) AS r)"
    _may_be_blank(c.sources, table, list(table.columns.values()))


def scoped(model: SemanticModel, sources: Sources) -> tuple[SemanticModel, Sources]:
    """Copies a query may add columns and tables to, leaving the loaded model as it was."""
    copy = replace(model, tables=dict(model.tables), measures=dict(model.measures))
    return copy, replace(sources, tables=dict(sources.tables), missing=dict(sources.missing))


def _may_be_blank(sources: Sources, table: ModelTable, columns: list[ModelColumn]) -> None:
    if sources.blanks is not None:
        sources.blanks = sources.blanks | {(table.name.lower(), col.name.lower()) for col in columns}


def _bare(name: str) -> str:
    """`Product[Color]` → `Color`."""
    return name[name.index("[") + 1 : -1] if name.endswith("]") and "[" in name else name
