"""Microsoft's NL2KQL gold queries through the embedded KQL engine: does each pass the validator
against its schema, and run?

The benchmark (`../shared/data/nl2kql_microsoft`, 230 Defender and 197 Sentinel question/KQL
pairs) ships table schemas but no rows. Each schema becomes empty DuckDB tables of the matching
types in a `.duckdb` file under a temporary folder; each gold query is then checked with
`KqlEngine.validate` (the KQL checks, the translation, and the SQL validator against the catalog)
and run on the empty tables (which also binds every column and type). The baseline is the grammar
alone (`duckdb_kql.validate`: does Microsoft's grammar parse it), so what our checks and the
translation add — refusals, unsupported operators, unknown names — shows as the difference.

Run: `python -m benchmarks.kql_nl2kql`; misses are listed with their reason, grouped, and the JSON
report goes to benchmarks/results/kql_nl2kql.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import duckdb_kql

from loom.engines.contracts import QueryError
from loom.engines.kql.engine import KqlEngine
from loom.engines.sources import DuckDBSource
from loom.evals.nl2kql import quote, read_schema

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "nl2kql_microsoft" / "data"
REPORT = ROOT / "benchmarks" / "results" / "kql_nl2kql.json"
SETS = ("Defender", "Sentinel")
NOW = "2023-01-01T00:00:00"


def build(name: str, folder: Path) -> Path:
    """`folder/<name>.duckdb` with an empty table per schema table."""
    path = folder / f"{name.lower()}.duckdb"
    with duckdb.connect(str(path)) as db:
        for table, columns in read_schema(DATA.parent, name).items():
            listed = ", ".join(f"{quote(c)} {t}" for c, t in columns)
            db.execute(f"CREATE TABLE {quote(table)} ({listed})")
    return path


def gold(name: str) -> list[dict[str, str]]:
    text = (DATA / "evaluation_datasets" / f"{name}_Evaluation.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check(engine: KqlEngine, query: str) -> dict[str, Any]:
    """What the grammar, our validator and a run on empty tables say about one query."""
    outcome: dict[str, Any] = {"grammar": not duckdb_kql.validate(query)}
    problems = engine.validate(query)
    outcome["validator"] = not problems
    if problems:
        outcome["reason"] = f"{problems[0].code}: {problems[0].message[:160]}"
        return outcome
    try:
        engine.execute(query, max_rows=10, timeout_s=30)
        outcome["runs"] = True
    except QueryError as e:
        outcome["runs"] = False
        outcome["reason"] = f"{e.code}: {e.message[:160]}"
    return outcome


def run(sets: tuple[str, ...]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sets:
            engine = KqlEngine(DuckDBSource(name=name.lower(), location=str(build(name, Path(tmp)))))
            started = time.perf_counter()
            cases = [
                {"question": g["context"], "query": g["baseline"], **check(engine, g["baseline"])}
                for g in gold(name)
            ]
            engine.close()
            report[name] = {
                "queries": len(cases),
                "grammar_parses": sum(c["grammar"] for c in cases),
                "validator_passes": sum(c["validator"] for c in cases),
                "runs_on_empty_tables": sum(bool(c.get("runs")) for c in cases),
                "seconds": round(time.perf_counter() - started, 1),
                "misses_by_reason": Counter(c["reason"].split(":")[0] for c in cases if "reason" in c),
                "cases": cases,
            }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=(*SETS, "all"), default="all")
    args = parser.parse_args()
    report = run(SETS if args.set == "all" else (args.set,))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1, default=str))
    for name, figures in report.items():
        n = figures["queries"]
        print(
            f"{name}: {n} gold queries; grammar parses {figures['grammar_parses']}/{n} (baseline); "
            f"validator passes {figures['validator_passes']}/{n}; runs on empty tables "
            f"{figures['runs_on_empty_tables']}/{n}; {figures['seconds']} s"
        )
        for reason, count in figures["misses_by_reason"].most_common():
            print(f"  {count:4d}  {reason}")
        for case in [c for c in figures["cases"] if "reason" in c][:40]:
            print(f"    - {case['reason'][:150]}")
    print(f"report: {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
