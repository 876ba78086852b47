"""Long values cut inside DuckDB, before they become Python objects.

Cutting in Python (`bounds.cut`) comes too late for one huge value: `SELECT repeat('x', 1e9)`
is converted whole first — a gigabyte outside DuckDB's memory limit, for longer than the time
limit, where no interrupt reaches. So the query runs wrapped: each text column is cut with
`left()` and marked like `bounds.CUT`, and a list, struct or map whose JSON is over the limit
comes back as the start of that JSON, marked the same way (a second, hidden column carries it).
DuckDB does the work under its own memory limit and the time limit's interrupt.

The wrapper renames the query's columns by position (`AS q(c0, c1, …)`), so repeated or odd
output names cannot clash, and gives each its name back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from loom.engines.bounds import CUT, MAX_VALUE_CHARS

TEXT_TYPES = frozenset({"VARCHAR", "JSON"})
# Binary values are not cut but left out when long, saying how long (half a value is no use).
SIZED_TYPES = {"BLOB": ("octet_length", "bytes"), "BIT": ("bit_length", "bits")}
_BEFORE, _AFTER = CUT.split("{n:,}")


@dataclass(frozen=True)
class CutPlan:
    sql: str  # what runs
    width: int  # the columns the query itself returns
    cut_of: dict[int, int] = field(default_factory=dict)  # nested column → its hidden cut column

    def merge(self, row: Sequence[object]) -> list[object]:
        """The query's own columns, each nested one replaced by its cut text when it was cut."""
        values = list(row[: self.width])
        for column, hidden in self.cut_of.items():
            if row[hidden] is not None:
                values[column] = row[hidden]
        return values


def plan(sql: str, columns: Sequence[tuple[str, str]], limit: int = MAX_VALUE_CHARS) -> CutPlan:
    """`sql` wrapped so no value of the result is longer than about `limit` characters; `columns`
    are its (name, DuckDB type), as DESCRIBE gives them. Unwrapped when nothing can be long."""
    width = len(columns)
    if not any(_text(t) or _nested(t) or t.upper() in SIZED_TYPES for _, t in columns):
        return CutPlan(sql, width)
    shown: list[str] = []
    hidden: list[str] = []
    cut_of: dict[int, int] = {}
    for i, (name, kind) in enumerate(columns):
        column = f"q.c{i}"
        if _text(kind):
            shown.append(f"{_cut(column, limit)} AS {_quote(name)}")
        elif kind.upper() in SIZED_TYPES:
            size, unit = SIZED_TYPES[kind.upper()]
            over = f"{size}({column}) > {limit}"
            shown.append(f"CASE WHEN {over} THEN NULL ELSE {column} END AS {_quote(name)}")
            cut_of[i] = width + len(hidden)
            note = f"'[left out: ' || format('{{:,}}', {size}({column})) || ' {unit}]'"
            hidden.append(f"CASE WHEN {over} THEN {note} END")
        elif _nested(kind):
            json = f"CAST(to_json({column}) AS VARCHAR)"
            over = f"length({json}) > {limit}"
            shown.append(f"CASE WHEN {over} THEN NULL ELSE {column} END AS {_quote(name)}")
            cut_of[i] = width + len(hidden)
            hidden.append(f"CASE WHEN {over} THEN {_cut(json, limit)} END")
        else:
            shown.append(f"{column} AS {_quote(name)}")
    renamed = ", ".join(f"c{i}" for i in range(width))
    select = ", ".join(shown + hidden)
    return CutPlan(f"SELECT {select} FROM ({sql}) AS q({renamed})", width, cut_of)


def _text(kind: str) -> bool:
    return kind.upper() in TEXT_TYPES


def _nested(kind: str) -> bool:
    upper = kind.upper()
    return upper.endswith("]") or upper.startswith(("STRUCT", "MAP", "UNION"))


def _cut(text: str, limit: int) -> str:
    marker = f"'{_sql_text(_BEFORE)}' || format('{{:,}}', length({text})) || '{_sql_text(_AFTER)}'"
    return f"CASE WHEN length({text}) > {limit} THEN left({text}, {limit}) || {marker} ELSE {text} END"


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
