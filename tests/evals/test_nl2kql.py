"""NL2KQL as a suite: rows generated for its gold queries, so that executing them tells answers apart."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from loom.engines.kql.engine import KqlEngine
from loom.engines.sources import DuckDBSource
from loom.evals.loaders import BenchmarkDataError
from loom.evals.nl2kql import DATABASES, load_nl2kql

NOW = dt.datetime(2026, 12, 1, 6, 0)
SCHEMA = [
    {
        "Database": "db",
        "Functions": [],
        "Tables": [
            {
                "Table": "DeviceEvents",
                "Columns": [
                    {"Name": "Timestamp", "Type": "System.DateTime"},
                    {"Name": "ActionType", "Type": "System.String"},
                    {"Name": "CommandLine", "Type": "System.String"},
                    {"Name": "RemotePort", "Type": "System.Int32"},
                    {"Name": "DeviceId", "Type": "System.Guid"},
                ],
            }
        ],
    }
]
PAIRS = [
    (
        "Services installed this week",
        "DeviceEvents | where Timestamp > ago(7d) | where ActionType == 'ServiceInstalled'",
    ),
    ("Command lines with fraps and zfile", 'DeviceEvents | where CommandLine has_all ("fraps", "zfile")'),
    ("Events on port 3131 or above", "DeviceEvents | where RemotePort >= 3131 | count"),
    (
        "Events on 5 October 2022",
        'DeviceEvents | where Timestamp between (datetime("2022-10-05") .. datetime("2022-10-06"))',
    ),
    ("Not KQL the engine runs", "DeviceEvents | evaluate bag_unpack(x)"),
    ("Matches a pattern", 'DeviceEvents | where CommandLine matches regex "[a-z]+_666"'),
]


@pytest.fixture
def benchmark(tmp_path: Path) -> Path:
    root = tmp_path / "nl2kql"
    for name in DATABASES:
        (root / "data" / "schema").mkdir(parents=True, exist_ok=True)
        (root / "data" / "schema" / f"{name}_Schema.json").write_text(json.dumps(SCHEMA))
        folder = root / "data" / "evaluation_datasets"
        folder.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"context": q, "baseline": k}) for q, k in PAIRS]
        (folder / f"{name}_Evaluation.jsonl").write_text("\n".join(lines) + "\n")
    return root


def count(path: str, query: str) -> int:
    engine = KqlEngine(DuckDBSource(name="x", location=path))
    try:
        return engine.execute(query, max_rows=10_000, timeout_s=30, now=NOW).row_count
    finally:
        engine.close()


def test_gold_queries_find_the_rows_generated_for_them_and_others_do_not(
    benchmark: Path, tmp_path: Path
) -> None:
    suite = load_nl2kql(benchmark, tmp_path / "suite.data", now=NOW)
    defender = suite.sources[0]
    assert [s.name for s in suite.sources] == ["defender", "sentinel"]
    assert defender.languages == ("kql",) and Path(defender.location).is_file()
    cases = {c.id: c for c in suite.cases if c.source == "defender"}
    # the operator the engine does not run is left out, and counted
    assert sorted(cases) == [f"nl2kql-defender-{n}" for n in (1, 2, 3, 4, 6)]
    assert "the 10 of 12 gold queries that run" in suite.description
    for n in (1, 2, 4):  # equality, has_all, a time range: each finds its rows
        assert count(defender.location, PAIRS[n - 1][1]) > 0, PAIRS[n - 1][1]
    assert "gold_rows:none" not in cases["nl2kql-defender-1"].tags
    # a regex cannot be generated from: that gold finds nothing and says so
    assert "gold_rows:none" in cases["nl2kql-defender-6"].tags
    # a query that filters on another value answers differently from the gold
    assert count(defender.location, "DeviceEvents | where ActionType == 'ServiceStopped'") == 0
    big = count(defender.location, "DeviceEvents | where RemotePort >= 3131")
    assert 0 < big < count(defender.location, "DeviceEvents | where RemotePort >= 0")
    case = cases["nl2kql-defender-1"]
    assert case.expect.gold_language == "kql" and case.expect.tools == ("nl2kql",)
    assert case.question == "Services installed this week" and "db:defender" in case.tags


def test_the_rows_are_the_same_for_the_same_seed(benchmark: Path, tmp_path: Path) -> None:
    first = load_nl2kql(benchmark, tmp_path / "a", seed=3, now=NOW)
    again = load_nl2kql(benchmark, tmp_path / "b", seed=3, now=NOW)
    query = "DeviceEvents | summarize n = count() by ActionType | order by ActionType asc"
    engines = [KqlEngine(DuckDBSource(name="x", location=s.sources[0].location)) for s in (first, again)]
    try:
        rows = [e.execute(query, max_rows=1000, timeout_s=30, now=NOW).rows for e in engines]
    finally:
        for e in engines:
            e.close()
    assert rows[0] == rows[1] and len(rows[0]) > 3


def test_a_sample_and_a_missing_file(benchmark: Path, tmp_path: Path) -> None:
    suite = load_nl2kql(benchmark, tmp_path / "s", sample=3, seed=1, now=NOW)
    assert len(suite.cases) == 3 and "a sample of 3 (seed 1)" in suite.description
    (benchmark / "data" / "schema" / "Sentinel_Schema.json").unlink()
    with pytest.raises(BenchmarkDataError, match="Sentinel_Schema.json is missing"):
        load_nl2kql(benchmark, tmp_path / "t", now=NOW)
