"""What an embedded DuckDB database may use. A module of its own, with no engine imports, so the
engine table and Settings can name the limits without loading DuckDB."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# An engine process holds more than DuckDB's buffer pool: the runtime and libraries (~0.2 GB
# resident), results on their way out, what a query builds outside the pool.
PROCESS_HEADROOM = 1 << 30
# Virtual memory runs far ahead of resident memory (DuckDB reserves ~0.7 GB when it connects, and a
# query that spills to disk reserved ~1 GB more at a 512 MB limit): the address-space bound is only
# a backstop for one huge allocation, this much past twice the resident bound.
ADDRESS_SPACE_SLACK = 4 << 30
_UNITS = {
    "b": 1, "byte": 1, "bytes": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6,
    "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}  # fmt: skip
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class LocalLimits:
    """What one embedded DuckDB database may use (it serves every query on its source): memory
    (`25%` of the machine, `4GB`…; a query past it fails with out_of_memory and the engine keeps
    serving), threads (None: one per core), and where and how much it may spill to disk.

    `isolated`: the engine runs in a child process of its own (`loom.engines.isolated`), which is
    killed when a query outlives its time limit or when its resident memory passes
    `process_memory` (default: the memory limit plus `PROCESS_HEADROOM`)."""

    memory_limit: str = "25%"
    threads: int | None = None
    temp_directory: str | None = None
    max_temp_size: str = "4GiB"
    isolated: bool = True
    process_memory: str | None = None
    idle_s: float | None = 600.0  # an engine process idle this long is stopped (None: never)
    total_memory: str | None = "50%"  # what all engine processes may hold together (None: no bound)

    def statements(self) -> list[str]:
        sets = [f"SET memory_limit = {_literal(self.memory_limit)}"]
        sets.append(f"SET max_temp_directory_size = {_literal(self.max_temp_size)}")
        if self.threads is not None:
            sets.append(f"SET threads = {int(self.threads)}")
        if self.temp_directory is not None:
            sets.append(f"SET temp_directory = {_literal(self.temp_directory)}")
        return sets

    def resident(self) -> int:
        """Bytes of resident memory the engine's process may hold."""
        if self.process_memory is not None:
            return size_bytes(self.process_memory)
        return size_bytes(self.memory_limit) + PROCESS_HEADROOM

    def total(self) -> int | None:
        return None if self.total_memory is None else size_bytes(self.total_memory)

    def address_space(self) -> int:
        """Bytes of virtual memory the engine's process may add to what it starts with."""
        return 2 * self.resident() + ADDRESS_SPACE_SLACK


def size_bytes(text: str) -> int:
    """`4GB`, `4g`, `512MiB`, `25%` (of this machine's memory) as bytes, the way DuckDB reads them
    (a unit is required, as DuckDB requires one)."""
    text = text.strip()
    if text.endswith("%"):
        return int(float(text[:-1]) / 100 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    found = _SIZE.fullmatch(text)
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write e.g. 4GB, 512MiB or 25%)")
    return int(float(found.group(1)) * _UNITS[unit])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
