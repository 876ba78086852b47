"""Engines by source, opened once and shared: opening a source copies its tables, so it is not free."""

from __future__ import annotations

import threading

from loom.engines.sources import Source
from loom.engines.sql.duckdb_engine import DuckDBEngine


class EnginePool:
    """One SQL engine per (source name, location), created on first use; safe to share across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sql: dict[tuple[str, str], DuckDBEngine] = {}

    def sql_engine(self, source: Source) -> DuckDBEngine:
        key = (source.name, source.location)
        with self._lock:
            engine = self._sql.get(key)
            if engine is None:
                # Construction is cheap (the source is opened lazily on first query), so holding
                # the lock here never makes other threads wait on I/O.
                engine = self._sql[key] = DuckDBEngine(source)
            return engine

    def close(self) -> None:
        with self._lock:
            engines, self._sql = list(self._sql.values()), {}
        for engine in engines:
            engine.close()
