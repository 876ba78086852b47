"""The child side: one engine, serving the parent's requests on threads of its own.

Before the engine exists the child names itself, bounds its address space (every allocation the
engine makes counts) and starts watching its owner (`lifeline`). Told to stop, or finding the pipe
closed, it exits at once: closing the engine could wait on a load that hangs, and an in-memory
database has nothing to save.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from loom.engines.contracts import Catalog, Engine, QueryError
from loom.engines.errors import bounded_record
from loom.engines.isolated.lifeline import bound_address_space, end_with, name_process
from loom.engines.isolated.protocol import (
    BROKEN,
    CATALOG,
    LOG,
    OK,
    PING,
    PONG,
    REFUSED,
    STARTED,
    STOP,
    reporting,
)
from loom.engines.sql.scratch import release_scratch

MAX_CALLS = 64  # requests served at once; the parent's scheduler admits fewer

Send = Callable[[tuple[Any, ...]], None]


class _Catalogs:
    """Which catalog the parent holds, so that it is sent once per load, not once per turn.

    Every reply carries a stamp: the number of the catalog last sent when the engine still holds
    it current (`loaded_catalog()`, which reads nothing), else None. The parent answers from the
    catalog it holds while the stamps say it is current; `catalog` sends it only when it changed."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._sent: Catalog | None = None
        self._number = 0

    def fetch(self, held: int | None) -> tuple[int, Catalog | None]:
        """(its number, the catalog) — None in its place when the parent holds it already."""
        found = self._engine.catalog()
        with self._lock:
            if found is not self._sent:
                self._sent, self._number = found, self._number + 1
            return self._number, (None if held == self._number else found)

    def stamp(self) -> int | None:
        current = self._engine.loaded_catalog()
        with self._lock:
            return self._number if current is not None and current is self._sent else None


def serve(
    conn: Connection, factory: Callable[[], Engine], address_space: int | None, owner: int, label: str
) -> None:
    """The child's main: limit it, build the engine, answer requests until told to stop or the
    parent goes away."""
    end_with(owner)
    name_process(label)
    send = _sender(conn)
    _forward_logs(send)
    if address_space:
        bound_address_space(address_space)
    engine = factory()
    catalogs = _Catalogs(engine)
    calls = ThreadPoolExecutor(MAX_CALLS, thread_name_prefix="engine-call")
    while True:
        try:
            request_id, method, kwargs = conn.recv()
        except (EOFError, OSError):
            break
        if method == STOP:
            break
        if method == PING:
            send((None, PONG))
            continue
        try:
            calls.submit(_answer, engine, catalogs, send, request_id, method, kwargs)
        except RuntimeError:  # no thread to be had: memory is short; this call fails, not the child
            send((request_id, REFUSED, _no_room(), engine.problem(), None))
    release_scratch()  # DuckDB leaves its spill files when its database is not closed
    os._exit(0)  # not waiting for calls still running: the parent has gone or asked us to go


def _no_room() -> tuple[str, str, list[Any]]:
    message = "The engine had no memory left to start this query; try again when others have finished."
    return "out_of_memory", message, []


def _answer(
    engine: Engine, catalogs: _Catalogs, send: Send, request_id: int, method: str, kwargs: dict[str, Any]
) -> None:
    reporting(lambda: send((request_id, STARTED)))
    try:
        value = catalogs.fetch(**kwargs) if method == CATALOG else getattr(engine, method)(**kwargs)
        send((request_id, OK, value, engine.problem(), catalogs.stamp()))
    except QueryError as e:
        send((request_id, REFUSED, (e.code, e.message, e.problems), engine.problem(), catalogs.stamp()))
    except Exception as e:  # an engine bug: logged with its traceback; the child keeps serving
        logging.getLogger(__name__).exception("engine call %s failed", method)
        send((request_id, BROKEN, type(e).__name__, engine.problem(), catalogs.stamp()))
    finally:
        reporting(None)


def _sender(conn: Connection) -> Send:
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with lock:
            try:
                conn.send(message)
            except (OSError, ValueError):  # the parent is gone; the main loop sees it and exits
                pass

    return send


class _PipeHandler(logging.Handler):
    """Log records go to the parent, which logs them under the same logger: one server log."""

    def __init__(self, send: Send) -> None:
        super().__init__(logging.INFO)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        # Bounded before it crosses the pipe: an exception may carry a value the query built.
        self._send((None, LOG, (record.name, record.levelno, bounded_record(record))))


def _forward_logs(send: Send) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(send)]
    root.setLevel(logging.INFO)
