"""Results bounded in bytes as well as rows, the same way for every engine.

A row cap alone let `SELECT repeat('x', 100000000) FROM range(3)` through the chat: 600 MB in the
SSE response, the store and the next model request. Rows are fetched a few at a time, each value
made JSON-safe and any value longer than `MAX_VALUE_CHARS` cut (and marked: a text, or a list or
object as JSON, however deeply its parts are nested), and fetching stops
when the result reaches `max_bytes` (sizes are estimated from the values, as JSON would carry
them). The first fetch is one row; later ones ask for as many as the budget left could hold at the
size seen so far, so huge rows are held one at a time and small ones come 256 to a fetch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from loom.engines.contracts import Value, json_safe

MAX_RESULT_BYTES = 8 * 1024 * 1024  # a result's rows, as JSON would carry them (about)
MAX_VALUE_CHARS = 100_000  # one text value; longer ones are cut and say so
MIN_VALUE_CHARS = 256  # what a value keeps however many columns share the budget
MARK_ROOM = 48  # a cut value's marker and quotes, within its share
MAX_CHUNK = 256  # rows per fetch, once rows are known to be small
CUT = "… [cut: {n:,} characters in all]"
CUT_MARK = CUT.split("{", 1)[0]

Truncation = Literal["rows", "bytes"]
Fetch = Callable[[int], Sequence[Sequence[object]]]  # `cursor.fetchmany`


@dataclass(frozen=True)
class Bounded:
    rows: list[list[Value]]
    truncated_by: Truncation | None


def bounded_rows(
    fetch: Fetch,
    *,
    max_rows: int,
    max_bytes: int = MAX_RESULT_BYTES,
    convert: Callable[[object], Value] = json_safe,
) -> Bounded:
    """At most `max_rows` rows and about `max_bytes`, and why it stopped when there was more."""
    rows: list[list[Value]] = []
    size, chunk = 0, 1
    while True:
        asked = min(chunk, max_rows + 1 - len(rows))
        fetched = fetch(asked)
        for raw in fetched:
            if len(rows) == max_rows:
                return Bounded(rows, "rows")
            most = value_limit(len(raw), max_bytes)
            row = [shorten(convert(v), most) for v in raw]
            size += sum(value_size(v) for v in row)
            if size > max_bytes and rows:
                return Bounded(rows, "bytes")
            rows.append(row)
            if size > max_bytes:  # the first row alone is over: keep it (its values are cut)
                return Bounded(rows, "bytes")
        if len(fetched) < asked:  # fewer than asked: the result has ended
            return Bounded(rows, None)
        chunk = _next_chunk(size, len(rows), max_bytes)


def value_limit(columns: int, max_bytes: int = MAX_RESULT_BYTES) -> int:
    """The characters one value may keep: its share of the result's budget, so that a single row
    fits it however wide (probe 8: 3,000 columns of 100,000 characters made one 300 MB row)."""
    return max(MIN_VALUE_CHARS, min(MAX_VALUE_CHARS, max_bytes // max(columns, 1) - MARK_ROOM))


def _next_chunk(size: int, count: int, max_bytes: int) -> int:
    """As many rows as the budget left could hold at the size seen so far (at most `MAX_CHUNK`)."""
    average = max(size // max(count, 1), 1)
    return max(1, min(MAX_CHUNK, (max_bytes - size) // average))


def shorten(value: Value, most: int) -> Value:
    """`value` in about `most` characters: a longer text is cut and says how long it was (keeping
    the count of an earlier cut); a list or object whose JSON is longer becomes the start of that
    JSON, marked the same way — its parts may each be small and still add up to gigabytes."""
    if isinstance(value, str):
        if len(value) <= most:
            return value
        marked = value.rfind(CUT_MARK)
        return value[:most] + (value[marked:] if marked >= 0 else CUT.format(n=len(value)))
    if isinstance(value, list | dict) and value_size(value) > most:
        text = json.dumps(value, ensure_ascii=False, default=str)
        return text[:most] + CUT.format(n=len(text))
    return value


def value_size(value: Value) -> int:
    """About how many bytes the value takes in JSON, without encoding it."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, list):
        return 2 + sum(value_size(v) + 1 for v in value)
    if isinstance(value, dict):
        return 2 + sum(len(str(k)) + 4 + value_size(v) for k, v in value.items())
    return 8
