"""Gold fidelity: do the benchmarks' gold SQLite queries answer the same through the embedded engine?

For every gold query the reference is Python's sqlite3 on the dataset's `.sqlite` file; the same
query then runs through `DuckDBEngine` twice: as users run it (`dialect="sqlite"`: validation,
sqlglot's translation and the `sqlite_compat` transforms), and — the baseline — translated by
sqlglot alone and sent as DuckDB SQL, so the gain of the compat transforms stays visible. Results
are compared as multisets of rows, or in order when the outermost statement has ORDER BY (see
`compare`). Values are normalised: 1 == 1.0, floats equal within 1e-6 relative, bytes as hex (the
engine's JSON-safe form).

Data is read from ../shared/data (relative to the repo root) and never copied into the repo:

- spider: `nl2sql_spider_dev/dev.json` (1,034), databases `database/<db>/<db>.sqlite`;
- bird: `nl2sql_bird_minidev/mini_dev_sqlite_subset_3dbs.json` (140), `dev_databases/<db>/<db>.sqlite`;
- geo: `geography.json`, each sentence's variables filled into its entry's first SQL (877);
- restaurants: the same for `restaurants.json` (378), with the one-token fix SOURCES.md documents
  (the gold SQL says `RESTAURANT.ID`, the database column is `RESTAURANT_ID`).

A gold query that fails on sqlite3 itself is reported as `gold_error` and left out of the total.

Run: `python -m benchmarks.gold_fidelity [--dataset spider|bird|geo|restaurants|all] [--limit N]`;
the JSON report goes to benchmarks/results/gold_fidelity.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from itertools import groupby
from pathlib import Path
from typing import Any

from sqlglot import exp

from loom.engines.contracts import QueryError
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.validator import parse_sql

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
REPORT = ROOT / "benchmarks" / "results" / "gold_fidelity.json"
MAX_ROWS = 100_000
TIMEOUT_S = 60.0
REL_TOL = 1e-6
EXECUTION_CODES = ("execution_error", "timeout")  # any other QueryError code is a refusal
MODES = ("transpile_only", "engine")


# --- gold queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gold:
    id: str
    db: Path
    sql: str


def spider(data: Path) -> list[Gold]:
    root = data / "nl2sql_spider_dev"
    entries = json.loads((root / "dev.json").read_text())
    return [
        Gold(f"spider-{i}", root / "database" / e["db_id"] / f"{e['db_id']}.sqlite", e["query"])
        for i, e in enumerate(entries)
    ]


def bird(data: Path) -> list[Gold]:
    root = data / "nl2sql_bird_minidev"
    entries = json.loads((root / "mini_dev_sqlite_subset_3dbs.json").read_text())
    return [
        Gold(
            f"bird-{e['question_id']}", root / "dev_databases" / e["db_id"] / f"{e['db_id']}.sqlite", e["SQL"]
        )
        for e in entries
    ]


def _instantiate(sql: str, variables: dict[str, str]) -> str:
    # Longest names first, so `city_name10` is not half-replaced by `city_name1`.
    for name in sorted(variables, key=len, reverse=True):
        sql = sql.replace(name, variables[name])
    return sql


def _text2sql(path: Path, prefix: str, fix: Callable[[str], str] = str) -> list[Gold]:
    """text2sql-data format: an entry's SQL with placeholders, filled from each sentence's variables."""
    db = path.parent / f"{path.stem}-db.added-in-2020.sqlite"
    golds = []
    for i, entry in enumerate(json.loads(path.read_text())):
        defaults = {v["name"]: v["example"] for v in entry["variables"]}
        for j, sentence in enumerate(entry["sentences"]):
            sql = _instantiate(entry["sql"][0], defaults | sentence["variables"])
            golds.append(Gold(f"{prefix}-{i}.{j}", db, fix(sql)))
    return golds


def geo(data: Path) -> list[Gold]:
    return _text2sql(data / "nl2sql_text2sql_data_geo_restaurants" / "geography.json", "geo")


def restaurants(data: Path) -> list[Gold]:
    def fix(sql: str) -> str:
        return sql.replace("RESTAURANTalias0.ID ", "RESTAURANTalias0.RESTAURANT_ID ").replace(
            "RESTAURANTalias1.ID ", "RESTAURANTalias1.RESTAURANT_ID "
        )

    return _text2sql(data / "nl2sql_text2sql_data_geo_restaurants" / "restaurants.json", "restaurants", fix)


DATASETS: dict[str, Callable[[Path], list[Gold]]] = {
    "spider": spider,
    "bird": bird,
    "geo": geo,
    "restaurants": restaurants,
}


# --- running --------------------------------------------------------------------------------------

Row = tuple[Any, ...]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")  # as the engine's loader does: real files hold stray bytes


def open_reference(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.text_factory = _decode
    return conn


def run_reference(conn: sqlite3.Connection, sql: str) -> list[Row]:
    deadline = time.monotonic() + TIMEOUT_S
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    return [tuple(r) for r in conn.execute(sql).fetchmany(MAX_ROWS + 1)]


SCHEMA_SQL = "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE NOT internal"


@dataclass
class Target:
    """The engine under test, and its schema as DuckDB sees it (what `sqlite_to_duckdb` takes)."""

    engine: DuckDBEngine
    schema: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def open(cls, db: Path) -> Target:
        engine = DuckDBEngine(DuckDBSource(name=db.stem, location=str(db), dialect="sqlite"))
        result = engine.execute(SCHEMA_SQL, max_rows=MAX_ROWS, timeout_s=TIMEOUT_S, dialect="duckdb")
        schema: dict[str, dict[str, str]] = {}
        for table, column, data_type in result.rows:
            schema.setdefault(str(table), {})[str(column)] = str(data_type)
        return cls(engine, schema)


def run_engine(target: Target, sql: str, mode: str) -> list[Row]:
    if mode == "transpile_only":
        query, dialect = parse_sql(sql, "sqlite").sql(dialect="duckdb"), "duckdb"
    else:
        query, dialect = sql, "sqlite"
    result = target.engine.execute(query, max_rows=MAX_ROWS, timeout_s=TIMEOUT_S, dialect=dialect)
    return [tuple(r) for r in result.rows]


# --- comparing ------------------------------------------------------------------------------------


def norm(value: Any) -> tuple[int, Any]:
    """A comparable form: NULL < numbers < text; numbers as float, bytes as the engine's hex."""
    if value is None:
        return (0, 0.0)
    if isinstance(value, bool | int | float | Decimal):
        return (1, float(value))
    if isinstance(value, bytes):
        return (2, value.hex())
    return (2, str(value))


