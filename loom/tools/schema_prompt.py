"""The catalog as the model reads it, in one of two forms (`SchemaForm`): `lines`, one line per table
then how the tables join, compact enough for large schemas; or `create`, CREATE TABLE statements
with the keys as FOREIGN KEY clauses and sample values as comments — the form small code models
read best (measured on Spider, `benchmarks/README.md`).

Tables the source has but could not load come last, with the reason, so that the model can tell the
user why a question about one cannot be answered instead of guessing at another table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loom.engines.contracts import Catalog, ColumnInfo, ForeignKey, TableInfo, UnavailableTable
from loom.settings import SchemaForm

MAX_SAMPLES = 4
LINK_ABOVE = 60  # columns


@dataclass(frozen=True)
class SchemaView:
    """How a query-writing prompt shows a source: in which form, and from how many columns on only
    the part linked to the question (`sql_schema`); both settings, so each can be measured."""

    form: SchemaForm = "lines"
    link_above: int = LINK_ABOVE


DEFAULT_VIEW = SchemaView()


def _samples(c: ColumnInfo) -> str:
    return ", ".join(repr(v) for v in c.sample_values[:MAX_SAMPLES])


def _column(c: ColumnInfo) -> str:
    text = f"{c.name} {c.type}"
    if c.sample_values:
        text += f" (e.g. {_samples(c)})"
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
    form: SchemaForm = "lines",
) -> str:
    """The tables, how they join (the `keys` between tables shown), then those left out
    (`unavailable`, by default the catalog's own)."""
    if form == "create":
        lines = [create_tables(catalog, keys, samples=True)]
    else:
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


def create_tables(catalog: Catalog, keys: Sequence[ForeignKey], *, samples: bool) -> str:
    """The catalog as CREATE TABLE statements: each key between tables shown as a FOREIGN KEY
    clause, and with `samples`, a column's sample values and a table's description as comments."""
    shown = {t.name.lower() for t in catalog.tables}
    clauses: dict[str, list[str]] = {}
    for k in keys:
        if k.table.lower() in shown and k.ref_table.lower() in shown:
            refs = (
                f"FOREIGN KEY ({', '.join(k.columns)}) REFERENCES {k.ref_table} ({', '.join(k.ref_columns)})"
            )
            clauses.setdefault(k.table.lower(), []).append(refs)
    return "\n\n".join(_create(t, clauses.get(t.name.lower(), []), samples) for t in catalog.tables)


def _create(table: TableInfo, clauses: list[str], samples: bool) -> str:
    items = [f"{c.name} {c.type}" for c in table.columns] + clauses
    lines = []
    for i, item in enumerate(items):
        line = f"  {item}{',' if i < len(items) - 1 else ''}"
        column = table.columns[i] if i < len(table.columns) else None
        if samples and column is not None and column.sample_values:
            line += f"  -- e.g. {_samples(column)}"
        lines.append(line)
    head = f"-- {table.description}\n" if samples and table.description else ""
    return f"{head}CREATE TABLE {table.name} (\n" + "\n".join(lines) + "\n);"
