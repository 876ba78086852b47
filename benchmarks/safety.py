"""Safety of the SQL validator: every hostile query refused, no gold query refused, and its cost.

Three figures, all from `loom.engines.sql.validator.validate_sql`:

- hostile: the corpus in tests/engines/hostile_queries.jsonl (writes, DDL, multi-statement, file and
  network readers, system objects, comment/casing/unicode tricks, oversized input), refused / total
  per dialect — the target is all of them;
- gold: every gold query of Spider dev, the BIRD mini-dev subset and GeoQuery through
  `validate_sql(query, "sqlite")`, refused count with each code — the target is 0; then the same
  queries again with a catalog read from each query's own SQLite database, so the unknown-table and
  unknown-column checks are measured for false positives too;
- cost: validate_sql p50/p99 on a typical three-join query, without and with a catalog.

The gold data is read at run time from ../shared/data (relative to the repository root) and never
copied; when it is absent the gold figure is skipped with the reason printed.

Run: `python -m benchmarks.safety [--data DIR] [--runs N] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.engines.contracts import Catalog, ColumnInfo, Problem, TableInfo
from loom.engines.sql.validator import validate_sql

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "engines" / "hostile_queries.jsonl"
DEFAULT_DATA = ROOT.parent / "shared" / "data"
PLACEHOLDER_DIR = "/tmp/loom-safety"  # what `{dir}` in the corpus stands for here: never read

SPIDER = "nl2sql_spider_dev"
BIRD = "nl2sql_bird_minidev"
GEO = "nl2sql_text2sql_data_geo_restaurants"

THREE_JOINS = (
    "SELECT s.region, p.category, sum(f.net_amount) AS revenue FROM gold.fact_sales AS f "
    "JOIN gold.dim_store AS s ON f.store_id = s.store_id "
    "JOIN gold.dim_product AS p ON f.product_id = p.product_id "
    "JOIN gold.dim_date AS d ON f.date_id = d.date_id "
    "WHERE d.year = 2025 GROUP BY 1, 2 ORDER BY revenue DESC LIMIT 10"
)


@dataclass
class GoldQuery:
    dataset: str
    ident: str
    query: str
    database: Path | None  # the SQLite file it runs on, for the catalog check


@dataclass
class Tally:
    total: int = 0
    refused: list[tuple[str, Problem]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)


# --- hostile corpus -------------------------------------------------------------------------------


def load_corpus(path: Path = CORPUS) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def hostile_figures(corpus: list[dict[str, str]]) -> dict[str, Tally]:
    per_dialect: dict[str, Tally] = {}
    for case in corpus:
        tally = per_dialect.setdefault(case["dialect"], Tally())
        tally.total += 1
        problems = validate_sql(case["query"].replace("{dir}", PLACEHOLDER_DIR), case["dialect"])
        if problems:
            tally.refused.append((case["id"], problems[0]))
        else:
            tally.accepted.append(case["id"])
    return per_dialect


# --- gold queries ---------------------------------------------------------------------------------


def load_gold(data: Path) -> tuple[list[GoldQuery], list[str]]:
    """Every gold query found under `data`, and a note for each dataset that is missing."""
    queries: list[GoldQuery] = []
    missing: list[str] = []
    for name, loader in ((SPIDER, _spider), (BIRD, _bird), (GEO, _geo)):
        if not (data / name).is_dir():
            missing.append(f"{name}: not found under {data}")
            continue
        queries.extend(loader(data / name))
    return queries, missing


def _spider(folder: Path) -> Iterator[GoldQuery]:
    for i, item in enumerate(json.loads((folder / "dev.json").read_text(encoding="utf-8"))):
        db = folder / "database" / item["db_id"] / f"{item['db_id']}.sqlite"
        yield GoldQuery("spider", f"spider-{i}", item["query"], db)


def _bird(folder: Path) -> Iterator[GoldQuery]:
    items = json.loads((folder / "mini_dev_sqlite_subset_3dbs.json").read_text(encoding="utf-8"))
    for item in items:
        db = folder / "dev_databases" / item["db_id"] / f"{item['db_id']}.sqlite"
        yield GoldQuery("bird", f"bird-{item['question_id']}", item["SQL"], db)


def _geo(folder: Path) -> Iterator[GoldQuery]:
    """GeoQuery's SQL has placeholders (`"state_name0"`), filled from its first sentence."""
    db = folder / "geography-db.added-in-2020.sqlite"
    items = json.loads((folder / "geography.json").read_text(encoding="utf-8"))
    for i, item in enumerate(items):
        variables = item["sentences"][0].get("variables", {}) if item["sentences"] else {}
        for j, sql in enumerate(item["sql"]):
            for name, value in variables.items():
                sql = sql.replace(name, value)
            yield GoldQuery("geo", f"geo-{i}.{j}", sql, db)


