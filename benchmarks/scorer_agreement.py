"""Scorer agreement: does the execution scorer find every gold query equal to itself, two ways?

Every gold query of Spider dev (1,034) and of the BIRD mini-dev questions whose databases are here
(140) is run twice:

- **directly**, with Python's `sqlite3` on the dataset's `.sqlite` file (read-only) — the reference,
  as the benchmarks' own evaluation scripts run it;
- **through our engine**, as the agent's queries run: DuckDB over a copy of the SQLite file, the
  query validated and translated from the `sqlite` dialect by sqlglot plus our SQLite-compat rewrites.

The two results are compared with `loom.evals.scoring.compare` (ordered when the gold has an
outermost ORDER BY; when that fails, ties under the gold's ORDER BY are forgiven using the gold's
ranking from sqlite3). A disagreement is either the engine answering differently from SQLite (a
translation difference: a product finding) or the scorer being wrong; each is listed with its cause.
Then each gold is scored against itself through the engine (`execution_match`, gold = prediction),
which must match every time: anything else is a scorer bug.

Cases come from the suite loaders (`loom.evals.loaders`), so the loaders are exercised as well.
Data is read from ../shared/data (beside the repo) and never copied into the repo.

Run: `python -m benchmarks.scorer_agreement [--dataset spider|bird|all] [--limit N]`; the JSON
report goes to benchmarks/results/scorer_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loom.engines.contracts import Column, Engine, QueryError, ResultSet
from loom.engines.registry import EnginePool
from loom.engines.sources import DuckDBSource
from loom.evals.loaders import load_bird, load_spider
from loom.evals.scoring import (
    SCORING_MAX_BYTES,
    Verdict,
    compare,
    execution_match,
    gold_ties,
    orders_result,
)
from loom.evals.suite import Case, Suite

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
REPORT = ROOT / "benchmarks" / "results" / "scorer_agreement.json"
MAX_ROWS = 200_000
TIMEOUT_S = 60.0

DATASETS: dict[str, Callable[[], Suite]] = {
    "spider": lambda: load_spider(DATA / "nl2sql_spider_dev"),
    "bird": lambda: load_bird(DATA / "nl2sql_bird_minidev"),
}


# --- the reference: sqlite3 -----------------------------------------------------------------------


def open_reference(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.text_factory = lambda b: b.decode("utf-8", "replace")  # as the engine's loader reads text
    return conn


def run_reference(conn: sqlite3.Connection, query: str) -> ResultSet:
    """The query on sqlite3 as a ResultSet; QueryError when sqlite3 refuses or fails it."""
    deadline = time.monotonic() + TIMEOUT_S
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    started = time.perf_counter()
    try:
        cursor = conn.execute(query)
        rows = cursor.fetchmany(MAX_ROWS + 1)
    except sqlite3.Error as e:
        raise QueryError("execution_error", f"sqlite3: {e}") from e
    truncated = len(rows) > MAX_ROWS
    return ResultSet(
        columns=[Column(name=d[0], type="") for d in cursor.description or []],
        rows=[list(r) for r in rows[:MAX_ROWS]],
        row_count=min(len(rows), MAX_ROWS),
        truncated=truncated,
        truncated_by="rows" if truncated else None,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        engine="sqlite3",
        query=query,
    )


# --- one gold query -------------------------------------------------------------------------------


@dataclass
class Outcome:
    id: str
    db: str
    gold: str
    status: str  # agree | disagree | gold_error (fails on sqlite3 itself: not counted)
    cause: str = ""
    note: str = ""
    self_match: bool | None = None  # gold vs gold through the engine
    self_reason: str = ""


def judge(case: Case, reference: sqlite3.Connection, engine: Engine, timing: dict[str, float]) -> Outcome:
    gold = case.expect.gold or ""
    outcome = Outcome(case.id, case.source or "", gold, "agree")
    started = time.perf_counter()
    try:
        expected = run_reference(reference, gold)
    except QueryError as e:
        outcome.status, outcome.cause = "gold_error", e.message
        return outcome
    timing["sqlite3"] += time.perf_counter() - started
    started = time.perf_counter()
    verdict = _through_engine(gold, expected, reference, engine)
    timing["engine"] += time.perf_counter() - started
    if not verdict.match:
        outcome.status, outcome.cause = "disagree", verdict.reason
    outcome.note = verdict.note
    started = time.perf_counter()
    itself = execution_match(engine, gold, gold, dialect="sqlite", max_rows=MAX_ROWS, timeout_s=TIMEOUT_S)
    timing["self"] += time.perf_counter() - started
    outcome.self_match, outcome.self_reason = itself.match, itself.reason
    return outcome


def _through_engine(gold: str, expected: ResultSet, reference: sqlite3.Connection, engine: Engine) -> Verdict:
    try:
        actual = engine.execute(
            gold, max_rows=MAX_ROWS, timeout_s=TIMEOUT_S, dialect="sqlite", max_bytes=SCORING_MAX_BYTES
        )
    except QueryError as e:
        return Verdict("failed", f"the engine did not run it ({e.code}): {e.message}")
    ordered = orders_result(gold, "sqlite")
    verdict = compare(expected, actual, ordered=ordered)
    if verdict.outcome != "mismatch" or len(expected.rows) != len(actual.rows):
        return verdict
    ties = gold_ties(gold, expected, "sqlite", lambda q: run_reference(reference, q))
    if ties is None:
        return verdict
    tied = compare(expected, actual, ordered=ordered, ties=ties)
    return tied if tied.match else verdict


# --- running --------------------------------------------------------------------------------------


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=lambda: {"sqlite3": 0.0, "engine": 0.0, "self": 0.0})
    wall_s: float = 0.0


def run_suite(suite: Suite, limit: int | None) -> Tally:
    tally = Tally()
    started = time.perf_counter()
    cases = [c for c in suite.cases if c.expect.gold][:limit]
    sources = {s.name: s for s in suite.sources if isinstance(s, DuckDBSource)}
    pool = EnginePool()
    try:
        for db in sorted({c.source for c in cases if c.source}):
            source = sources[db]
            reference = open_reference(Path(source.location))
            engine = pool.engine(source, "sql")
            try:
                for case in (c for c in cases if c.source == db):
                    tally.outcomes.append(judge(case, reference, engine, tally.timing))
            finally:
                reference.close()
    finally:
        pool.close()
    tally.wall_s = time.perf_counter() - started
    return tally


def summary(name: str, tally: Tally) -> dict[str, object]:
    counted = [o for o in tally.outcomes if o.status != "gold_error"]
    agree = sum(o.status == "agree" for o in counted)
    itself = sum(bool(o.self_match) for o in counted)
    return {
        "dataset": name,
        "golds": len(tally.outcomes),
        "gold_errors_on_sqlite3": len(tally.outcomes) - len(counted),
        "counted": len(counted),
        "sqlite3_vs_engine_agree": agree,
        "sqlite3_vs_engine_rate": round(agree / len(counted), 4) if counted else None,
        "ties_forgiven": sum("tied rows" in o.note for o in counted),
        "ties_kept_differently_at_the_limit": sum("kept at the LIMIT" in o.note for o in counted),
        "columns_reordered": sum("columns in another order" in o.note for o in counted),
        "gold_vs_gold_match": itself,
        "gold_vs_gold_rate": round(itself / len(counted), 4) if counted else None,
        "wall_s": round(tally.wall_s, 1),
        "seconds": {k: round(v, 1) for k, v in tally.timing.items()},
    }


def _print(name: str, figures: dict[str, object], tally: Tally) -> None:
    print(
        f"{name}: sqlite3 vs engine {figures['sqlite3_vs_engine_agree']}/{figures['counted']} agree "
        f"({figures['sqlite3_vs_engine_rate']}); gold vs gold through the engine "
        f"{figures['gold_vs_gold_match']}/{figures['counted']} ({figures['gold_vs_gold_rate']}); "
        f"{figures['gold_errors_on_sqlite3']} golds fail on sqlite3 itself; ties forgiven "
        f"{figures['ties_forgiven']}; wall {figures['wall_s']} s {figures['seconds']}"
    )
    for o in tally.outcomes:
        if o.status == "disagree":
            print(f"  DISAGREE {o.id} [{o.db}] {o.cause}\n      {o.gold}")
        if o.status != "gold_error" and not o.self_match:
            print(f"  GOLD≠GOLD {o.id} [{o.db}] {o.self_reason}\n      {o.gold}")
        if o.status == "gold_error":
            print(f"  gold fails on sqlite3: {o.id} [{o.db}] {o.cause}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--limit", type=int, default=None, help="at most N gold queries per dataset")
    args = parser.parse_args()
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    report: dict[str, object] = {}
    for name in names:
        tally = run_suite(DATASETS[name](), args.limit)
        figures = summary(name, tally)
        _print(name, figures, tally)
        report[name] = {
            **figures,
            "disagreements": [asdict(o) for o in tally.outcomes if o.status == "disagree"],
            "gold_vs_gold_failures": [
                asdict(o) for o in tally.outcomes if o.status != "gold_error" and not o.self_match
            ],
            "gold_errors": [asdict(o) for o in tally.outcomes if o.status == "gold_error"],
            "notes": {o.id: o.note for o in tally.outcomes if o.note},
        }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1) + "\n")
    print(f"report: {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
