"""Microsoft's documented StormEvents KQL examples, run on the generated StormEvents-shaped table.

The real table is not redistributed, so only that each runs is checked (not its documented output).
Each one that does not run is listed with why; any other failure, or one of these starting to run,
fails the test."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from loom.engines.contracts import QueryError
from loom.engines.kql.engine import KqlEngine
from loom.engines.sources import DuckDBSource
from loom.lakehouse.storms import write_storms

EXAMPLES = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "kql_stormevents" / "docs_kql_examples.json"
)
NOW = dt.datetime(2008, 1, 1, tzinfo=dt.UTC)
# Index in the examples file → why it does not run here.
KNOWN: dict[int, str] = {
    3: "joins on $right.StateName, a column the docs' PopulationData does not have either",
    4: "queries SalesFact, a table of another sample database",
}

needs_examples = pytest.mark.skipif(
    not EXAMPLES.is_file(), reason=f"the StormEvents examples are not at {EXAMPLES}"
)


@pytest.fixture(scope="module")
def storms(tmp_path_factory: pytest.TempPathFactory) -> KqlEngine:
    folder = write_storms(tmp_path_factory.mktemp("storms"))
    return KqlEngine(DuckDBSource(name="storms", location=str(folder)))


@needs_examples
def test_the_documented_examples_run_but_for_the_ones_listed_with_why(storms: KqlEngine) -> None:
    examples = json.loads(EXAMPLES.read_text())
    failed: dict[int, str] = {}
    for i, example in enumerate(examples):
        try:
            storms.execute(example["kql"], max_rows=1000, timeout_s=60, now=NOW)
        except QueryError as e:
            failed[i] = f"{e.code}: {e.message[:120]}"
    assert set(failed) == set(KNOWN), failed
    assert len(examples) - len(failed) >= 27


def test_the_generated_table_has_the_documented_columns_and_kusto_types(storms: KqlEngine) -> None:
    table = next(t for t in storms.catalog().tables if t.name == "StormEvents")
    types = {c.name: c.type for c in table.columns}
    assert types["StartTime"] == "datetime" and types["DamageProperty"] == "long"
    assert types["BeginLat"] == "real" and len(types) == 22
    [[total]] = storms.execute(
        "StormEvents | where StormSummary.Details.Location == 'Texas' | count", max_rows=1, timeout_s=30
    ).rows
    [[texas]] = storms.execute("StormEvents | where State == 'TEXAS' | count", max_rows=1, timeout_s=30).rows
    assert total == texas and isinstance(texas, int) and texas > 0  # dynamic values read as Kusto does
