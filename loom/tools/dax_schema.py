"""What the DAX-writing model sees of a semantic model: its measures first (answers must use them),
then the visible tables and columns as DAX writes them ('Table'[Column]), then the relationships.

Hidden columns and tables are left out (they are hidden from report authors for a reason: keys,
helper columns). A measure shows its description, or the start of its expression when it has none.
"""

from __future__ import annotations

from loom.engines.contracts import Catalog, Embedder, Engine, MeasureInfo, TableInfo
from loom.engines.sources import Source
from loom.tools.querygen import SchemaContext
from loom.tools.schema_prompt import SchemaView

MEASURE_TEXT = 160  # characters of a measure's description or expression


def dax_schema_for(
    source: Source, engine: Engine, question: str, embedder: Embedder | None, view: SchemaView
) -> SchemaContext:
    catalog = engine.catalog()
    return SchemaContext(render_dax_schema(catalog), catalog)


def render_dax_schema(catalog: Catalog) -> str:
    measures = [_measure(m) for m in catalog.measures]
    tables = [_table(t) for t in catalog.tables]
    # Table to table: DAX follows relationships itself, and their keys are usually hidden.
    joins = [f"- '{k.table}' → '{k.ref_table}' (many to one)" for k in catalog.relationships]
    parts = ["Measures (use these for the figures they name):", *(measures or ["(none)"])]
    parts += ["", "Tables and columns:", *tables]
    if joins:
        parts += ["", "Relationships (filters flow from the one side to the many side):", *joins]
    missing = [f"- '{u.name}': {u.reason}" for u in catalog.unavailable]
    if missing:
        parts += ["", "Tables that cannot be read here:", *missing]
    return "\n".join(parts)


def _measure(m: MeasureInfo) -> str:
    about = m.description or " ".join(m.expression.split())
    if len(about) > MEASURE_TEXT:
        about = about[: MEASURE_TEXT - 1] + "…"
    return f"- [{m.name}] (in '{m.table}'): {about}"


def _table(t: TableInfo) -> str:
    columns = ", ".join(
        f"[{c.name}] {c.type}" + (f" ({c.description})" if c.description else "") for c in t.columns
    )
    about = f" — {t.description}" if t.description else ""
    return f"- '{t.name}'{about}: {columns}"
