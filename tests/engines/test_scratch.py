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


def test_folders_whose_owner_is_gone_are_swept_and_nothing_else(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from loom.engines.sql.scratch import scratch_folder; "
        "print(scratch_folder(Path(sys.argv[1])).parent, flush=True); import os; os._exit(0)"
    )  # killed, in effect: no exit handlers run
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    dead = Path(done.stdout.strip())
    (dead / "0").mkdir()
    (dead / "0" / "duckdb_temp_block-1.block").write_bytes(b"x" * 1024)  # what a killed engine left
    strangers = [tmp_path / "99999999999999999999-x", tmp_path / "²-x", tmp_path / "notes"]
    for folder in strangers:
        folder.mkdir()
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.mkdir()
    (tmp_path / "1-link").symlink_to(victim, target_is_directory=True)
    first, second = scratch_folder(tmp_path), scratch_folder(tmp_path)
    assert not dead.exists()  # its process is gone: its lock could be taken
    assert all(folder.exists() for folder in strangers) and victim.exists()  # not ours: left alone
    assert first.parent == second.parent and first != second  # one folder per process, one per database
    assert first.parent.name.startswith(f"{os.getpid()}-")
    scratch_folder(tmp_path)
    assert first.parent.exists()  # our own, locked while we live, is never swept


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


def test_a_process_that_exits_takes_its_spill_folder_along(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from loom.engines.sql.scratch import scratch_folder; "
        "f = scratch_folder(Path(sys.argv[1])); f.mkdir(); (f / 'spill.tmp').write_bytes(b'x' * 1024); "
        "print(f.parent)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert not Path(done.stdout.strip()).exists()
