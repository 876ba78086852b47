"""Microsoft's NL2KQL benchmark as a suite: its Defender and Sentinel question → KQL pairs, scored by
executing the gold query and the agent's on data generated for them.

The benchmark ships table schemas and no rows, and on empty tables every query that runs "matches"
the gold. So each database becomes a DuckDB file whose tables hold seeded synthetic rows (the idea
of Spider's test-suite databases, here one generated database):

- for every table, `BASE_ROWS` rows of random values of each column's type, from small domains so
  that groups and joins meet (`DeviceName7`, integers 0-50, times within `RECENT_DAYS` of `now`);
- for every gold query, `ROWS_PER_GOLD` more rows in each table it reads that meet the conditions
  it writes on columns — equal to, in, like, contains, between, above or below a literal — read
  from its translation to SQL (sqlglot), so that most gold queries find rows and a query that
  filters on another value, column or table answers differently.

Gold queries that do not translate or run on the embedded engine (duckdb-kql lacks a few operators;
`benchmarks/kql_nl2kql.py` lists them) are left out and counted in the suite's description; those
that still find no rows are tagged `gold_rows:none` (slice them out: any query that runs matches
them). Relative times (`ago(7d)`) are against the clock when the suite runs and the rows' times
against the clock when it was loaded: load it again after `RECENT_DAYS` days.

Cases: `nl2kql-<database>-<line>` (the line of its evaluation file), tags `nl2kql`,
`db:<database>`, the question (the benchmark's `context`) asked of a source of that name offering KQL.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from loom.engines.contracts import Catalog, QueryError
from loom.engines.kql.engine import KqlEngine
from loom.engines.kql.translate import kql_to_sql
from loom.engines.sources import DuckDBSource
from loom.engines.sql.validator import parse_sql
from loom.evals.loaders import BenchmarkDataError, sample_of
from loom.evals.suite import Case, Expect, Suite

DATABASES = ("Defender", "Sentinel")
BASE_ROWS = 200
ROWS_PER_GOLD = 4
RECENT_DAYS = 30
TOOLS = ("nl2kql",)
# Kusto's .NET type names (as the schema files write them) → DuckDB.
TYPES = {
    "String": "VARCHAR",
    "DateTime": "TIMESTAMP",
    "Int64": "BIGINT",
    "Int32": "INTEGER",
    "Double": "DOUBLE",
    "Boolean": "BOOLEAN",
    "SByte": "BOOLEAN",  # Kusto's bool, as its .NET type names it
    "Object": "JSON",  # dynamic
    "Guid": "UUID",
    "TimeSpan": "INTERVAL",
}

Tables = dict[str, list[tuple[str, str]]]  # table → [(column, DuckDB type)]


@dataclass
class Gold:
    """One question → KQL pair, and what building its database found out about it."""

    line: int
    question: str
    query: str
    tables: set[str] = field(default_factory=set)  # lower-cased names it reads
    wants: dict[str, str] = field(default_factory=dict)  # column (lower) → a value meeting its filter
    translated: bool = False
    rows: int | None = None  # what it returned on the generated data; None: it did not run


def load_nl2kql(
    data_dir: Path,
    data_out: Path,
    *,
    sample: int | None = None,
    seed: int = 0,
    now: dt.datetime | None = None,
) -> Suite:
    """The suite over `data_dir` (the benchmark's folder, holding `data/schema` and
    `data/evaluation_datasets`); the generated databases are written into `data_out`."""
    root = Path(data_dir).resolve()
    clock = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None, microsecond=0)
    # Every file read before anything is written: a wrong folder writes nothing.
    read = {db: (read_schema(root, db), _golds(root, db)) for db in DATABASES}
    data_out.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    sources: list[DuckDBSource] = []
    total = 0
    for database, (tables, golds) in read.items():
        source = _database(database, tables, golds, data_out, seed, clock)
        sources.append(source)
        total += len(golds)
        cases += [_case(database, g) for g in golds if g.rows is not None]
    kept = len(cases)
    picked = [
        cases[i] for i, _ in sample_of([(i, {}) for i in range(len(cases))], sample, seed, "NL2KQL", root)
    ]
    empty = sum("gold_rows:none" in c.tags for c in picked)
    drawn = f"a sample of {sample} (seed {seed})" if sample is not None else "all"
    return Suite(
        name="nl2kql",
        description=(
            f"Microsoft NL2KQL (Defender, Sentinel): {drawn} of the {kept} of {total} gold queries that "
            f"run on the embedded engine, over rows generated for them (seed {seed}, {clock:%Y-%m-%d}); "
            f"{empty} of these find no rows (tag gold_rows:none)"
        ),
        sources=tuple(sources),
        cases=tuple(picked),
    )


def _database(
    database: str, tables: Tables, golds: list[Gold], data_out: Path, seed: int, clock: dt.datetime
) -> DuckDBSource:
    """The database's source, its file built (each gold learns what it returned)."""
    path = data_out / f"{database.lower()}.duckdb"
    build_database(path, tables, golds, seed, clock)
    return DuckDBSource(name=database.lower(), location=str(path.resolve()), languages=("kql",))


