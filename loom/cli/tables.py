"""The one table view of a ResultSet in a terminal, for `loom query sql` and the turns of `ask`/`chat`.

Kept apart from `render.py` so that `loom query` does not load the AG-UI event models to print rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from loom.engines.contracts import ResultSet

NUMERIC_TYPES = frozenset({"integer", "bigint", "float", "double", "decimal"})
# What a terminal cell shows of a value: rich measures every character's width, and an 8 MiB
# result of emoji took 29 s to lay out (probe 9) for a screen that shows a few hundred.
CELL_CHARS = 500


def cell_text(value: Any) -> str:
    """A value as text, the same in a table and in CSV: NULL empty, booleans `true`/`false`, nested
    values as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cell(value: Any) -> str:
    text = cell_text(value)
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + "…"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def result_view(
    result: ResultSet | Mapping[str, Any],
    *,
    limit: int | None = None,
    show_types: bool = False,
    truncated_note: str = "stopped at the row cap",
) -> Group:
    """A ResultSet (or a `loom.result_table` event's value) as a table, with a footer line under it.

    The footer is a line of its own, not the table's caption, so a narrow table does not squeeze it.
    """
    if not isinstance(result, ResultSet):
        result = ResultSet.model_validate(result)
    shown = result.rows if limit is None else result.rows[:limit]
    table = Table(header_style="bold")
    for column in result.columns:
        header = Text.assemble(column.name, ("\n" + column.type, "dim")) if show_types else Text(column.name)
        table.add_column(header, justify="right" if column.type in NUMERIC_TYPES else "left")
    for row in shown:
        table.add_row(*(Text("null", style="dim") if v is None else Text(_cell(v)) for v in row))
    return Group(table, Text(_footer(result, len(shown), truncated_note), style="dim"))


def _footer(result: ResultSet, shown: int, truncated_note: str) -> str:
    parts = [plural(result.row_count, "row")]
    if shown < len(result.rows):
        parts.append(f"showing the first {shown}")
    if result.truncated:
        parts.append(truncated_note)
    if result.elapsed_ms:
        parts.append(f"{result.elapsed_ms:.1f} ms")
    return " · ".join(parts + result.notes)  # what the source said about the run (its cost)
