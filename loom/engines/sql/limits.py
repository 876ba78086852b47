"""What an embedded DuckDB database may use. A module of its own, with no engine imports, so the
engine table and Settings can name the limits without loading DuckDB."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalLimits:
    """What one embedded DuckDB database may use (it serves every query on its source): memory
    (`25%` of the machine, `4GB`…; a query past it fails with out_of_memory and the engine keeps
    serving), threads (None: one per core), and where and how much it may spill to disk."""

    memory_limit: str = "25%"
    threads: int | None = None
    temp_directory: str | None = None
    max_temp_size: str = "4GiB"

    def statements(self) -> list[str]:
        sets = [f"SET memory_limit = {_literal(self.memory_limit)}"]
        sets.append(f"SET max_temp_directory_size = {_literal(self.max_temp_size)}")
        if self.threads is not None:
            sets.append(f"SET threads = {int(self.threads)}")
        if self.temp_directory is not None:
            sets.append(f"SET temp_directory = {_literal(self.temp_directory)}")
        return sets


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
