"""KQL on the embedded engine against hand-written DuckDB SQL for the same question, in one run.

Ten typical questions over a StormEvents-shaped table of 10 M generated rows (the columns and
types of `loom/lakehouse/storms.py`, written by DuckDB itself so generation takes seconds), each
asked twice through the same engine: as KQL (`KqlEngine.execute`: check, translate, run) and as
the SQL a person would write (`DuckDBEngine.execute` on the very engine the KQL runs on, so both
read the same copy of the data). Runs alternate, and the figure is the ratio of medians, KQL to
SQL; the translation alone (`kql_to_sql`) is timed separately. The answers are compared too: a
fast wrong answer is not a result.

Run: `python -m benchmarks.kql_speed [--rows 10000000] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import duckdb

from loom.engines.contracts import ResultSet
from loom.engines.kql.engine import KqlEngine
from loom.engines.kql.translate import kql_to_sql
from loom.engines.sources import DuckDBSource
from loom.engines.sql.limits import LocalLimits
from loom.lakehouse.storms import EVENT_TYPES, SOURCES, STATES, population_data

NOW = dt.datetime(2007, 12, 31, 12, tzinfo=dt.UTC)
TARGET = 1.3
MAX_ROWS = 10_000

# (name, KQL, the SQL a person would write for the same question)
QUESTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "filter_count",
        "StormEvents | where State == 'TEXAS' | count",
        "SELECT count(*) AS Count FROM StormEvents WHERE State = 'TEXAS'",
    ),
    (
        "sum_by_state",
        "StormEvents | summarize damage = sum(DamageProperty) by State",
        "SELECT State, sum(DamageProperty) AS damage FROM StormEvents GROUP BY State",
    ),
    (
        "daily_counts",
        "StormEvents | summarize n = count() by day = bin(StartTime, 1d)",
        "SELECT date_trunc('day', StartTime) AS day, count(*) AS n FROM StormEvents GROUP BY day",
    ),
    (
        "top_damage",
        "StormEvents | top 10 by DamageProperty | project EventId, State, DamageProperty",
        "SELECT EventId, State, DamageProperty FROM StormEvents ORDER BY DamageProperty DESC LIMIT 10",
    ),
    (
        "distinct_types",
        "StormEvents | summarize kinds = dcount(EventType) by State",
        "SELECT State, count(DISTINCT EventType) AS kinds FROM StormEvents GROUP BY State",
    ),
    (
        "contains_text",
        "StormEvents | where EventType contains 'wind' | summarize n = count() by State",
        "SELECT State, count(*) AS n FROM StormEvents WHERE EventType ILIKE '%wind%' GROUP BY State",
    ),
    (
        "join_per_capita",
        "StormEvents | summarize n = count() by State | join kind=inner PopulationData on State "
        "| project State, per_million = todouble(n) * 1000000 / Population",
        "SELECT e.State, e.n * 1000000.0 / p.Population AS per_million FROM "
        "(SELECT State, count(*) AS n FROM StormEvents GROUP BY State) e JOIN PopulationData p USING (State)",
    ),
    (
        "monthly_by_type",
        "StormEvents | summarize lat = avg(BeginLat), worst = max(DamageProperty) "
        "by EventType, month = startofmonth(StartTime)",
        "SELECT EventType, date_trunc('month', StartTime) AS month, avg(BeginLat) AS lat, "
        "max(DamageProperty) AS worst FROM StormEvents GROUP BY EventType, month",
    ),
    (
        "recent_by_source",
        "StormEvents | where StartTime > ago(90d) and DamageProperty > 0 "
        "| summarize damage = sum(DamageProperty) by Source | order by damage desc",
        "SELECT Source, sum(DamageProperty) AS damage FROM StormEvents WHERE StartTime > "
        "TIMESTAMP '2007-10-02 12:00:00' AND DamageProperty > 0 GROUP BY Source ORDER BY damage DESC",
    ),
    (
        "weekly_series",
        "StormEvents | where State == 'IOWA' | make-series n = count() on StartTime "
        "from datetime(2007-01-01) to datetime(2008-01-01) step 7d",
        "WITH bins AS (SELECT TIMESTAMP '2007-01-01' + INTERVAL 7 DAY * i AS b FROM range(0, 53) t(i)), "
        "counts AS (SELECT TIMESTAMP '2007-01-01' + INTERVAL 7 DAY * CAST(floor(epoch(StartTime - "
        "TIMESTAMP '2007-01-01') / 604800) AS BIGINT) AS b, count(*) AS n FROM StormEvents WHERE State = "
        "'IOWA' AND StartTime >= TIMESTAMP '2007-01-01' AND StartTime < TIMESTAMP '2008-01-01' GROUP BY 1) "
        "SELECT list(bins.b ORDER BY bins.b) AS StartTime, list(coalesce(counts.n, 0) ORDER BY bins.b) AS n "
        "FROM bins LEFT JOIN counts USING (b)",
    ),
)


def generate(folder: Path, rows: int) -> None:
    """StormEvents.parquet (`rows` events of 2007, DuckDB's seeded random) and PopulationData."""
    states, types, sources = (_sql_list(v) for v in (STATES, EVENT_TYPES, SOURCES))
    with duckdb.connect() as db:
        db.execute("SELECT setseed(0.7)")
        db.execute(
            f"""COPY (
            WITH r AS (SELECT i, TIMESTAMP '2007-01-01' + to_minutes(CAST(random() * 525600 AS BIGINT)) AS s,
                       {states}[1 + CAST(random() * {len(STATES) - 1} AS INT)] AS st,
                       {types}[1 + CAST(random() * {len(EVENT_TYPES) - 1} AS INT)] AS et,
                       CASE WHEN random() < 0.3 THEN [1000, 5000, 20000, 150000, 2000000]
                       [1 + CAST(random() * 4 AS INT)] ELSE 0 END AS dmg,
                       25 + random() * 24 AS lat, -124 + random() * 57 AS lon
                       FROM range({rows}) t(i))
            SELECT s AS StartTime, s + to_minutes(CAST(random() * 4320 AS BIGINT)) AS EndTime,
                   CAST(1000 + i // 4 AS INT) AS EpisodeId, CAST(10000 + i AS INT) AS EventId, st AS State,
                   et AS EventType, CAST(random() * 3 AS INT) AS InjuriesDirect, 0 AS InjuriesIndirect,
                   0 AS DeathsDirect, 0 AS DeathsIndirect, CAST(dmg AS INT) AS DamageProperty,
                   CAST(dmg // 10 AS INT) AS DamageCrops,
                   {sources}[1 + CAST(random() * {len(SOURCES) - 1} AS INT)] AS Source,
                   '1N ' || st AS BeginLocation, '2S ' || st AS EndLocation, lat AS BeginLat, lon AS BeginLon,
                   lat AS EndLat, lon AS EndLon, 'A ' || lower(et) || ' episode.' AS EpisodeNarrative,
                   et || ' reported.' AS EventNarrative,
                   to_json({{'TotalDamages': dmg, 'Details': {{'Location': st}}}})::VARCHAR AS StormSummary
            FROM r) TO '{folder / "StormEvents.parquet"}' (FORMAT parquet)"""
        )
    population_data().to_pandas().to_parquet(folder / "PopulationData.parquet")


def _sql_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def canonical(result: ResultSet) -> list[str]:
    """The rows as comparable text, in any order, numbers rounded, datetimes in one spelling."""
    return sorted(repr([_value(v) for v in row]) for row in result.rows)


def _value(v: object) -> object:
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, str) and v[:4].isdigit() and v[4:5] == "-":
        return v.replace(" ", "T")
    return v