def _sort_key(row: tuple[tuple[int, Any], ...]) -> tuple[Any, ...]:
    # Rounded, so values equal within the tolerance sort to the same place in both lists.
    return tuple((t, float(f"{v:.6g}")) if t == 1 else (t, v) for t, v in row)


def _same_value(a: tuple[int, Any], b: tuple[int, Any]) -> bool:
    if a[0] == b[0] == 1:
        return math.isclose(a[1], b[1], rel_tol=REL_TOL, abs_tol=1e-9) or (
            math.isnan(a[1]) and math.isnan(b[1])
        )
    return a == b


def _same_rows(
    expected: list[tuple[tuple[int, Any], ...]], actual: list[tuple[tuple[int, Any], ...]]
) -> bool:
    return len(expected) == len(actual) and all(
        len(e) == len(a) and all(_same_value(x, y) for x, y in zip(e, a, strict=True))
        for e, a in zip(expected, actual, strict=True)
    )


def _normed(rows: list[Row]) -> list[tuple[tuple[int, Any], ...]]:
    return [tuple(norm(v) for v in row) for row in rows]


def _multiset_equal(expected: list[Row], actual: list[Row]) -> bool:
    return _same_rows(sorted(_normed(expected), key=_sort_key), sorted(_normed(actual), key=_sort_key))


def _project(rows: list[Row], columns: list[int]) -> list[Row]:
    return [tuple(row[i] for i in columns) for row in rows]


@dataclass(frozen=True)
class Ordering:
    """The outermost ORDER BY: output positions of its keys (None if a key is not an output column)."""

    keys: list[int] | None
    limited: bool


def _key_position(key: exp.Expr, outputs: list[exp.Expr]) -> int | None:
    if isinstance(key, exp.Literal) and key.is_int:
        return int(key.this) - 1
    for i, output in enumerate(outputs):
        same_alias = isinstance(key, exp.Column) and not key.table and key.name == output.alias
        if same_alias or key == output.unalias():
            return i
    return None


def ordering(sql: str) -> Ordering | None:
    try:
        tree = parse_sql(sql, "sqlite")
    except QueryError:
        return None
    order = tree.args.get("order")
    if not isinstance(order, exp.Order):
        return None
    outputs = tree.selects if isinstance(tree, exp.Select | exp.SetOperation) else []
    positions = [_key_position(o.this, outputs) for o in order.expressions]
    keys = None if any(p is None for p in positions) else [p for p in positions if p is not None]
    return Ordering(keys=keys, limited=tree.args.get("limit") is not None)


