"""What an embedded DuckDB database may use. A module of its own, with no engine imports, so the
engine table and Settings can name the limits without loading DuckDB."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# An engine process holds more than DuckDB's buffer pool: the address space DuckDB reserves when it
# connects (~0.7 GB measured), thread stacks, allocator arenas, results on their way out.
PROCESS_HEADROOM = 2 << 30
_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}  # fmt: skip
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class LocalLimits:
    """What one embedded DuckDB database may use (it serves every query on its source): memory
    (`25%` of the machine, `4GB`…; a query past it fails with out_of_memory and the engine keeps
    serving), threads (None: one per core), and where and how much it may spill to disk.

    `isolated`: the engine runs in a child process of its own (`loom.engines.isolated`), which is
    killed when a query outlives its time limit, and whose address space may grow by
    `process_memory` past what it held at start (default: the memory limit plus
    `PROCESS_HEADROOM`)."""

    memory_limit: str = "25%"
    threads: int | None = None
    temp_directory: str | None = None
    max_temp_size: str = "4GiB"
    isolated: bool = True
    process_memory: str | None = None

    def statements(self) -> list[str]:
        sets = [f"SET memory_limit = {_literal(self.memory_limit)}"]
        sets.append(f"SET max_temp_directory_size = {_literal(self.max_temp_size)}")
        if self.threads is not None:
            sets.append(f"SET threads = {int(self.threads)}")
        if self.temp_directory is not None:
            sets.append(f"SET temp_directory = {_literal(self.temp_directory)}")
        return sets

    def address_space(self) -> int:
        """Bytes of virtual memory the engine's process may add to what it starts with."""
        if self.process_memory is not None:
            return size_bytes(self.process_memory)
        return size_bytes(self.memory_limit) + PROCESS_HEADROOM


def size_bytes(text: str) -> int:
    """`4GB`, `512MiB`, `25%` (of this machine's memory) as bytes, the way DuckDB reads them."""
    text = text.strip()
    if text.endswith("%"):
        return int(float(text[:-1]) / 100 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    found = _SIZE.fullmatch(text)
    unit = found.group(2).lower() if found else ""
    if found is None or (unit or "b") not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write e.g. 4GB, 512MiB or 25%)")
    return int(float(found.group(1)) * _UNITS[unit or "b"])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