def sqlite_catalog(path: Path) -> Catalog:
    """Tables and columns of a SQLite file, read-only, as the embedded engine would name them."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            )
        ]
        tables = [
            TableInfo(
                name=name,
                columns=[
                    ColumnInfo(name=row[1], type=str(row[2]))
                    for row in conn.execute("SELECT * FROM pragma_table_info(?)", [name])
                ],
            )
            for name in names
        ]
    finally:
        conn.close()
    return Catalog(tables=tables)


def gold_figures(queries: list[GoldQuery], with_catalog: bool) -> dict[str, Tally]:
    catalogs: dict[Path, Catalog] = {}
    per_dataset: dict[str, Tally] = {}
    for gold in queries:
        tally = per_dataset.setdefault(gold.dataset, Tally())
        tally.total += 1
        catalog = None
        if with_catalog and gold.database is not None and gold.database.exists():
            if gold.database not in catalogs:
                catalogs[gold.database] = sqlite_catalog(gold.database)
            catalog = catalogs[gold.database]
        problems = validate_sql(gold.query, "sqlite", catalog)
        if problems:
            tally.refused.append((gold.ident, problems[0]))
    return per_dataset


# --- cost -----------------------------------------------------------------------------------------


def star_catalog() -> Catalog:
    def table(name: str, *columns: str) -> TableInfo:
        return TableInfo(name=name, columns=[ColumnInfo(name=c, type="integer") for c in columns])

    return Catalog(
        tables=[
            table("gold.fact_sales", "store_id", "product_id", "date_id", "net_amount", "quantity"),
            table("gold.dim_store", "store_id", "region", "name"),
            table("gold.dim_product", "product_id", "category", "name"),
            table("gold.dim_date", "date_id", "year", "month"),
        ]
    )


def timing(runs: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    for label, catalog in (("no catalog", None), ("with catalog", star_catalog())):
        assert validate_sql(THREE_JOINS, "duckdb", catalog) == []
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            validate_sql(THREE_JOINS, "duckdb", catalog)
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        figures[label] = {
            "p50_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
        }
    return figures


# --- report ---------------------------------------------------------------------------------------


def _tally_json(tallies: dict[str, Tally]) -> dict[str, Any]:
    return {
        key: {
            "refused": len(t.refused),
            "total": t.total,
            "codes": dict(Counter(p.code for _, p in t.refused)),
            "refusals": [{"id": i, "code": p.code, "message": p.message} for i, p in t.refused],
            "accepted": t.accepted,
        }
        for key, t in tallies.items()
    }


def run(data: Path, runs: int) -> dict[str, Any]:
    corpus = load_corpus()
    report: dict[str, Any] = {"hostile": _tally_json(hostile_figures(corpus))}
    queries, missing = load_gold(data)
    report["gold_missing"] = missing
    if queries:
        report["gold"] = _tally_json(gold_figures(queries, with_catalog=False))
        report["gold_with_catalog"] = _tally_json(gold_figures(queries, with_catalog=True))
    report["validate_sql"] = timing(runs)
    return report


def print_report(report: dict[str, Any]) -> None:
    print("hostile queries refused (target: all)")
    for dialect, t in report["hostile"].items():
        print(f"  {dialect:<11} {t['refused']:>4} / {t['total']:<4} codes {t['codes']}")
        for ident in t["accepted"]:
            print(f"    ACCEPTED: {ident}")
    for note in report["gold_missing"]:
        print(f"gold skipped: {note}")
    titles = {
        "gold": "gold queries refused, sqlite, no catalog (target: 0)",
        "gold_with_catalog": "gold queries refused, sqlite, with each database's catalog (target: 0)",
    }
    for key, title in titles.items():
        if key not in report:
            continue
        print(title)
        for dataset, t in report[key].items():
            print(f"  {dataset:<8} {t['refused']:>4} / {t['total']}")
            for r in t["refusals"]:
                print(f"    {r['id']}: {r['code']}: {r['message']}")
    print("validate_sql on a three-join query")
    for label, f in report["validate_sql"].items():
        print(f"  {label:<13} p50 {f['p50_ms']:.3f} ms  p99 {f['p99_ms']:.3f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--runs", type=int, default=2000, help="validate_sql calls timed per case")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args(argv)
    # sqlglot logs a warning for each statement it keeps as a raw Command; the corpus has many.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    report = run(args.data, args.runs)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
