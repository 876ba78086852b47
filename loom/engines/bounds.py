"""Results bounded in bytes as well as rows, the same way for every engine.

A row cap alone let `SELECT repeat('x', 100000000) FROM range(3)` through the chat: 600 MB in the
SSE response, the store and the next model request. Rows are fetched a few at a time, each value
made JSON-safe and any value longer than `MAX_VALUE_CHARS` cut (and marked: a text, or a list or
object as JSON, however deeply its parts are nested), and fetching stops when the result reaches
`max_bytes`. Sizes are the bytes the values take in JSON as it is sent and stored (UTF-8, control
characters escaped, a number by its digits): probe 9 filled an 8 MiB budget counted in characters
with 4-byte emoji and escaped control characters, 33-50 MB sent. A value counts the bytes it holds
in the server's memory instead when that is more (`value_cost`): many tiny values held up to 19
times their JSON; and a nested value over its share on that count alone crosses as its JSON text,
whole. The column names count too (`header_size`), and each is cut to `MAX_NAME_CHARS`: DuckDB can
build a 100 MB name from a 500-byte query. The first fetch is one row; later ones ask for as many as the
budget left could hold at the size seen so far, so huge rows are held one at a time and small ones
come 256 to a fetch.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from loom.engines.contracts import Column, ResultSet, Value, json_safe

MAX_RESULT_BYTES = 8 * 1024 * 1024  # a result's rows, as JSON would carry them (about)
MAX_VALUE_CHARS = 100_000  # one text value; longer ones are cut and say so
MIN_VALUE_CHARS = 256  # what a value keeps however many columns share the budget
MARK_ROOM = 48  # a cut value's marker and quotes, within its share
MAX_CHUNK = 256  # rows per fetch, once rows are known to be small
MAX_NAME_CHARS = 256  # of a column's name; longer ones are cut and say so
SLOT_BYTES = 8  # the pointer a row or a list holds to each of its values
# ASCII, so that a cut text stays one byte a character in memory (an ellipsis would make CPython
# store the whole text at two).
CUT = "... [cut: {n:,} characters in all]"
CUT_MARK = CUT.split("{", 1)[0]

Truncation = Literal["rows", "bytes"]
Fetch = Callable[[int], Sequence[Sequence[object]]]  # `cursor.fetchmany`


@dataclass(frozen=True)
class Bounded:
    rows: list[list[Value]]
    truncated_by: Truncation | None
    size: int = 0  # the bytes the rows and names take as JSON (as counted against the budget)

    def result(self, columns: list[Column], *, engine: str, query: str, started: float) -> ResultSet:
        """These rows as the ResultSet every engine returns, timed from `started` (perf_counter)."""
        return ResultSet(
            columns=columns,
            rows=self.rows,
            row_count=len(self.rows),
            truncated=self.truncated_by is not None,
            truncated_by=self.truncated_by,
            size_bytes=self.size,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            engine=engine,
            query=query,
        )


def bounded_rows(
    fetch: Fetch,
    *,
    max_rows: int,
    max_bytes: int = MAX_RESULT_BYTES,
    convert: Callable[[object], Value] = json_safe,
    header: int = 0,
) -> Bounded:
    """At most `max_rows` rows and about `max_bytes` (counting `header` bytes already spent on the
    column names), and why it stopped when there was more."""
    rows: list[list[Value]] = []
    size, chunk = header, 1
    while True:
        asked = min(chunk, max_rows + 1 - len(rows))
        fetched = fetch(asked)
        for raw in fetched:
            if len(rows) == max_rows:
                return Bounded(rows, "rows", size)
            most = value_limit(len(raw), max_bytes)
            row = [shorten(convert(v), most) for v in raw]
            cost = sum(value_cost(v) for v in row)
            size += cost
            if size > max_bytes and rows:
                return Bounded(rows, "bytes", size - cost)
            rows.append(row)
            if size > max_bytes:  # the first row alone is over: keep it (its values are cut)
                return Bounded(rows, "bytes", size)
        if len(fetched) < asked:  # fewer than asked: the result has ended
            return Bounded(rows, None, size)
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
    """`value` in about `most` bytes of JSON: a longer text is cut and says how long it was (keeping
    the count of an earlier cut); a list or object whose JSON is longer becomes the start of that
    JSON, marked the same way — its parts may each be small and still add up to gigabytes."""
    if isinstance(value, str):
        marked = value.rfind(CUT_MARK)
        head = value if marked < 0 else value[:marked]  # a value cut before keeps its marker
        if len(head) <= most // 6 or value_size(head) - 2 <= most:  # 6: the most one character takes
            return value
        return _fit(head, most) + (value[marked:] if marked >= 0 else CUT.format(n=len(value)))
    if isinstance(value, list | dict) and value_cost(value) > most:
        text = json.dumps(value, ensure_ascii=False, default=str)
        if value_size(text) - 2 <= most:  # many small parts: one text, whole (it is not cut)
            return text
        return _fit(text, most) + CUT.format(n=len(text))
    return value


def cut_name(name: str) -> str:
    """A column name of at most about `MAX_NAME_CHARS`, marked when cut."""
    return name if len(name) <= MAX_NAME_CHARS else name[:MAX_NAME_CHARS] + CUT.format(n=len(name))


def header_size(names: Sequence[str]) -> int:
    return sum(value_size(n) + 16 for n in names)  # with each column's type and punctuation


def value_cost(value: Value) -> int:
    """What a value counts against a result's budget: the bytes of its JSON, or of what it holds
    in the server's memory when that is more. Counted at their JSON alone, values of a few bytes
    each held 11-19 times their count — a 2-character text is ~59 bytes in CPython with its slot,
    a dict of one key 184 — and unpickling them held the server's interpreter for seconds
    (probe 34: R34-2, R34-3; probe 35: R35-1)."""
    return max(value_size(value), held_bytes(value))


def held_bytes(value: Value) -> int:
    """About what `value` holds in memory as the server receives it (CPython's sizes, the slot
    that refers to it included)."""
    own = sys.getsizeof(value) + SLOT_BYTES
    if isinstance(value, list):
        return own + sum(held_bytes(v) for v in value)
    if isinstance(value, dict):
        return own + sum(held_bytes(str(k)) + held_bytes(v) for k, v in value.items())
    return own


def value_size(value: Value) -> int:
    """The bytes the value takes in JSON as sent (UTF-8; control characters escaped)."""
    if isinstance(value, str):
        if value.isascii() and value.isprintable():  # quotes and backslashes are escaped
            return len(value) + 2 + value.count('"') + value.count("\\")
        return len(json.dumps(value, ensure_ascii=False).encode())
    if isinstance(value, list):
        return 2 + sum(value_size(v) + 1 for v in value)
    if isinstance(value, dict):
        return 2 + sum(value_size(str(k)) + 2 + value_size(v) for k, v in value.items())
    if isinstance(value, int) and not isinstance(value, bool):
        return len(str(value)) if value > 99_999_999 or value < -9_999_999 else 8
    if isinstance(value, float):
        return 24
    return 8


def _fit(text: str, most: int) -> str:
    """The longest start of `text` whose JSON fits `most` bytes (about: cut in proportion, twice)."""
    keep = min(len(text), most)
    for _ in range(3):
        size = value_size(text[:keep]) - 2  # without its quotes
        if size <= most:
            return text[:keep]
        keep = max(0, keep * most // size - 1)
    return text[:keep]