def compare(sql: str, expected: list[Row], actual: list[Row]) -> tuple[bool, str]:
    """(same?, note or diff summary). Under ORDER BY, tied rows may come in any order: the order is
    checked on the key columns, and under LIMIT the rows kept among ties may differ too."""
    if len(expected) != len(actual):
        return False, f"{len(expected)} rows expected, {len(actual)} returned; {_diff(expected, actual)}"
    order = ordering(sql)
    same_set = _multiset_equal(expected, actual)
    if order is None:
        return same_set, "" if same_set else _diff(expected, actual)
    if order.keys is None:
        if _same_rows(_normed(expected), _normed(actual)):
            return True, ""
        return same_set, UNVERIFIED_ORDER if same_set else _diff(expected, actual)
    same_keys = _same_rows(_normed(_project(expected, order.keys)), _normed(_project(actual, order.keys)))
    if not same_keys:
        return False, "ORDER BY key columns in another order; " + _diff(expected, actual, ordered=True)
    if same_set:
        return True, ""
    if order.limited:
        return True, "tie under ORDER BY … LIMIT: the same keys, other tied rows kept"
    return False, _diff(expected, actual)


def _diff(expected: list[Row], actual: list[Row], ordered: bool = False) -> str:
    if ordered:
        pairs = [(e, a) for e, a in zip(expected, actual, strict=False) if _normed([e]) != _normed([a])]
        return f"first differing row: expected {pairs[0][0]!r}, got {pairs[0][1]!r}" if pairs else ""
    want = Counter(_sort_key(r) for r in _normed(expected))
    got = Counter(_sort_key(r) for r in _normed(actual))
    missing = [_show(r) for r in (want - got)][:2]
    extra = [_show(r) for r in (got - want)][:2]
    return f"missing {missing}, unexpected {extra}"


def _show(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v for _, v in row)


# --- outcomes -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    id: str
    status: str  # match | mismatch | refused | error
    reason: str
    query: str
    note: str = ""


def judge(
    gold: Gold, expected: list[Row], target: Target, mode: str, reference: sqlite3.Connection
) -> Outcome:
    try:
        actual = run_engine(target, gold.sql, mode)
    except QueryError as e:
        status = "error" if e.code in EXECUTION_CODES else "refused"
        return Outcome(gold.id, status, f"{e.code}: {e.message}", gold.sql)
    same, note = compare(gold.sql, expected, actual)
    if same and note == UNVERIFIED_ORDER and same_key_order(reference, target, mode, gold.sql):
        note = KEYS_IN_ORDER
    if same:
        return Outcome(gold.id, "match", "", gold.sql, note)
    if len(expected) == len(actual) and tie_under_limit(reference, gold.sql, expected, actual):
        return Outcome(gold.id, "match", "", gold.sql, TIE_NOTE)
    return Outcome(gold.id, "mismatch", note, gold.sql)


UNVERIFIED_ORDER = "same rows in another order; an ORDER BY key is not an output column"
KEYS_IN_ORDER = "same rows; tied rows in another order (ORDER BY keys checked in order on both sides)"
TIE_NOTE = "tie under ORDER BY … LIMIT, checked on the ORDER BY keys: other tied rows kept"


def _tie_probe(sql: str, keep_limit: bool = False) -> tuple[str, int] | None:
    """The query without its LIMIT and with its ORDER BY keys as extra output columns."""
    tree = parse_sql(sql, "sqlite")
    order, limit = tree.args.get("order"), tree.args.get("limit")
    if not isinstance(tree, exp.Select) or order is None or tree.args.get("offset"):
        return None
    if limit is None and not keep_limit:
        return None
    if tree.args.get("distinct"):
        return None  # extra output columns would change what DISTINCT removes
    width = len(tree.selects)
    probe = tree.copy()
    if not keep_limit:
        probe.set("limit", None)
    for i, ordered in enumerate(order.expressions):
        probe.select(exp.alias_(ordered.this.copy(), f"_tie_key{i}"), copy=False)
    return probe.sql(dialect="sqlite"), width


def same_key_order(reference: sqlite3.Connection, target: Target, mode: str, sql: str) -> bool:
    """Rows equal as a multiset, in another order: are the ORDER BY keys themselves in the same
    order on both sides (then only tied rows moved)? Both run the query with its keys as outputs."""
    probe = _tie_probe(sql, keep_limit=True)
    if probe is None:
        return False
    probe_sql, width = probe
    try:
        actual = run_engine(target, probe_sql, mode)
    except QueryError:
        return False
    expected = run_reference(reference, probe_sql)
    return _same_rows(_normed([r[width:] for r in expected]), _normed([r[width:] for r in actual]))


