"""One daemon thread that looks over a set of objects at an interval: the engines' memory
governor and their idle reaper are two of these."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Patrol(Generic[T]):
    """Calls `visit` with the objects being watched every `interval_s`; they are held weakly, so
    watching never keeps one alive, and the thread starts with the first."""

    def __init__(self, name: str, interval_s: float, visit: Callable[[list[T]], None]) -> None:
        self._name, self._interval_s, self._visit = name, interval_s, visit
        self._items: weakref.WeakSet[T] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, item: T) -> None:
        with self._lock:
            self._items.add(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self._interval_s)
            with self._lock:
                items = list(self._items)
            self._visit(items)
