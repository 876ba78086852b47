"""The turn-overhead benchmark still runs end to end (tiny sizes; its figures are not checked here)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.turn_overhead import run_rounds
from loom.lakehouse.seed import seed_lakehouse


async def test_one_small_round_reports_every_figure(tmp_path: Path) -> None:
    seed_lakehouse(tmp_path / "lakehouse", orders=300)
    args = argparse.Namespace(turns=3, rounds=1, concurrency=3)

    report = await run_rounds(tmp_path, args)

    row = report["median_of_rounds"]
    for shape in ("verified", "generated"):
        assert row[f"{shape}_in_process_p50_ms"] > 0
        assert row[f"{shape}_baseline_p50_ms"] > 0
    for where in ("leaves", "arrives"):
        for token in ("tool", "text"):
            assert row[f"first_byte_{where}_after_{token}_token_p50_ms"] > 0
    assert row["concurrent_errors"] == 0
    assert row["concurrent_streams"] == 3