def tie_under_limit(reference: sqlite3.Connection, sql: str, expected: list[Row], actual: list[Row]) -> bool:
    """When an ORDER BY key is not an output column, rows tied on the key at the LIMIT may be kept
    in any choice: every row ranked strictly before the last kept key must be there, and the rest
    must tie with it. Checked against sqlite3 running the query without its LIMIT."""
    probe = _tie_probe(sql)
    if probe is None:
        return False
    probe_sql, width = probe
    ranked = _normed(run_reference(reference, probe_sql))
    if len(ranked) < len(expected) or not expected:
        return False
    boundary = ranked[len(expected) - 1][width:]
    before = Counter(_sort_key(r[:width]) for r in ranked[: len(expected)] if r[width:] != boundary)
    allowed = Counter(
        _sort_key(r[:width]) for i, r in enumerate(ranked) if i < len(expected) or r[width:] == boundary
    )
    got = Counter(_sort_key(r) for r in _normed(actual))
    return before <= got and got <= allowed


@dataclass
class Tally:
    outcomes: dict[str, list[Outcome]] = field(default_factory=lambda: {m: [] for m in MODES})
    gold_errors: list[Outcome] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MODES, 0.0))


def _run_database(golds: list[Gold], tally: Tally) -> None:
    reference = open_reference(golds[0].db)
    target = Target.open(golds[0].db)
    try:
        for gold in golds:
            _run_one(gold, reference, target, tally)
    finally:
        target.engine.close()
        reference.close()


def _run_one(gold: Gold, reference: sqlite3.Connection, target: Target, tally: Tally) -> None:
    try:
        expected = run_reference(reference, gold.sql)
    except sqlite3.Error as e:
        tally.gold_errors.append(Outcome(gold.id, "gold_error", f"sqlite3: {e}", gold.sql))
        return
    for mode in MODES:
        started = time.perf_counter()
        tally.outcomes[mode].append(judge(gold, expected, target, mode, reference))
        tally.seconds[mode] += time.perf_counter() - started


def run_dataset(golds: list[Gold]) -> Tally:
    """One engine (one copy of the SQLite file into DuckDB) per database."""
    tally = Tally()
    by_db = sorted(golds, key=lambda g: str(g.db))
    for _, group in groupby(by_db, key=lambda g: g.db):
        _run_database(list(group), tally)
    return tally


# --- reporting ------------------------------------------------------------------------------------


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    counts = Counter(o.status for o in outcomes)
    total = len(outcomes)
    figures: dict[str, Any] = {"total": total}
    figures |= {s: counts.get(s, 0) for s in ("match", "mismatch", "refused", "error")}
    figures["match_pct"] = round(100 * counts.get("match", 0) / total, 2) if total else 0.0
    return figures


def _print_dataset(name: str, tally: Tally, seconds: float) -> None:
    print(f"\n== {name}: {seconds:.1f} s; gold queries failing on sqlite3 itself: {len(tally.gold_errors)}")
    for miss in tally.gold_errors:
        print(f"  [gold_error] {miss.id}: {miss.reason}\n      {miss.query}")
    for mode in MODES:
        s = summary(tally.outcomes[mode])
        print(
            f"  {mode:<7} total {s['total']}, match {s['match']}, mismatch {s['mismatch']}, "
            f"refused {s['refused']}, error {s['error']} → {s['match_pct']:.2f} % "
            f"(engine time {tally.seconds[mode]:.1f} s)"
        )
    for mode in MODES:
        for miss in (o for o in tally.outcomes[mode] if o.status != "match"):
            print(f"  [{mode} {miss.status}] {miss.id}: {miss.reason[:300]}\n      {miss.query}")


def _report_entry(tally: Tally, seconds: float) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 2),
        "gold_errors": [asdict(o) for o in tally.gold_errors],
        **{
            mode: {
                **summary(tally.outcomes[mode]),
                "engine_seconds": round(tally.seconds[mode], 2),
                "misses": [asdict(o) for o in tally.outcomes[mode] if o.status != "match"],
                "notes": [asdict(o) for o in tally.outcomes[mode] if o.status == "match" and o.note],
            }
            for mode in MODES
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--limit", type=int, default=None, help="the first N gold queries per dataset")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    report: dict[str, Any] = {}
    started = time.perf_counter()
    for name in names:
        begun = time.perf_counter()
        tally = run_dataset(DATASETS[name](args.data)[: args.limit])
        seconds = time.perf_counter() - begun
        _print_dataset(name, tally, seconds)
        report[name] = _report_entry(tally, seconds)
    report["seconds"] = round(time.perf_counter() - started, 2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nTotal {report['seconds']:.1f} s; report written to {args.output}")


if __name__ == "__main__":
    main()
