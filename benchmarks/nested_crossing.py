"""What a result of many tiny values costs the server: memory and the longest hold of the
interpreter, with each value counted at what it holds in memory when that is more than its JSON
(`bounds.value_cost`) against counted at its JSON alone (the code before probe 34), in one run.

Probes 34 and 35 (R34-2, R34-3, R35-1): results of tiny nested values, or of many short texts,
within every bound (≤ 1,000 rows, ≤ 8 MiB as JSON), held 11-35 times their count in the server's
memory and held its interpreter for up to 4 s while they were unpickled from the engine's process
and encoded, so every other turn waited.
The engine's process does the same work either way; what is measured here is the server's part:
unpickling the result the engine sent (`pickle.loads`, as `Connection.recv` does) and encoding it
as JSON (as the SSE event and the model's view do), under a 5 ms ticker thread; and the memory the
unpickled result holds (tracemalloc).

Run: `python -m benchmarks.nested_crossing [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.gil_hold import held
from loom.engines import bounds
from loom.engines.contracts import ResultSet, Value
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine

SHAPES = {
    "1,500 texts of 2": "x AS c0, "
    + ", ".join(f"x c{n}" for n in range(1, 1500))
    + " FROM (SELECT i, chr((65 + i % 26)::INTEGER) || 'b' AS x FROM range(1000) t(i))",
    "list(text of 2) x1600": "list(chr((65 + j % 26)::INTEGER) || 'b') AS l "
    "FROM range(1000) t(i), range(1600) s(j)",
    "list(j) x1500": "list(j) AS l FROM range(1000) t(i), range(1500) s(j)",
    "list({'a': j}) x700": "list({'a': j}) AS l FROM range(1000) t(i), range(700) s(j)",
    "list([[j % 10]]) x600": "list([[j % 10]]) AS l FROM range(1000) t(i), range(600) s(j)",
    "list({a:{b:{c}}}) x300": "list({'a': {'b': {'c': j % 10}}}) AS l FROM range(1000) t(i), range(300) s(j)",
}


@dataclass(frozen=True)
class Crossing:
    rows: int
    counted_mb: float
    held_mb: float  # what the unpickled result holds in the server
    hold_ms: float  # the longest the ticker waited while it was unpickled and encoded


def cross(engine: DuckDBEngine, sql: str) -> Crossing:
    sent = pickle.dumps(engine.execute(sql, max_rows=1000, timeout_s=120), pickle.HIGHEST_PROTOCOL)
    _, gap = held(lambda: pickle.loads(sent).model_dump_json())
    tracemalloc.start()  # apart from the timing: tracing every allocation slows them ten times
    result: ResultSet = pickle.loads(sent)
    held_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return Crossing(result.row_count, result.size_bytes / 1e6, held_bytes / 1e6, gap * 1000)


def measured(engine: DuckDBEngine, sql: str, cost: Callable[[Value], int], rounds: int) -> Crossing:
    bounds.value_cost = cost  # type: ignore[assignment]  # the count compared, for this run
    runs = [cross(engine, sql) for _ in range(rounds)]
    return Crossing(
        runs[0].rows,
        runs[0].counted_mb,
        statistics.median(r.held_mb for r in runs),
        statistics.median(r.hold_ms for r in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours_cost = bounds.value_cost
    print(f"medians of {args.rounds} rounds; counted: the result's size against its 8 MiB budget")
    columns = "rows  counted MB  held MB  held/counted  hold ms"
    print(f"{'shape (1,000 rows asked)':26s} {'counting':11s} {columns}")
    with tempfile.TemporaryDirectory() as folder:
        engine = DuckDBEngine(DuckDBSource(name="nested", location=folder))
        for name, shape in SHAPES.items():
            sql = f"SELECT {shape}" if "FROM (" in shape else f"SELECT i, {shape} GROUP BY i"
            for label, cost in (("JSON only", bounds.value_size), ("memory", ours_cost)):
                c = measured(engine, sql, cost, args.rounds)
                ratio = c.held_mb / c.counted_mb
                print(
                    f"{name:26s} {label:11s} {c.rows:4d} {c.counted_mb:11.2f} {c.held_mb:8.1f} "
                    f"{ratio:12.1f}x {c.hold_ms:8.1f}"
                )
        engine.close()
    bounds.value_cost = ours_cost


if __name__ == "__main__":
    main()