def _case(database: str, gold: Gold) -> Case:
    tags = ("nl2kql", f"db:{database.lower()}") + (("gold_rows:none",) if not gold.rows else ())
    return Case(
        id=f"nl2kql-{database.lower()}-{gold.line}",
        question=gold.question,
        source=database.lower(),
        tags=tags,
        expect=Expect(tools=TOOLS, gold=gold.query, gold_language="kql"),
    )


# --- reading the benchmark ------------------------------------------------------------------------


def read_schema(root: Path, database: str) -> Tables:
    """The database's tables and their columns' DuckDB types, from `data/schema/`."""
    path = root / "data" / "schema" / f"{database}_Schema.json"
    if not path.is_file():
        raise BenchmarkDataError(f"NL2KQL: {path} is missing (expected data/schema/<Database>_Schema.json)")
    tables: Tables = {}
    for db in json.loads(path.read_text()):
        for table in db["Tables"]:
            columns = [(c["Name"], TYPES[c["Type"].removeprefix("System.")]) for c in table["Columns"]]
            tables[table["Table"]] = columns
    return tables


def _golds(root: Path, database: str) -> list[Gold]:
    path = root / "data" / "evaluation_datasets" / f"{database}_Evaluation.jsonl"
    if not path.is_file():
        raise BenchmarkDataError(f"NL2KQL: {path} is missing (expected data/evaluation_datasets/)")
    golds = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if text.strip():
            pair = json.loads(text)
            golds.append(Gold(line, pair["context"].strip(), pair["baseline"].strip()))
    return golds


# --- generating the rows --------------------------------------------------------------------------


def build_database(path: Path, tables: Tables, golds: list[Gold], seed: int, now: dt.datetime) -> None:
    """Write `path` with `tables` filled for `golds` (each gold's `tables`, `wants` and `rows` set)."""
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as db:
        for table, columns in tables.items():
            db.execute(f"CREATE TABLE {quote(table)} ({', '.join(f'{quote(c)} {t}' for c, t in columns)})")
    engine = KqlEngine(DuckDBSource(name="nl2kql", location=str(path)))
    try:
        catalog = engine.sql.catalog()
        for gold in golds:
            _read_filters(gold, catalog, now)
    finally:
        engine.close()
    rng = random.Random(seed)
    with duckdb.connect(str(path)) as db:
        for table, columns in tables.items():
            _fill(db, table, columns, [g for g in golds if table.lower() in g.tables], rng, now)
    _run_golds(path, golds, now)


def _read_filters(gold: Gold, catalog: Catalog, now: dt.datetime) -> None:
    """The tables `gold` reads and the values its filters want, from its SQL; nothing when it does
    not translate (it is left out)."""
    try:
        sql = kql_to_sql(gold.query, catalog, now)
    except QueryError:
        return
    gold.translated = True
    tree = _parse(sql)
    if tree is None:
        return
    gold.tables = {t.name.lower() for t in tree.find_all(exp.Table)}
    for column, value in _wanted(tree):
        gold.wants[column] = value


def _parse(sql: str) -> exp.Expr | None:
    try:
        return parse_sql(sql, "duckdb")
    except QueryError:  # the engine wrote it; a form sqlglot misreads only loses the hints
        return None


