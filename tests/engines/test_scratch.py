"""Spill folders: one per database, and those of processes that are gone are swept away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.limits import LocalLimits
from loom.engines.sql.scratch import scratch_folder


def gone_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_a_new_folder_per_database_and_the_dead_ones_swept(tmp_path: Path) -> None:
    dead = tmp_path / f"{gone_pid()}-0"
    (dead / "sub").mkdir(parents=True)
    (dead / "duckdb_temp_block-1.block").write_bytes(b"x" * 1024)  # what a killed engine left
    ours = tmp_path / f"{os.getpid()}-99"
    ours.mkdir()
    first, second = scratch_folder(tmp_path), scratch_folder(tmp_path)
    assert not dead.exists() and ours.exists()  # a live process's folder is its own
    assert first != second and first.name.startswith(f"{os.getpid()}-")


def test_a_database_that_spills_does_so_in_its_own_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    limits = LocalLimits(memory_limit="64MB", threads=1, temp_directory=str(tmp_path / "spill"))
    engine = DuckDBEngine(DuckDBSource(name="s", location=str(tmp_path / "data")), limits)
    try:
        query = "SELECT count(DISTINCT md5(i::VARCHAR)) AS n FROM range(3000000) t(i)"
        assert engine.execute(query, max_rows=1, timeout_s=120).rows == [[3000000]]
        made = [p.name for p in (tmp_path / "spill").iterdir()]
        assert made and all(name.startswith(f"{os.getpid()}-") for name in made)
    finally:
        engine.close()
