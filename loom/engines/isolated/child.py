"""The child side: one engine, serving the parent's requests on threads of its own.

The child dies with the parent (a parent killed with SIGKILL leaves no engine behind): Linux's
parent-death signal, and an end-of-file on the pipe. Its address space is limited before the
engine exists, so every allocation the engine makes counts (Linux: `/proc` gives the start size).
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from loom.engines.contracts import Catalog, Engine, QueryError
from loom.engines.isolated.protocol import BROKEN, CATALOG, LOG, OK, REFUSED, STARTED, STOP, reporting

MAX_CALLS = 64  # requests served at once; the parent's scheduler admits fewer
PR_SET_PDEATHSIG = 1

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


def serve(conn: Connection, factory: Callable[[], Engine], address_space: int | None) -> None:
    """The child's main: limit it, build the engine, answer requests until told to stop or the
    parent goes away."""
    _die_with_parent()
    send = _sender(conn)
    _forward_logs(send)
    if address_space:
        _limit_growth(address_space)
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
        calls.submit(_answer, engine, catalogs, send, request_id, method, kwargs)
    engine.close()
    os._exit(0)  # not waiting for calls still running: the parent has gone or asked us to go


def _answer(
    engine: Engine, catalogs: _Catalogs, send: Send, request_id: int, method: str, kwargs: dict[str, Any]
) -> None:
    reporting(lambda: send((request_id, STARTED)))
    try:
        value = catalogs.fetch(**kwargs) if method == CATALOG else getattr(engine, method)(**kwargs)
        send((request_id, OK, value, engine.problem(), catalogs.stamp()))
    except QueryError as e:
        send((request_id, REFUSED, (e.code, e.message, e.problems), engine.problem(), catalogs.stamp()))
    except Exception as e:  # an engine bug: the parent reports it, the child keeps serving
        logging.getLogger(__name__).exception("engine call %s failed", method)
        send((request_id, BROKEN, f"{type(e).__name__}: {e}", engine.problem(), catalogs.stamp()))
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
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        self._send((None, LOG, (record.name, record.levelno, text)))


def _forward_logs(send: Send) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(send)]
    root.setLevel(logging.INFO)


def _limit_growth(address_space: int) -> None:
    """Bound the virtual memory the process may add from here on. Counted from what it holds now
    (the runtime and the engines' libraries, ~0.6 GB), so the budget is the engine's own."""
    with open("/proc/self/statm") as statm:
        held = int(statm.read().split()[0]) * resource.getpagesize()
    limit = held + address_space
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (elsewhere: the pipe's end does it)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
