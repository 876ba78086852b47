"""A golden suite beyond the air-routes book: traversals of every common shape — filters, hops,
repeat/emit, paths, group/groupCount, project, order/limit, union/coalesce/choose, aggregates —
each answered independently in plain Python over the same CSV files, and run through the engine.
A wrong answer fails the test: none may be silently wrong."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from loom.engines.graph.engine import GraphEngine
from loom.engines.sources import GraphSource
from loom.engines.sql.limits import LocalLimits

AIR_ROUTES = Path(__file__).resolve().parents[4] / "shared" / "data" / "graph_air_routes"
pytestmark = pytest.mark.skipif(
    not AIR_ROUTES.is_dir(), reason=f"the air-routes data is absent at {AIR_ROUTES}"
)


@dataclass
class Graph:
    """The CSVs, read with the csv module: what the answers below are computed from."""

    vertices: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    into: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))

    def airport(self, code: str) -> str:
        return next(i for i, v in self.vertices.items() if v["~label"] == "airport" and v.get("code") == code)

    def of(self, label: str) -> list[str]:
        return [i for i, v in self.vertices.items() if v["~label"] == label]

    def routes(self, vertex: str) -> list[str]:
        return self.out[(vertex, "route")]

    def prop(self, vertex: str, key: str) -> Any:
        return self.vertices[vertex].get(key)


def read(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = [h.split(":") for h in next(reader)]
        rows = []
        for values in reader:
            row: dict[str, Any] = {}
            for (name, *kind), text in zip(header, values, strict=False):
                if text == "":
                    continue
                row[name] = int(text) if kind == ["int"] else float(text) if kind == ["double"] else text
            rows.append(row)
        return rows


@pytest.fixture(scope="module")
def graph() -> Graph:
    g = Graph()
    for row in read(AIR_ROUTES / "air-routes-latest-nodes.csv"):
        g.vertices[row["~id"]] = row
    for row in read(AIR_ROUTES / "air-routes-latest-edges.csv"):
        g.edges[row["~id"]] = row
        g.out[(row["~from"], row["~label"])].append(row["~to"])
        g.into[(row["~to"], row["~label"])].append(row["~from"])
    return g


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> GraphEngine:
    folder = tmp_path_factory.mktemp("air-routes")
    for kind in ("nodes", "edges"):
        (folder / f"{kind}.csv").symlink_to(AIR_ROUTES / f"air-routes-latest-{kind}.csv")
    return GraphEngine(
        GraphSource(kind="graph", name="air", location=str(folder)), LocalLimits(isolated=False)
    )


def codes(g: Graph, ids: list[str]) -> list[str]:
    return [g.prop(i, "code") for i in ids]


def two_hops(g: Graph, start: str) -> set[str]:
    return {b for a in g.routes(start) for b in g.routes(a)}


def out_dists(g: Graph, start: str) -> list[tuple[int, str]]:
    return [(e["dist"], e["~to"]) for e in g.edges.values() if e["~from"] == start and e["~label"] == "route"]


AUS, LHR = "AUS", "LHR"
# (traversal, its answer from the CSVs, how to compare: "one" a single value, "set" in any order,
# "list" in order)
CASES: list[tuple[str, Callable[[Graph], Any], str]] = [
    ("g.V().hasLabel('country').count()", lambda g: len(g.of("country")), "one"),
    ("g.V().hasLabel('continent').values('code')", lambda g: codes(g, g.of("continent")), "set"),
    (
        "g.V().has('airport','country','US').count()",
        lambda g: sum(g.prop(i, "country") == "US" for i in g.of("airport")),
        "one",
    ),
    (
        "g.V().has('airport','runways',gt(5)).values('code')",
        lambda g: [g.prop(i, "code") for i in g.of("airport") if g.prop(i, "runways") > 5],
        "set",
    ),
    (
        "g.V().has('airport','runways',between(3,5)).count()",
        lambda g: sum(3 <= g.prop(i, "runways") < 5 for i in g.of("airport")),
        "one",
    ),
    (
        "g.V().has('airport','city',within('London','Paris')).values('code')",
        lambda g: [g.prop(i, "code") for i in g.of("airport") if g.prop(i, "city") in ("London", "Paris")],
        "set",
    ),
    (
        "g.V().has('airport','desc',containing('Regional')).count()",
        lambda g: sum("Regional" in g.prop(i, "desc") for i in g.of("airport")),
        "one",
    ),
    (
        "g.V().has('airport','code',startingWith('AB')).values('code')",
        lambda g: [c for c in codes(g, g.of("airport")) if c.startswith("AB")],
        "set",
    ),
    (
        "g.V().has('airport','code','LAX').out('route').count()",
        lambda g: len(g.routes(g.airport("LAX"))),
        "one",
    ),
    (
        "g.V().has('airport','code','LAX').in('route').count()",
        lambda g: len(g.into[(g.airport("LAX"), "route")]),
        "one",
    ),
    (
        "g.V().has('airport','code','LAX').both('route').dedup().count()",
        lambda g: len(set(g.routes(g.airport("LAX"))) | set(g.into[(g.airport("LAX"), "route")])),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').out('route').out('route').dedup().count()",
        lambda g: len(two_hops(g, g.airport(AUS))),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').repeat(out('route')).times(2).dedup().count()",
        lambda g: len(two_hops(g, g.airport(AUS))),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').repeat(out('route')).emit().times(2).dedup().count()",
        lambda g: len(two_hops(g, g.airport(AUS)) | set(g.routes(g.airport(AUS)))),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').outE('route').values('dist').max()",
        lambda g: max(d for d, _ in out_dists(g, g.airport(AUS))),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').outE('route').values('dist').sum()",
        lambda g: sum(d for d, _ in out_dists(g, g.airport(AUS))),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').outE('route').order().by('dist',desc).limit(1).inV().values('code')",
        lambda g: g.prop(max(out_dists(g, g.airport(AUS)))[1], "code"),
        "one",
    ),
    (
        "g.V().hasLabel('airport').order().by('runways',desc).by('code').limit(5).values('code')",
        lambda g: [
            c for _, c in sorted((-g.prop(i, "runways"), g.prop(i, "code")) for i in g.of("airport"))[:5]
        ],
        "list",
    ),
    (
        "g.V().hasLabel('airport').groupCount().by('country')",
        lambda g: dict(Counter(g.prop(i, "country") for i in g.of("airport"))),
        "one",
    ),
    (
        "g.V().hasLabel('airport').group().by('country').by(count())",
        lambda g: dict(Counter(g.prop(i, "country") for i in g.of("airport"))),
        "one",
    ),
    (
        "g.V().has('country','code','FR').out('contains').count()",
        lambda g: len(g.out[(next(i for i in g.of("country") if g.prop(i, "code") == "FR"), "contains")]),
        "one",
    ),
    (
        "g.V().has('continent','code','EU').out('contains').has('runways',gt(3)).count()",
        lambda g: sum(
            g.prop(a, "runways") > 3
            for a in g.out[(next(i for i in g.of("continent") if g.prop(i, "code") == "EU"), "contains")]
        ),
        "one",
    ),
    (
        "g.V().hasLabel('airport').where(__.out('route').has('code','LHR')).count()",
        lambda g: sum(g.airport(LHR) in g.routes(i) for i in g.of("airport")),
        "one",
    ),
    (
        "g.V().has('airport','code','LHR').out('route').where(__.out('route').has('code','JFK')).count()",
        lambda g: sum(g.airport("JFK") in g.routes(a) for a in g.routes(g.airport(LHR))),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').out('route').has('country',neq('US')).values('code')",
        lambda g: [g.prop(a, "code") for a in g.routes(g.airport(AUS)) if g.prop(a, "country") != "US"],
        "set",
    ),
    (
        "g.V().hasLabel('airport').has('elev',gt(10000)).values('code')",
        lambda g: [g.prop(i, "code") for i in g.of("airport") if g.prop(i, "elev") > 10000],
        "set",
    ),
    ("g.V().has('airport','code','DEN').values('elev')", lambda g: g.prop(g.airport("DEN"), "elev"), "one"),
    (
        "g.V().has('airport','code','SFO').project('code','routes').by('code').by(__.out('route').count())",
        lambda g: {"code": "SFO", "routes": len(g.routes(g.airport("SFO")))},
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').outE('route').has('dist',lt(200)).inV().values('code')",
        lambda g: [g.prop(t, "code") for d, t in out_dists(g, g.airport(AUS)) if d < 200],
        "set",
    ),
    (
        "g.V().has('airport','code','AUS').out('route').values('country').dedup()",
        lambda g: list({g.prop(a, "country") for a in g.routes(g.airport(AUS))}),
        "set",
    ),
    (
        "g.V().hasLabel('airport').values('country').dedup().count()",
        lambda g: len({g.prop(i, "country") for i in g.of("airport")}),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').union(__.out('route'), __.in('route')).dedup().count()",
        lambda g: len(set(g.routes(g.airport(AUS))) | set(g.into[(g.airport(AUS), "route")])),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').coalesce(__.out('route').has('code','XYZ'), __.constant('none'))",
        lambda g: "none",
        "one",
    ),
    (
        "g.V().has('airport','code','AUS')"
        ".choose(__.values('runways').is(gt(2)), __.constant('big'), __.constant('small'))",
        lambda g: "big" if g.prop(g.airport(AUS), "runways") > 2 else "small",
        "one",
    ),
    (
        "g.V().hasLabel('airport').values('runways').mean()",
        lambda g: mean(g.prop(i, "runways") for i in g.of("airport")),
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').out('route').has('code','DFW').path().by('code')",
        lambda g: ["AUS", "DFW"],
        "one",
    ),
    (
        "g.V().has('airport','code','AUS').out('route').out('route').has('code','SAF').dedup().count()",
        lambda g: int(g.airport("SAF") in two_hops(g, g.airport(AUS))),
        "one",
    ),
    (
        "g.E().hasLabel('route').has('dist',gt(8000)).count()",
        lambda g: sum(e["~label"] == "route" and e["dist"] > 8000 for e in g.edges.values()),
        "one",
    ),
    (
        "g.V().hasLabel('airport').has('runways',7).values('code')",
        lambda g: [g.prop(i, "code") for i in g.of("airport") if g.prop(i, "runways") == 7],
        "set",
    ),
    (
        "g.V().has('airport','code','AUS').out('route').groupCount().by('country')",
        lambda g: dict(Counter(g.prop(a, "country") for a in g.routes(g.airport(AUS)))),
        "one",
    ),
    (
        "g.V().hasLabel('airport').not(__.out('route')).count()",
        lambda g: sum(not g.routes(i) for i in g.of("airport")),
        "one",
    ),
    (
        "g.V().has('airport','code','JFK').out('route').order().by('code').limit(3).values('code')",
        lambda g: sorted(codes(g, g.routes(g.airport("JFK"))))[:3],
        "list",
    ),
    (
        "g.V().has('airport','code','AUS').in('route').values('code').order().fold()",
        lambda g: sorted(codes(g, g.into[(g.airport(AUS), "route")])),
        "one",
    ),
    (
        "g.V().has('airport','code','LHR').outE('route').count()",
        lambda g: len(out_dists(g, g.airport(LHR))),
        "one",
    ),
]


@pytest.mark.parametrize(("query", "expected", "compare"), CASES, ids=[q for q, _, _ in CASES])
def test_the_engine_answers_as_the_files_do(
    engine: GraphEngine, graph: Graph, query: str, expected: Callable[[Graph], Any], compare: str
) -> None:
    rows = [row[0] for row in engine.execute(query, max_rows=10_000, timeout_s=30).rows]
    want = expected(graph)
    if compare == "one":
        [got] = rows
        assert got == (pytest.approx(want) if isinstance(want, float) else want)
    elif compare == "set":
        assert Counter(rows) == Counter(want)
    else:
        assert rows == want


def test_the_suite_has_forty_shapes_or_more() -> None:
    assert len(CASES) >= 40
