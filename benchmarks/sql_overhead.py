"""The embedded SQL path's overhead against raw DuckDB, on a generated 10 M-row fact table.

Platform: `DuckDBEngine.execute` with a T-SQL query — parse and validate (sqlglot), transpile to
DuckDB, inject the row cap, run under the deadline watchdog, convert rows to JSON-safe values —
plus serialising the ResultSet to JSON. Baseline: the same DuckDB SQL (as the engine would run it)
on a raw cursor of the same in-memory database, rows fetched. The validated-SQL cache is turned off
so every run pays the full validation. Target (issue 3): platform p50 ≤ 1.1 × baseline p50 + 5 ms.

Run: `python -m benchmarks.sql_overhead [--rows 10000000] [--repeat 15]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from loom.engines.sources import DuckDBSource
from loom.engines.sql import duckdb_engine
from loom.engines.sql.duckdb_engine import DuckDBEngine

# T-SQL, as a Synapse-flavoured model would write them; the engine transpiles them to DuckDB.
QUERIES = {
    "group_by": "SELECT region, SUM(amount) AS revenue, COUNT(*) AS n FROM sales GROUP BY region",
    "top_n": "SELECT TOP 10 customer_id, SUM(amount) AS revenue FROM sales GROUP BY customer_id "
    "ORDER BY revenue DESC",
    "filter_count": "SELECT COUNT(*) AS n FROM sales WHERE amount > 900 AND day >= '2025-06-01'",
    "distinct": "SELECT COUNT(DISTINCT customer_id) AS customers FROM sales WHERE region = 'West'",
    "rows_1000": "SELECT TOP 1000 order_id, customer_id, amount, day FROM sales WHERE region = 'South' "
    "ORDER BY order_id",
}


def generate(folder: Path, rows: int) -> None:
    """A fact table written as Parquet by DuckDB itself: deterministic, nothing downloaded."""
    duckdb.sql(
        f"""
        COPY (
          SELECT i AS order_id, (i * 7919) % 200000 AS customer_id,
                 ['North', 'South', 'East', 'West'][1 + (i % 4)] AS region,
                 round(((i * 104729) % 100000) / 100.0, 2) AS amount,
                 DATE '2024-01-01' + CAST(i % 730 AS INTEGER) AS day
          FROM range({rows}) t(i)
        ) TO '{folder / "sales.parquet"}' (FORMAT parquet)
        """
    )


def p50(run: Callable[[], object], repeat: int) -> float:
    run()  # warm
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(engine: DuckDBEngine, name: str, query: str, repeat: int) -> dict[str, float | str | bool]:
    def platform() -> None:
        result = engine.execute(query, max_rows=1000, timeout_s=60, dialect="tsql")
        result.model_dump_json()

    executed = engine.execute(query, max_rows=1000, timeout_s=60, dialect="tsql").query
    raw = engine._connection()  # the same in-memory database the engine runs on

    def baseline() -> None:
        raw.cursor().execute(executed).fetchall()

    ours, base = p50(platform, repeat), p50(baseline, repeat)
    budget = 1.1 * base + 5
    return {"query": name, "platform_p50_ms": ours, "raw_p50_ms": base, "ratio": ours / base,
            "budget_ms": budget, "met": ours <= budget}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    duckdb_engine.PREPARED_CACHE = 0  # measure validation every time, not a cache hit
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        generate(Path(tmp), args.rows)
        engine = DuckDBEngine(DuckDBSource(name="bench", location=tmp, dialect="tsql"))
        engine.catalog()
        print(f"generated and loaded {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
        print(f"{'query':14} {'platform p50':>13} {'raw p50':>9} {'ratio':>6} {'budget':>8}  met")
        for name, query in QUERIES.items():
            r = measure(engine, name, query, args.repeat)
            print(f"{name:14} {r['platform_p50_ms']:10.2f} ms {r['raw_p50_ms']:6.2f} ms "
                  f"{r['ratio']:6.2f} {r['budget_ms']:6.2f} ms  {'yes' if r['met'] else 'NO'}")  # fmt: skip


if __name__ == "__main__":
    main()
