"""The shipped smoke suite, replayed offline from its committed cassette, scores as it was recorded.

The cassette (`evals/suites/cassettes/smoke.jsonl`) holds a real model's answers, recorded with
`loom eval run evals/suites/smoke.yaml --record` against the local Qwen2.5-Coder-1.5B server; the
run it made is committed as `evals/baselines/smoke/`. Replaying needs no model: every request the
agent makes must find its recorded answer (no replay miss), and every case must end as it did then
(the compare gate sees no regression and no improvement).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loom.evals.compare import Run, compare
from loom.evals.harness import RunSpec, run_suite
from loom.evals.runner import RunOptions
from loom.evals.suite import load_suite
from loom.lakehouse.seed import seed_lakehouse
from loom.lakehouse.storms import write_storms
from loom.settings import Settings

ROOT = Path(__file__).parents[2]
SMOKE = ROOT / "evals" / "suites" / "smoke.yaml"
BASELINE = ROOT / "evals" / "baselines" / "smoke"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("smoke")
    seed_lakehouse(root / "lakehouse")  # the default samples (20,000 orders, seed 7), as recorded
    write_storms(root / "storms")  # 5,000 events, seed 7
    return root


@pytest.mark.parametrize("concurrency", [1, 8])
def test_the_smoke_suite_replays_offline_as_it_was_recorded(
    home: Path, tmp_path: Path, concurrency: int
) -> None:
    settings = Settings(_env_file=None, home=home, sources_file=home / "none.yaml")
    spec = RunSpec(load_suite(SMOKE), SMOKE, tmp_path / "run", options=RunOptions(concurrency=concurrency))
    summary = asyncio.run(run_suite(spec, settings))
    assert "replay_miss" not in summary["statuses"], summary["statuses"]
    result = compare(Run.read(BASELINE), Run.read(tmp_path / "run"))
    assert result.regressions == [] and result.improvements == []
    assert result.only_before == [] and result.only_after == []
    assert summary["answers_showing_unrun_queries"] == 0  # the product's rule, whatever the model


def test_a_run_not_on_a_terminal_says_each_case_as_it_ends(home: Path, tmp_path: Path) -> None:
    # A live run redirected to a log said nothing for its 50 minutes: the bar is for terminals.
    from typer.testing import CliRunner

    from loom.cli.main import app, mount_subcommands

    mount_subcommands()

    (home / "none.yaml").write_text("sources: []\n")
    result = CliRunner().invoke(
        app, ["eval", "run", str(SMOKE), "--out", str(tmp_path / "runs"), "--home", str(home)]
    )
    assert result.exit_code in (0, 1), result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    total = len(load_suite(SMOKE).cases)
    assert len(lines) == total and lines[-1].startswith(f"[{total}/{total}] ")
    assert " passed in " in result.stderr and "failed so far)" in lines[-1]
