"""The hostile corpus: every query is refused by the validator, and none runs on a real engine.

`hostile_queries.jsonl` holds one `{"id", "dialect", "query", "why"}` per line; `{dir}` in a query
stands for a real folder next to the source, holding a file worth stealing, so a query that slipped
through would touch something real.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from loom.engines.contracts import QueryError
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.validator import DIALECTS, validate_sql

CORPUS = Path(__file__).with_name("hostile_queries.jsonl")
CASES: list[dict[str, str]] = [json.loads(line) for line in CORPUS.read_text("utf-8").splitlines() if line]

# The codes the validator refuses with before anything runs; the engine adds the catalog's two.
VALIDATOR_CODES = {
    "not_read_only", "multiple_statements", "forbidden_function", "file_access", "system_object",
    "parse_error", "too_complex", "forbidden_syntax", "forbidden_type",
}  # fmt: skip
ENGINE_CODES = VALIDATOR_CODES | {"unknown_table", "unknown_column"}

EVENTS = "kind,n\nopen,1\nclose,2\n"
SECRET = "password\nhunter2\n"


def test_the_corpus_is_large_and_well_formed() -> None:
    assert len(CASES) >= 200
    assert len({c["id"] for c in CASES}) == len(CASES)
    per_dialect = Counter(c["dialect"] for c in CASES)
    assert all(per_dialect[d] >= 50 for d in ("duckdb", "tsql", "databricks")), per_dialect
    assert set(per_dialect) <= set(DIALECTS)
    assert [c["id"] for c in CASES if c["query"] is None] == []
    assert [c["id"] for c in CASES if not c["why"]] == []


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_every_hostile_query_is_refused_by_the_validator(case: dict[str, str]) -> None:
    started = time.perf_counter()
    problems = validate_sql(case["query"].replace("{dir}", "/tmp/nowhere"), case["dialect"])
    assert time.perf_counter() - started < 1.0, "refusals must be fast, even for huge input"
    assert problems, f"accepted ({case['why']}): {case['query'][:200]!r}"
    assert problems[0].code in VALIDATOR_CODES
    assert problems[0].message


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBEngine, Path]]:
    """A one-table folder source, and next to it a folder with a secret the corpus aims at."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "source").mkdir()
    (root / "source" / "events.csv").write_text(EVENTS)
    (root / "outside").mkdir()
    (root / "outside" / "secret.csv").write_text(SECRET)
    engine = DuckDBEngine(DuckDBSource(name="hostile", location=str(root / "source")))
    yield engine, root
    engine.close()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_no_hostile_query_runs_on_a_real_engine(sandbox: tuple[DuckDBEngine, Path]) -> None:
    engine, root = sandbox
    before_rows = engine.execute("SELECT * FROM events ORDER BY n", max_rows=10, timeout_s=5).rows
    before_files = _snapshot(root)
    executed = []
    for case in CASES:
        query = case["query"].replace("{dir}", str(root / "outside"))
        try:
            engine.execute(query, max_rows=10, timeout_s=5, dialect=case["dialect"])
        except QueryError as e:
            if e.code not in ENGINE_CODES:  # execution_error or timeout: it reached DuckDB
                executed.append((case["id"], e.code))
        else:
            executed.append((case["id"], "ran"))
    assert executed == []
    assert engine.execute("SELECT * FROM events ORDER BY n", max_rows=10, timeout_s=5).rows == before_rows
    assert _snapshot(root) == before_files  # nothing created, written or removed
    assert (root / "outside" / "secret.csv").read_text() == SECRET
