"""One timer thread for every query's time limit, instead of a thread per query.

Starting a thread per query cost about as much as running a small query; this keeps a heap of
deadlines and fires each callback on the one thread unless it was cancelled first.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._wake = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, delay_s: float, action: Callable[[], None]) -> _Entry:
        entry = _Entry(time.monotonic() + delay_s, next(self._seq), action)
        with self._wake:
            heapq.heappush(self._heap, entry)
            self._start()
            # Wake the thread only when its wait must get shorter: waking it for every query (each
            # a later deadline than the one it waits for) cost a thread switch per query.
            if self._heap[0] is entry:
                self._wake.notify()
        return entry

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="query-deadlines", daemon=True)
            self._thread.start()

    def _next_due(self) -> _Entry:
        """Wait (holding the condition) until the earliest live entry is due; pop and return it."""
        while True:
            while self._heap and self._heap[0].cancelled:
                heapq.heappop(self._heap)
            if not self._heap:
                self._wake.wait()
                continue
            wait = self._heap[0].due - time.monotonic()
            if wait <= 0:
                return heapq.heappop(self._heap)
            self._wake.wait(wait)

    def _loop(self) -> None:
        while True:
            with self._wake:
                entry = self._next_due()
            entry.action()  # outside the lock: an action may schedule again


DEADLINES = Deadlines()


class CancelTimer:
    """Calls `cancel` when time is up, and again every `retry_s` until the guarded call returns:
    one cancel that lands between two steps of a driver (or before it knows its statement) is lost.

    `fired` tells the caller that an error it sees came from the time limit.
    """

    def __init__(self, cancel: Callable[[], None], timeout_s: float, retry_s: float) -> None:
        self._cancel = cancel
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._done = False
        self._lock = threading.Lock()
        self.fired = False

    def __enter__(self) -> CancelTimer:
        self._pending = DEADLINES.schedule(self._timeout_s, self._fire)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
            self._pending.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            self._pending = DEADLINES.schedule(self._retry_s, self._fire)
        with suppress(Exception):  # the statement may finish or close under us; nothing left to stop
            self._cancel()
