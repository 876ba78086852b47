"""The catalog as the model reads it: one line per table, compact enough for large schemas, then
how the tables join.

Tables the source has but could not load come last, with the reason, so that the model can tell the
user why a question about one cannot be answered instead of guessing at another table.
"""

from __future__ import annotations

from collections.abc import Sequence

from loom.engines.contracts import Catalog, ColumnInfo, ForeignKey, TableInfo, UnavailableTable

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


def render_schema(
    catalog: Catalog,
    unavailable: Sequence[UnavailableTable] | None = None,
    keys: Sequence[ForeignKey] = (),
) -> str:
    """The tables, how they join (the `keys` between tables shown), then those left out
    (`unavailable`, by default the catalog's own)."""
    lines = [_table(t) for t in catalog.tables]
    lines.extend(_joins(catalog, keys))
    left_out = catalog.unavailable if unavailable is None else unavailable
    if left_out:
        lines.append("Left out of this source, cannot be queried (tell the user if the question needs one):")
        lines.extend(f"- {u.name}: {u.reason}" for u in left_out)
    return "\n".join(lines)


def _joins(catalog: Catalog, keys: Sequence[ForeignKey]) -> list[str]:
    """`- a.x = b.y` for each key between two tables shown: without them a model reached for a
    column of the wrong table (a local 1.5B model on Spider: `cars_data.Make`)."""
    shown = {t.name.lower() for t in catalog.tables}
    pairs = [
        " AND ".join(
            f"{k.table}.{c} = {k.ref_table}.{r}" for c, r in zip(k.columns, k.ref_columns, strict=False)
        )
        for k in keys
        if k.table.lower() in shown and k.ref_table.lower() in shown
    ]
    return ["Joins:", *(f"- {p}" for p in dict.fromkeys(pairs))] if pairs else []