def _wanted(tree: exp.Expr) -> Iterator[tuple[str, str]]:
    """(column, value) meeting the gold's filters on one column with literals: each conjunct of a
    WHERE that names one column. The translation wraps a filter in type checks and escapes, so a
    conjunct is read by its kind rather than its shape: an equality or `in` (the first value), a
    range (past its first bound), else a text search (`has`, `contains`, `startswith`…: every term
    it names, in one value, so that `has_all` finds them all). Negations are left alone."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for where in tree.find_all(exp.Where):
        for conjunct in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
            columns = {c.name.lower() for c in conjunct.find_all(exp.Column)}
            literals = (_literal(x) for x in conjunct.find_all(exp.Literal))
            values = list(dict.fromkeys(v for v in literals if v and _is_term(v)))  # each branch repeats them
            if len(columns) == 1 and values and not conjunct.find(exp.NEQ, exp.Not):
                kind = _kind(conjunct)
                found[columns.pop()][kind].append(" ".join(values) if kind == "text" else values[0])
    for column, kinds in found.items():
        if kinds["eq"]:
            yield column, kinds["eq"][0]
        elif kinds["range"]:
            yield column, _nudged(kinds["range"][0], +1)
        else:
            yield column, " ".join(kinds["text"])


def _kind(conjunct: exp.Expr) -> str:
    if conjunct.find(exp.Between, exp.GT, exp.GTE, exp.LT, exp.LTE):
        return "range"
    if conjunct.find(exp.Like, exp.ILike, exp.RegexpLike):
        return "text"
    return "eq"


def _is_term(value: str | None) -> bool:
    """A value the gold wrote, not one the translation adds (type names, JSON paths, escapes, patterns)."""
    if not value or value in ("JSON", "$", "UTC") or value.startswith(("(?", "%", "\\")):
        return False
    return not set(value) <= set("%_\\")


def _literal(node: exp.Expr | None) -> str | None:
    """The text of a literal, of a cast literal or of a negative number; None for anything else."""
    if isinstance(node, exp.Cast):
        node = node.this
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        return f"-{node.this.this}"
    return str(node.this) if isinstance(node, exp.Literal) else None


def _nudged(value: str, direction: int) -> str:
    """Past a bound: a number by one, a time by a second; text as it is."""
    try:
        return str(int(value) + direction)
    except ValueError:
        pass
    try:
        return str(float(value) + direction)
    except ValueError:
        pass
    try:
        return (_timestamp(value) + dt.timedelta(seconds=direction)).isoformat()
    except ValueError:
        return value


def _fill(
    db: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[tuple[str, str]],
    golds: list[Gold],
    rng: random.Random,
    now: dt.datetime,
) -> None:
    rows = [[_random(c, t, rng, now) for c, t in columns] for _ in range(BASE_ROWS)]
    for gold in golds:  # their other times within the hour: inside any `ago()` window they write
        for _ in range(ROWS_PER_GOLD):
            rows.append([_wanted_or_random(gold, c, t, rng, now) for c, t in columns])
    staged = ", ".join(f"c{i} VARCHAR" for i in range(len(columns)))
    db.execute(f"CREATE TEMP TABLE staged ({staged})")
    db.executemany(f"INSERT INTO staged VALUES ({', '.join('?' for _ in columns)})", rows)
    # A wanted value that is not of the column's type (text compared with a number) stays NULL.
    casts = ", ".join(f"TRY_CAST(c{i} AS {t})" for i, (_, t) in enumerate(columns))
    db.execute(f"INSERT INTO {quote(table)} SELECT {casts} FROM staged")
    db.execute("DROP TABLE staged")


def _wanted_or_random(gold: Gold, column: str, kind: str, rng: random.Random, now: dt.datetime) -> str:
    """What the gold wants of the column when it is of the column's kind, else a random value, a
    time within the hour (inside any `ago()` window the gold writes)."""
    wanted = gold.wants.get(column.lower())
    if wanted is not None and _fits(wanted, kind):
        return wanted
    return _random(column, kind, rng, now, 3600)


def _fits(value: str, kind: str) -> bool:
    """Whether `value` reads as `kind` (an `ago(7d)` reads as the number 7, not a time)."""
    readers: dict[str, Any] = {"TIMESTAMP": _timestamp, "BIGINT": int, "INTEGER": int, "DOUBLE": float}
    reader = readers.get(kind)
    if reader is None:
        return True
    try:
        reader(value)
    except ValueError:
        return False
    return True


def _timestamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.strip().rstrip("Z"))


def _random(
    column: str, kind: str, rng: random.Random, now: dt.datetime, within_s: float = RECENT_DAYS * 86400
) -> str:
    if kind == "TIMESTAMP":
        return (now - dt.timedelta(seconds=rng.uniform(0, within_s))).isoformat()
    if kind in ("BIGINT", "INTEGER"):
        return str(rng.randint(0, 50))
    if kind == "DOUBLE":
        return f"{rng.uniform(0, 100):.2f}"
    if kind == "BOOLEAN":
        return rng.choice(("true", "false"))
    if kind == "JSON":
        return rng.choice(("{}", "[]", '{"value": 1}', '["a", "b"]'))
    if kind == "UUID":
        return str(uuid.UUID(int=rng.getrandbits(128)))
    if kind == "INTERVAL":
        return f"{rng.randint(0, 3600)} seconds"
    return f"{column}{rng.randint(1, 12)}"


def _run_golds(path: Path, golds: list[Gold], now: dt.datetime) -> None:
    """Each gold's row count on the generated data (None when it does not run)."""
    engine = KqlEngine(DuckDBSource(name="nl2kql", location=str(path)))
    try:
        for gold in golds:
            if gold.translated:
                gold.rows = _row_count(engine, gold.query, now)
    finally:
        engine.close()


def _row_count(engine: KqlEngine, query: str, now: dt.datetime) -> int | None:
    try:
        return engine.execute(query, max_rows=1000, timeout_s=30, now=now).row_count
    except QueryError:
        return None


def quote(name: str) -> str:
    """`name` as a DuckDB quoted identifier."""
    return '"' + name.replace('"', '""') + '"'
