"""The embedded Gremlin engine on the full air-routes graph, against DuckDB SQL over the same CSV
files (joins, and recursive CTEs for hops), in one run: load time, and p50/p99 latency per
question, each question's two answers checked equal before it is timed.

The graph side is what `loom query gremlin` runs: `GraphEngine` (parse, validate, render, the
graphersal engine, results converted and bounded), in process. The SQL side is a bare DuckDB
connection with the CSVs loaded as two tables: no validation, no bounds — the baseline.

Run: `python -m benchmarks.graph_speed [--runs 50]` (needs ../shared/data/graph_air_routes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import duckdb

from loom.engines.graph.engine import GraphEngine
from loom.engines.sources import GraphSource
from loom.engines.sql.limits import LocalLimits

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "graph_air_routes"
AUS = "(SELECT id FROM nodes WHERE label = 'airport' AND code = 'AUS')"
# (name, Gremlin, SQL): both answer one number, or one short list compared as a set.
QUESTIONS = [
    ("airports", "g.V().hasLabel('airport').count()", "SELECT count(*) FROM nodes WHERE label = 'airport'"),
    (
        "routes from AUS",
        "g.V().has('airport','code','AUS').out('route').count()",
        f"SELECT count(*) FROM edges WHERE label = 'route' AND src = {AUS}",
    ),
    (
        "two hops from AUS",
        "g.V().has('airport','code','AUS').out('route').out('route').dedup().count()",
        "SELECT count(DISTINCT b.dst) FROM edges a JOIN edges b ON b.src = a.dst AND b.label = 'route' "
        f"WHERE a.label = 'route' AND a.src = {AUS}",
    ),
    (
        "three hops from AUS",
        "g.V().has('airport','code','AUS').repeat(out('route')).times(3).dedup().count()",
        "WITH RECURSIVE r(id, depth) AS ("
        "SELECT id, 0 FROM nodes WHERE label = 'airport' AND code = 'AUS' UNION "
        "SELECT e.dst, r.depth + 1 FROM r JOIN edges e ON e.src = r.id AND e.label = 'route' "
        "WHERE r.depth < 3) SELECT count(DISTINCT id) FROM r WHERE depth = 3",
    ),
    (
        "airports by country",
        "g.V().hasLabel('airport').groupCount().by('country').select(keys).unfold().count()",
        "SELECT count(DISTINCT country) FROM nodes WHERE label = 'airport'",
    ),
    (
        "airports with a route to LHR",
        "g.V().hasLabel('airport').where(__.out('route').has('code','LHR')).count()",
        "SELECT count(DISTINCT e.src) FROM edges e JOIN nodes n ON n.id = e.dst "
        "WHERE e.label = 'route' AND n.code = 'LHR' AND n.label = 'airport'",
    ),
    (
        "longest route from AUS",
        "g.V().has('airport','code','AUS').outE('route').values('dist').max()",
        f"SELECT max(dist) FROM edges WHERE label = 'route' AND src = {AUS}",
    ),
]


def timed(work: Callable[[], object], runs: int) -> list[float]:
    work()  # warm
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        out.append((time.perf_counter() - started) * 1000)
    return out


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("nodes", "edges"):
            (Path(folder) / f"{kind}.csv").symlink_to(DATA / f"air-routes-latest-{kind}.csv")
        engine = GraphEngine(
            GraphSource(kind="graph", name="air", location=folder), LocalLimits(isolated=False)
        )
        started = time.perf_counter()
        engine.execute("g.V().count()", max_rows=1, timeout_s=60)
        graph_load = time.perf_counter() - started
        started = time.perf_counter()
        con = load_sql()
        sql_load = time.perf_counter() - started
        print(f"load: graph {graph_load:.2f} s, DuckDB {sql_load:.2f} s ({graph_load / sql_load:.2f}x)")
        print(f"{'question':32s} {'gremlin p50/p99 ms':>20s} {'sql p50/p99 ms':>18s} {'p50 ratio':>10s}")
        for name, gremlin, sql in QUESTIONS:
            ours = [row[0] for row in engine.execute(gremlin, max_rows=10_000, timeout_s=60).rows]
            theirs = [row[0] for row in con.execute(sql).fetchall()]
            assert ours == theirs, (name, ours, theirs)
            g = timed(partial(engine.execute, gremlin, max_rows=10_000, timeout_s=60), args.runs)
            s = timed(partial(_fetch, con, sql), args.runs)
            gm, sm = statistics.median(g), statistics.median(s)
            print(f"{name:32s} {gm:9.2f} / {p99(g):8.2f} {sm:8.2f} / {p99(s):7.2f} {gm / sm:9.2f}x")


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return con.execute(sql).fetchall()


def load_sql() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    nodes, edges = DATA / "air-routes-latest-nodes.csv", DATA / "air-routes-latest-edges.csv"
    con.execute(
        f'CREATE TABLE nodes AS SELECT "~id"::BIGINT AS id, "~label" AS label, "code:string" AS code, '
        f"\"country:string\" AS country FROM read_csv('{nodes}', header = true, all_varchar = true)"
    )
    con.execute(
        'CREATE TABLE edges AS SELECT "~id"::BIGINT AS id, "~from"::BIGINT AS src, "~to"::BIGINT AS dst, '
        '"~label" AS label, "dist:int"::INTEGER AS dist '
        f"FROM read_csv('{edges}', header = true, all_varchar = true)"
    )
    return con


if __name__ == "__main__":
    main()
