"""How long a wide nested result holds the interpreter: the engine's JSON crossing against DuckDB's
own Python objects, in one run.

Probes 7-9 found that a row of 150 lists of 50,000 decimals, converted by DuckDB into Python
objects, held the GIL for ~20 s, and every other query of the engine's process waited. The engine
now carries nested values across as JSON text, cut inside DuckDB to each value's share of the
byte budget (`engines/sql/value_cuts.py`). This measures both on the same query: the wall time of
the result, and the longest a ticker thread (sleeping 5 ms at a time) was kept from running.

Run: `python -m benchmarks.gil_hold [--columns 150] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

import duckdb

from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine

TICK_S = 0.005


def query(columns: int) -> str:
    lists = ", ".join(f"l AS c{i}" for i in range(columns))
    return f"WITH t AS (SELECT repeat([1::DECIMAL(38,0)], 49960) AS l) SELECT {lists} FROM t"


def held(work: Callable[[], object]) -> tuple[float, float]:
    """(seconds `work` took, the longest gap a 5 ms ticker saw meanwhile)."""
    gaps: list[float] = []
    done = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(TICK_S)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    started = time.perf_counter()
    work()
    took = time.perf_counter() - started
    done.set()
    ticker.join()
    return took, max(gaps, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--columns", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sql = query(args.columns)
    with tempfile.TemporaryDirectory() as folder:
        engine = DuckDBEngine(DuckDBSource(name="gil", location=folder))
        raw = duckdb.connect()
        runs: dict[str, list[tuple[float, float]]] = {"engine": [], "duckdb objects": []}
        for _ in range(args.rounds):
            runs["engine"].append(held(lambda: engine.execute(sql, max_rows=10, timeout_s=600)))
            runs["duckdb objects"].append(held(lambda: raw.execute(sql).fetchall()))
        engine.close()
    print(f"{args.columns} lists of 49,960 DECIMAL(38,0), {args.rounds} rounds (medians):")
    medians = {
        name: (statistics.median(t for t, _ in r), statistics.median(g for _, g in r))
        for name, r in runs.items()
    }
    for name, (took, gap) in medians.items():
        print(f"  {name:15s} {took:7.2f} s, longest GIL hold {gap * 1000:8.1f} ms")
    (ours, our_gap), (base, base_gap) = medians["engine"], medians["duckdb objects"]
    print(f"  ratio engine / objects: time {ours / base:.3f}x, longest hold {our_gap / base_gap:.4f}x")


if __name__ == "__main__":
    main()
