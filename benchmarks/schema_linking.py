"""Schema linking recall on Spider dev and BIRD mini-dev (issue 3).

For each question, the gold query's tables and columns are extracted with sqlglot: the query is
qualified against the database's schema (`sqlglot.optimizer.qualify`), so unqualified columns
resolve to their tables; `*` counts as no column; join keys count like any other column. They are
compared with what `link()` keeps: table recall, column recall, and the fraction of the schema's
columns kept (mean and p50), per dataset. Rows: "keep everything" (the baseline: recall 1.0, 100 %
kept), "lexical" (BM25, names, synonyms, FK closure, key columns) and "full" (lexical plus cell
values: the catalog's samples and the distinct values of text columns, through the engine).

BIRD questions come with `evidence` (the hint a BIRD user writes: "full name refers to first_name,
last_name"); BIRD is meant to be used with it, so it is passed to `link()`. Spider has none.

Target (issue 3): table recall ≥ 0.99 and column recall ≥ 0.97 while keeping ≤ 40 % of the columns
on BIRD. Data is read at run time from ../shared/data (or --data); a dataset that is absent is
skipped with the reason printed. Results go to benchmarks/results/schema_linking.json.

Run: `python -m benchmarks.schema_linking [--data DIR] [--limit N] [--misses N]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from loom.engines.contracts import Catalog, ForeignKey
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.keys import foreign_keys
from loom.engines.sql.linking import LinkedSchema, ValueIndex, link
from loom.engines.sql.linking_values import engine_fetcher

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "schema_linking.json"
VARIANTS = ("keep everything", "lexical", "full")

Element = tuple[str, str]  # (table, column), lowercase


@dataclass
class Question:
    db: str
    question: str
    sql: str
    evidence: str = ""


@dataclass
class Database:
    """A source opened once: its catalog, keys, and value index shared by all its questions."""

    catalog: Catalog
    keys: list[ForeignKey]
    values: ValueIndex
    schema: dict[str, dict[str, str]]

    @classmethod
    def open(cls, path: Path) -> Database:
        engine = DuckDBEngine(DuckDBSource(name=path.stem, location=str(path)))
        catalog = engine.catalog()
        values = ValueIndex.build(catalog, engine_fetcher(engine))
        schema = {t.name.lower(): {c.name.lower(): c.type for c in t.columns} for t in catalog.tables}
        return cls(catalog, foreign_keys(path, catalog), values, schema)


@dataclass
class Tally:
    table_recall: list[float] = field(default_factory=list)
    column_recall: list[float] = field(default_factory=list)
    kept: list[float] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "table_recall": _mean(self.table_recall),
            "column_recall": _mean(self.column_recall),
            "kept_mean": _mean(self.kept),
            "kept_p50": statistics.median(self.kept) if self.kept else 0.0,
        }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# --- gold ---------------------------------------------------------------------------------------


def gold_elements(sql: str, schema: dict[str, dict[str, str]]) -> tuple[set[str], set[Element]]:
    """The tables and (table, column) pairs a query reads; lowercase."""
    tree = sqlglot.parse_one(sql, read="sqlite")
    try:
        tree = qualify(
            tree, schema=dict[str, object](schema), dialect="sqlite", validate_qualify_columns=False
        )
    except sqlglot.errors.SqlglotError:
        pass  # keep what resolves: columns written with their table still count
    tables: set[str] = set()
    columns: set[Element] = set()
    for scope in traverse_scope(tree):
        tables |= {s.name.lower() for s in scope.sources.values() if isinstance(s, exp.Table)}
        columns |= set(_scope_columns(scope, schema))
    return tables & set(schema), {c for c in columns if c[1] in schema.get(c[0], {})}


def _scope_columns(scope: Scope, schema: dict[str, dict[str, str]]) -> Iterator[Element]:
    tables = {alias: s.name.lower() for alias, s in scope.sources.items() if isinstance(s, exp.Table)}
    for column in scope.columns:
        name = column.name.lower()
        if not name or name == "*":
            continue
        if column.table in tables:
            yield tables[column.table], name
        else:  # left unqualified: the one table of the scope that has it, if only one does
            owners = [t for t in tables.values() if name in schema.get(t, {})]
            if len(owners) == 1:
                yield owners[0], name


# --- scoring ------------------------------------------------------------------------------------


def _linked(result: LinkedSchema) -> tuple[set[str], set[Element]]:
    tables = {t.name.lower() for t in result.tables}
    return tables, {(t.name.lower(), c.name.lower()) for t in result.tables for c in t.columns}


def _everything(catalog: Catalog) -> tuple[set[str], set[Element]]:
    return {t.name.lower() for t in catalog.tables}, {
        (t.name.lower(), c.name.lower()) for t in catalog.tables for c in t.columns
    }


def _record(tally: Tally, q: Question, gold: tuple[set[str], set[Element]], got: Any, total: int) -> None:
    gold_tables, gold_columns = gold
    tables, columns = got
    if gold_tables:
        tally.table_recall.append(len(gold_tables & tables) / len(gold_tables))
    if gold_columns:
        tally.column_recall.append(len(gold_columns & columns) / len(gold_columns))
    tally.kept.append(len(columns) / total if total else 1.0)
    missed = sorted(f"{t}.{c}" for t, c in gold_columns - columns) + sorted(gold_tables - tables)
    if missed:
        tally.misses.append({"db": q.db, "question": q.question, "evidence": q.evidence, "missed": missed})


def evaluate(questions: list[Question], databases: Callable[[str], Database]) -> dict[str, Tally]:
    tallies = {name: Tally() for name in VARIANTS}
    for q in questions:
        db = databases(q.db)
        try:
            gold = gold_elements(q.sql, db.schema)
        except sqlglot.errors.SqlglotError:
            continue
        total = sum(len(t.columns) for t in db.catalog.tables)
        _record(tallies["keep everything"], q, gold, _everything(db.catalog), total)
        lexical = link(q.question, db.catalog, db.keys, evidence=q.evidence)
        _record(tallies["lexical"], q, gold, _linked(lexical), total)
        full = link(q.question, db.catalog, db.keys, evidence=q.evidence, values=db.values)
        _record(tallies["full"], q, gold, _linked(full), total)
    return tallies


# --- datasets -----------------------------------------------------------------------------------


def spider(data: Path) -> tuple[list[Question], Path] | str:
    folder = data / "nl2sql_spider_dev"
    if not (folder / "dev.json").exists():
        return f"Spider dev not found at {folder} (dev.json)"
    rows = json.loads((folder / "dev.json").read_text())
    return [Question(r["db_id"], r["question"], r["query"]) for r in rows], folder / "database"


def bird(data: Path) -> tuple[list[Question], Path] | str:
    folder = data / "nl2sql_bird_minidev"
    questions = folder / "mini_dev_sqlite_subset_3dbs.json"
    if not questions.exists():
        return f"BIRD mini-dev not found at {questions}"
    rows = json.loads(questions.read_text())
    return [Question(r["db_id"], r["question"], r["SQL"], r.get("evidence", "")) for r in rows], (
        folder / "dev_databases"
    )


def database_opener(root: Path) -> Callable[[str], Database]:
    opened: dict[str, Database] = {}

    def get(db: str) -> Database:
        if db not in opened:
            opened[db] = Database.open(root / db / f"{db}.sqlite")
        return opened[db]

    return get


# --- report -------------------------------------------------------------------------------------


def _print_table(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"{'dataset':<8} {'variant':<16} {'n':>5} {'table rec':>9} {'col rec':>8} {'kept mean':>9} {'p50':>6}"
    )
    for dataset, result in results.items():
        for variant, row in result["variants"].items():
            print(
                f"{dataset:<8} {variant:<16} {result['questions']:>5} {row['table_recall']:>9.4f} "
                f"{row['column_recall']:>8.4f} {row['kept_mean']:>9.1%} {row['kept_p50']:>6.1%}"
            )


def run_dataset(
    name: str, loaded: tuple[list[Question], Path], limit: int | None, misses: int
) -> dict[str, Any]:
    questions, root = loaded
    questions = questions[:limit] if limit else questions
    started = time.perf_counter()
    tallies = evaluate(questions, database_opener(root))
    return {
        "questions": len(questions),
        "seconds": round(time.perf_counter() - started, 1),
        "variants": {variant: tally.summary() for variant, tally in tallies.items()},
        "misses_full": tallies["full"].misses[:misses],
        "misses_full_count": len(tallies["full"].misses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N questions per dataset")
    parser.add_argument("--misses", type=int, default=50, help="misses (full variant) kept in the JSON")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    for name, loader in (("spider", spider), ("bird", bird)):
        loaded = loader(args.data)
        if isinstance(loaded, str):
            print(f"SKIPPED {name}: {loaded}")
            continue
        results[name] = run_dataset(name, loaded, args.limit, args.misses)
    _print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
