"""What schema the KQL-writing model sees: the source's tables under their KQL names, with Kusto
types, and the joins between them as KQL writes them.

Names KQL reads as keywords or that are not plain identifiers are shown bracketed (`['date']`,
`['silver.orders']`), as the query must write them. Above `SchemaView.link_above` columns only the
tables and columns linked to the question are shown, with the same linking as SQL (BM25 over names
and descriptions, the catalog's sample values, foreign-key closure): a large ADX database has
hundreds of tables. Keys are inferred from names and types (`keys.infer_foreign_keys`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from loom.engines.contracts import (
    Catalog,
    ColumnInfo,
    Embedder,
    Engine,
    ForeignKey,
    TableInfo,
    UnavailableTable,
)
from loom.engines.kql.names import shown_name
from loom.engines.sources import Source
from loom.engines.sql.keys import infer_foreign_keys
from loom.engines.sql.linking import link
from loom.engines.sql.linking_values import ValueIndex
from loom.tools.querygen import SchemaContext
from loom.tools.schema_prompt import DEFAULT_VIEW, MAX_SAMPLES, SchemaView


@dataclass(frozen=True)
class _Context:
    catalog: Catalog
    keys: tuple[ForeignKey, ...]
    values: ValueIndex
    whole: str


_CONTEXTS: dict[tuple[object, ...], _Context] = {}
_LOCK = threading.Lock()


def kql_schema_for(
    source: Source,
    engine: Engine,
    question: str,
    embedder: Embedder | None = None,
    view: SchemaView = DEFAULT_VIEW,
) -> SchemaContext:
    context = _context(source, engine.catalog())
    if _small(context.catalog, view):
        return SchemaContext(context.whole, context.catalog, context.keys)
    linked = link(question, context.catalog, list(context.keys), values=context.values, embedder=embedder)
    shown = render_kql_schema(linked.to_catalog(), context.keys, context.catalog.unavailable)
    return SchemaContext(shown, context.catalog, context.keys)


def known_kql_schema(source: Source, engine: Engine, view: SchemaView = DEFAULT_VIEW) -> SchemaContext | None:
    """`kql_schema_for`'s answer when the engine's catalog is in hand and small: no worker needed."""
    catalog = engine.loaded_catalog()
    if catalog is None or not _small(catalog, view):
        return None
    context = _context(source, catalog)
    return SchemaContext(context.whole, context.catalog, context.keys)


def render_kql_schema(
    catalog: Catalog, keys: Sequence[ForeignKey], unavailable: Sequence[UnavailableTable] | None = None
) -> str:
    lines = [_table(t) for t in catalog.tables]
    shown = {t.name.lower() for t in catalog.tables}
    joins = [
        f"- {shown_name(k.table)} | join kind=inner {shown_name(k.ref_table)} on "
        + ", ".join(_on(c, r) for c, r in zip(k.columns, k.ref_columns, strict=False))
        for k in keys
        if k.table.lower() in shown and k.ref_table.lower() in shown
    ]
    if joins:
        lines += ["Joins:", *dict.fromkeys(joins)]
    left_out = catalog.unavailable if unavailable is None else unavailable  # a linked part has none
    if left_out:
        lines.append("Left out of this source, cannot be queried (tell the user if the question needs one):")
        lines.extend(f"- {u.name}: {u.reason}" for u in left_out)
    return "\n".join(lines)


def _context(source: Source, catalog: Catalog) -> _Context:
    with _LOCK:
        known = _CONTEXTS.get(source.connection_key)
    if known is not None and known.catalog is catalog:
        return known
    keys = tuple(infer_foreign_keys(catalog))
    made = _Context(catalog, keys, ValueIndex.build(catalog), render_kql_schema(catalog, keys))
    with _LOCK:
        _CONTEXTS[source.connection_key] = made
    return made


def _table(table: TableInfo) -> str:
    line = f"- {shown_name(table.name)}: " + ", ".join(_column(c) for c in table.columns)
    if table.description:
        line += f"  // {table.description}"
    return line


def _column(column: ColumnInfo) -> str:
    text = f"{shown_name(column.name)}: {column.type}"
    if column.sample_values:
        text += " (e.g. " + ", ".join(_kql_literal(v) for v in column.sample_values[:MAX_SAMPLES]) + ")"
    return text


def _kql_literal(value: object) -> str:
    return (
        '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, str)
        else str(value)
    )


def _on(column: str, ref: str) -> str:
    return shown_name(column) if column == ref else f"$left.{shown_name(column)} == $right.{shown_name(ref)}"


def _small(catalog: Catalog, view: SchemaView) -> bool:
    return sum(len(t.columns) for t in catalog.tables) <= view.link_above
