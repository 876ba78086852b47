"""Long values cut inside DuckDB, before they become Python objects.

Cutting in Python (`bounds.shorten`) comes too late for one huge value: `SELECT repeat('x', 1e9)`
is converted whole first — a gigabyte outside DuckDB's memory limit, for longer than the time
limit, where no interrupt reaches. So the query runs wrapped: each text column is cut with
`left()` and marked like `bounds.CUT`, and a list, struct or map comes back as its JSON text —
the start of it, marked the same way, when it is over the limit (a second, hidden column carries
that). DuckDB does the work under its own memory limit and the time limit's interrupt. The limit is
each value's share of the result's byte budget (`bounds.value_limit`), so a wide row is bounded
as a whole.

Nested values cross as JSON text, decoded by `json.loads`, rather than as DuckDB's Python objects:
building those holds the interpreter (probe 7 and 8: a row of 150 lists of 50,000 decimals held it
for 12 s, and every other query of the engine's process waited), while decoding the same values
from text takes a small fraction of that.

The wrapper renames the query's columns by position (`AS q(c0, c1, …)`), so repeated or odd
output names cannot clash, and gives each its name back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from loom.engines.bounds import CUT, MAX_RESULT_BYTES, value_limit

TEXT_TYPES = frozenset({"VARCHAR", "JSON"})
# Types whose values have a small fixed size: they cross as they are. Any other type is not
# trusted to be small (probe 9: VARIANT holding a 16 MB string passed every cut): it crosses as
# text, cut like any text.
FIXED_TYPES = frozenset(
    {"BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
     "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "DATE", "TIME", "TIMETZ",
     "TIME WITH TIME ZONE", "TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S",
     "TIMESTAMP_MS", "TIMESTAMP_NS", "INTERVAL", "UUID"}
)  # fmt: skip
MAX_DEPTH = 64  # of a nested value kept as a value; a deeper one stays JSON text
# Binary values are not cut but left out when long, saying how long (half a value is no use).
SIZED_TYPES = {"BLOB": ("octet_length", "bytes"), "BIT": ("bit_length", "bits")}
_BEFORE, _AFTER = CUT.split("{n:,}")


@dataclass(frozen=True)
class CutPlan:
    sql: str  # what runs
    width: int  # the columns the query itself returns
    cut_of: dict[int, int] = field(default_factory=dict)  # column → its hidden cut column
    decode: frozenset[int] = frozenset()  # nested columns, which come as JSON text
    types: tuple[str, ...] = ()  # each column's DuckDB type as the query returns it (not as wrapped)

    def describe(self, description: Sequence[Sequence[object]]) -> list[tuple[object, object]]:
        """(name, type) of the query's own columns: the types before wrapping, when known (a nested
        column crosses as JSON text, but is a list, struct or map)."""
        own = list(description)[: self.width]
        if len(self.types) != len(own):
            return [(d[0], d[1]) for d in own]
        return [(d[0], kind) for d, kind in zip(own, self.types, strict=True)]

    def merge(self, row: Sequence[object]) -> list[object]:
        """The query's own columns: a cut value in its column's place, a nested one decoded."""
        values = list(row[: self.width])
        for column in self.decode:
            text = values[column]
            if isinstance(text, str):
                values[column] = decoded(text)
        for column, hidden in self.cut_of.items():
            if row[hidden] is not None:
                values[column] = row[hidden]
        return values


def plan(
    sql: str, columns: Sequence[tuple[str, str]], max_bytes: int = MAX_RESULT_BYTES, renamed: bool = False
) -> CutPlan:
    """`sql` wrapped so that no value of the result is longer than its share of `max_bytes`;
    `columns` are its (name, DuckDB type), as DESCRIBE gives them (names already cut to their
    bound: `renamed` says one was, and the wrapper gives the query those names). Unwrapped when
    nothing can be long and no name was cut."""
    width = len(columns)
    limit = value_limit(width, max_bytes)
    if not renamed and all(_fixed(t) for _, t in columns):
        return CutPlan(sql, width, types=tuple(t for _, t in columns))
    shown: list[str] = []
    hidden: list[str] = []
    cut_of: dict[int, int] = {}
    for i, (name, kind) in enumerate(columns):
        column = f"q.c{i}"
        if _text(kind):
            # As VARCHAR: left() of a JSON value cut inside a multi-byte character (probe 11: R11-2).
            text = column if kind.upper() == "VARCHAR" else f"CAST({column} AS VARCHAR)"
            shown.append(f"{_cut(text, limit)} AS {_quote(name)}")
        elif kind.upper() in SIZED_TYPES:
            size, unit = SIZED_TYPES[kind.upper()]
            over = f"{size}({column}) > {limit}"
            shown.append(f"CASE WHEN {over} THEN NULL ELSE {column} END AS {_quote(name)}")
            cut_of[i] = width + len(hidden)
            note = f"'[left out: ' || format('{{:,}}', {size}({column})) || ' {unit}]'"
            hidden.append(f"CASE WHEN {over} THEN {note} END")
        elif _nested(kind):
            text = f"CAST(to_json({column}) AS VARCHAR)"
            over = f"length({text}) > {limit}"
            shown.append(f"CASE WHEN {over} THEN NULL ELSE {text} END AS {_quote(name)}")
            cut_of[i] = width + len(hidden)
            hidden.append(f"CASE WHEN {over} THEN {_cut(text, limit)} END")
        elif _fixed(kind):
            shown.append(f"{column} AS {_quote(name)}")
        else:  # VARIANT, GEOMETRY, ENUM or a type this list does not know: as text
            shown.append(f"{_cut(f'CAST({column} AS VARCHAR)', limit)} AS {_quote(name)}")
    positions = ", ".join(f"c{i}" for i in range(width))
    select = ", ".join(shown + hidden)
    nested = frozenset(i for i, (_, kind) in enumerate(columns) if _nested(kind))
    types = tuple(t for _, t in columns)
    return CutPlan(f"SELECT {select} FROM ({sql}) AS q({positions})", width, cut_of, nested, types)


def decoded(text: str) -> object:
    """A nested value from its JSON: decimals kept exact (`json_safe` shows them as the top level
    does), and a value nested past `MAX_DEPTH` left as its text (probe 9: a JSON value of depth 300
    inside a list broke the turn, of depth 700 the decoder)."""
    try:
        value = json.loads(text, parse_float=Decimal)
    except (RecursionError, ValueError):  # too deep, or not JSON (cut to its bound): as it came
        return text
    return value if _depth(value) <= MAX_DEPTH else text


def _depth(value: object) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _fixed(kind: str) -> bool:
    """A scalar of a small fixed size (`DECIMAL(38,0)` is; `DECIMAL(38,0)[]` is a list)."""
    return not _nested(kind) and kind.upper().split("(", 1)[0].strip() in FIXED_TYPES


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
