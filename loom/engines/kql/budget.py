"""Bounds on what duckdb-kql builds, and how long it works, while it translates one query.

duckdb-kql renders a let wherever it is used, so a short query can make it build gigabytes of SQL
(probes 11-13: 124-286 bytes → 1.98 G characters, 20 s of one interpreter's time, in the child
other tenants' queries share). `expansion.py` estimates the size before translating and refuses
the clear cases with a message that says why; each probe found a form the estimate missed. This
is the bound that does not depend on recognising the form: every string duckdb-kql's renderers
return is counted against the translation's budget, and once the total passes it, the next one
raises `too_complex`. A renderer's output is made of outputs already counted, so no single string
built grows much past the budget: the work stops within a few times `MAX_RENDERED_CHARS`.

It wraps duckdb-kql's module-level renderers (internal calls go through the module's globals, so
they are counted too); an upstream option bounding the translation would replace it.

Work that builds little text can still take long: sixteen lets each joining the last to itself
build 65,536 columns whose names duckdb-kql de-duplicates pairwise (49 s for 1.9 MB of SQL).
`translation_deadline` stops the translating thread at its limit by raising an exception in it
(CPython's PyThreadState_SetAsyncExc, delivered between two bytecodes: the translator is Python,
and the character budget keeps any one C-level string operation short).
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import duckdb_kql.translate as renderers

from loom.engines.contracts import QueryError
from loom.engines.sql.deadlines import DEADLINES
from loom.engines.sql.screen import too_complex

# 40x the screen's room for a translated query (5 x 100,000 characters): far past any translation
# the screen accepts, reached in well under a second.
MAX_RENDERED_CHARS = 20_000_000
# Those that return SQL text for expressions, operators and sources: together they see every part.
_RENDERERS = (
    "render_expr",
    "render_operator",
    "render_source",
    "render_union",
    "render_join",
    "render_lookup",
)

MAX_TRANSLATE_S = 5.0  # a translation the screen accepts takes well under a second

_spent: ContextVar[list[int] | None] = ContextVar("kql_rendered", default=None)


@contextmanager
def rendering_budget(limit: int = MAX_RENDERED_CHARS) -> Iterator[None]:
    """Count what duckdb-kql renders within the block; `too_complex` past `limit` characters."""
    token = _spent.set([0, limit])
    try:
        yield
    finally:
        _spent.reset(token)


def _counted(render: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(render)
    def counted(*args: Any, **kwargs: Any) -> Any:
        out = render(*args, **kwargs)
        budget = _spent.get()
        if budget is not None and isinstance(out, str):
            budget[0] += len(out)
            if budget[0] > budget[1]:
                raise too_complex(
                    f"translating it to SQL built more than {budget[1]:,} characters (each nested "
                    "strcat(), tostring() or let used many times multiplies it)"
                )
        return out

    return counted


# Once, when this module is first imported (outside a translation, the counters do nothing).
for _name in _RENDERERS:
    setattr(renderers, _name, _counted(getattr(renderers, _name)))


class Overran(BaseException):
    """Raised in a thread stopped at its deadline. Not an Exception: duckdb-kql catches those in
    places (`except Exception` around a let's schema) and would carry on."""


@contextmanager
def stopped_after(seconds: float) -> Iterator[None]:
    """Raise `Overran` in this thread, between two bytecodes, if the block runs past `seconds`."""
    thread, lock, open_ = threading.get_ident(), threading.Lock(), [True]

    def fire() -> None:
        with lock:
            if open_[0]:
                _raise_in(thread, Overran)

    entry = DEADLINES.schedule(seconds, fire)
    try:
        yield
    finally:
        entry.cancel()
        with lock:  # after this no exception is pending: one not yet raised is taken back
            open_[0] = False
            _raise_in(thread, None)


@contextmanager
def translation_deadline(seconds: float, limit_s: float | None = None) -> Iterator[None]:
    """Stop the translation after `seconds`: `timeout` when that is the query's own limit
    (`limit_s`), `too_complex` when it is the translation's."""
    try:
        with stopped_after(seconds):
            yield
    except Overran:
        if limit_s is not None and seconds >= limit_s:
            raise QueryError(
                "timeout",
                f"The query was stopped after the {seconds:g} s time limit while it was being "
                "translated to SQL. Write it with fewer lets, joins and operators.",
            ) from None
        raise too_complex(f"translating it to SQL took more than {seconds:g} s") from None


_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def _raise_in(thread: int, exception: type[BaseException] | None) -> None:
    """Have `thread` raise `exception` at its next bytecode; None (passed as NULL) takes back one
    not yet raised."""
    _set_async_exc(ctypes.c_ulong(thread), None if exception is None else ctypes.py_object(exception))
