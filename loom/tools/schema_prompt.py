"""The catalog as the model reads it: one line per table, compact enough for large schemas."""

from __future__ import annotations

from loom.engines.contracts import Catalog, ColumnInfo, TableInfo

MAX_SAMPLES = 4


def _column(c: ColumnInfo) -> str:
    text = f"{c.name} {c.type}"
    if c.sample_values:
        samples = ", ".join(repr(v) for v in c.sample_values[:MAX_SAMPLES])
        text += f" (e.g. {samples})"
    return text


def _table(t: TableInfo) -> str:
    line = f"- {t.name}: " + ", ".join(_column(c) for c in t.columns)
    if t.description:
        line += f"  -- {t.description}"
    return line


def render_schema(catalog: Catalog) -> str:
    return "\n".join(_table(t) for t in catalog.tables)