def measure(engine: KqlEngine, rounds: int) -> list[dict[str, object]]:
    """Per question, medians of `rounds` alternating runs: the KQL end to end, its translation,
    the translated SQL's run alone, and the hand-written SQL."""
    catalog = engine.sql.catalog()
    results = []
    for name, kql, sql in QUESTIONS:
        translated = kql_to_sql(kql, catalog, NOW)
        times: dict[str, list[float]] = {"kql": [], "translate": [], "translated": [], "sql": []}
        runs: dict[str, Callable[[], object]] = {
            "kql": partial(engine.execute, kql, max_rows=MAX_ROWS, timeout_s=300, now=NOW),
            "translate": partial(kql_to_sql, kql, catalog, NOW),
            "translated": partial(_sql, engine, translated),
            "sql": partial(_sql, engine, sql),
        }
        for _ in range(rounds):
            for key, run in runs.items():
                times[key].append(timed(run))
        medians = {k: statistics.median(v) for k, v in times.items()}
        same = canonical(engine.execute(kql, max_rows=MAX_ROWS, timeout_s=300, now=NOW)) == canonical(
            _sql(engine, sql)
        )
        results.append(
            {"name": name, **{f"{k}_ms": v * 1000 for k, v in medians.items()}, "same_answer": same}
            | {"ratio": medians["translated"] / medians["sql"], "end_to_end": medians["kql"] / medians["sql"]}
        )
    return results


def _sql(engine: KqlEngine, query: str) -> ResultSet:
    return engine.sql.execute(query, max_rows=MAX_ROWS, timeout_s=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        generate(folder, args.rows)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
        source = DuckDBSource(name="storms", location=str(folder))
        engine = KqlEngine(source, LocalLimits(memory_limit="8GB", isolated=False))
        results = measure(engine, args.rounds)
    report(results)


def report(results: list[dict[str, object]]) -> None:
    print(
        f"{'question':<18}{'KQL ms':>9}{'transl.':>9}{'its SQL':>9}{'hand SQL':>10}"
        f"{'ratio':>7}{'e2e':>7}  same"
    )
    for r in results:
        print(
            f"{r['name']:<18}{r['kql_ms']:>9.1f}{r['translate_ms']:>9.1f}{r['translated_ms']:>9.1f}"
            f"{r['sql_ms']:>10.1f}{r['ratio']:>7.2f}{r['end_to_end']:>7.2f}"
            f"  {'yes' if r['same_answer'] else 'NO'}"
        )
    ratios = [float(str(r["ratio"])) for r in results]
    ends = [float(str(r["end_to_end"])) for r in results]
    print(
        f"p50 ratio, translated SQL / hand SQL: {statistics.median(ratios):.2f} (target <= {TARGET}); "
        f"worst {max(ratios):.2f}; end to end with translation: p50 {statistics.median(ends):.2f}"
    )
    wrong = [r["name"] for r in results if not r["same_answer"]]
    print("answers: all the same" if not wrong else f"answers DIFFER: {', '.join(map(str, wrong))}")


if __name__ == "__main__":
    main()
