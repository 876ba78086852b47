"""What running an embedded source's engine in a child process costs, against the same engine in process.

Both engines serve the same seeded sample lakehouse (`loom data seed` sizes; `--orders`). Per query:
p50 of `execute` through the child (a pickled request and ResultSet over a pipe) against p50 of the
in-process `DuckDBEngine`, as a ratio. Then what a child holds: its RSS and PSS (shared pages split
among the processes sharing them) once loaded, the fork server's, and the parent's; how long the
first query takes from nothing (fork, load) and the first after the child was killed by a query that
outran its time limit (kill, fork, reload) — the price the calls beside such a query pay.

Run: `python -m benchmarks.engine_process [--orders 20000] [--repeat 30] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from loom.engines.contracts import QueryError
from loom.engines.isolated.engine import IsolatedEngine, ProcessMemory
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.limits import LocalLimits
from loom.lakehouse.seed import seed_lakehouse

QUERIES = {
    "count": "SELECT count(*) FROM gold.fact_sales",
    "group_by": "SELECT s.region, sum(f.net_amount) AS revenue FROM gold.fact_sales f "
    "JOIN gold.dim_store s ON s.store_key = f.store_key GROUP BY s.region ORDER BY revenue DESC",
    "rows_1000": "SELECT * FROM gold.fact_sales ORDER BY order_id LIMIT 1000",
}
OUTRUNS = "SELECT length(printf('%2000000000d', 1))"  # deaf to its interrupt for ~5-10 s
LIMITS = LocalLimits(memory_limit="4GB", threads=2)


def p50_ms(run: Callable[[], object], repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def kib(pid: int, field: str, name: str = "status") -> int:
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def isolated(source: DuckDBSource) -> IsolatedEngine:
    return IsolatedEngine(
        partial(DuckDBEngine, source, LIMITS),
        label=source.name,
        name="duckdb",
        language="sql",
        dialect="duckdb",
        dialects=DuckDBEngine.dialects,
        memory=ProcessMemory(LIMITS.resident(), LIMITS.address_space()),
        grace_s=1.0,
    )


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def one_run(source: DuckDBSource, repeat: int) -> dict[str, Any]:
    inline, child = DuckDBEngine(source, LIMITS), isolated(source)
    count = partial(child.execute, QUERIES["count"], max_rows=10, timeout_s=30)
    first_ms = timed(count)
    inline.execute(QUERIES["count"], max_rows=10, timeout_s=30)
    found: dict[str, Any] = {"first_query_ms": first_ms, "queries": {}}
    for name, query in QUERIES.items():
        run_child = partial(child.execute, query, max_rows=1000, timeout_s=30)
        run_inline = partial(inline.execute, query, max_rows=1000, timeout_s=30)
        ours, base = p50_ms(run_child, repeat), p50_ms(run_inline, repeat)
        found["queries"][name] = (ours, base)
    assert child._child is not None and child._child.process.pid is not None
    pid = child._child.process.pid
    found["child_rss_mib"] = kib(pid, "VmRSS") / 1024
    found["child_pss_mib"] = kib(pid, "Pss", "smaps_rollup") / 1024
    try:
        child.execute(OUTRUNS, max_rows=1, timeout_s=1)
    except QueryError as e:
        found["outrun"] = e.code
    found["after_kill_ms"] = timed(count)
    child.close()
    inline.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seed_lakehouse(Path(tmp), orders=args.orders)
        source = DuckDBSource(name="bench", location=tmp)
        runs = [one_run(source, args.repeat) for _ in range(args.runs)]
    med = statistics.median
    print(f"{args.runs} runs, medians; {args.orders:,} orders; limits {LIMITS}")
    print(f"{'query':10} {'child p50':>10} {'in-process p50':>15} {'ratio':>6} {'added':>9}")
    for name in QUERIES:
        ours, base = med(r["queries"][name][0] for r in runs), med(r["queries"][name][1] for r in runs)
        print(f"{name:10} {ours:7.2f} ms {base:12.2f} ms {ours / base:6.2f} {ours - base:6.2f} ms")
    print(f"child once loaded: RSS {med(r['child_rss_mib'] for r in runs):.0f} MiB, "
          f"PSS {med(r['child_pss_mib'] for r in runs):.0f} MiB")  # fmt: skip
    print(f"first query from nothing (fork, load): {med(r['first_query_ms'] for r in runs):.0f} ms")
    outruns = sorted({r.get("outrun", "answered") for r in runs})
    print(f"a query outrunning 1 s + 1 s grace: {', '.join(outruns)}; the next query after the kill "
          f"(fork, reload): {med(r['after_kill_ms'] for r in runs):.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
