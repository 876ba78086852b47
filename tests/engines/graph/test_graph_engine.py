"""The embedded Gremlin engine on a graph loaded from CSV (the air-routes form), ids as the files
wrote them; and the air-routes book's 31 queries on the full graph, read from ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loom.engines.contracts import QueryError
from loom.engines.graph.engine import GraphEngine
from loom.engines.graph.load import GraphLoadError, load_graph
from loom.engines.registry import OPENERS, CloudAccess, languages
from loom.engines.sources import GraphSource
from loom.engines.sql.limits import LocalLimits

AIR_ROUTES = Path(__file__).resolve().parents[4] / "shared" / "data" / "graph_air_routes"
NODES = """~id,~label,code:string,city:string,runways:int,lat:double
3,airport,AUS,Austin,2,30.19
8,airport,DFW,Dallas,7,32.89
13,airport,IAH,Houston,5,29.98
"""
EDGES = """~id,~from,~to,~label,dist:int
5161,3,8,route,190
5162,8,3,route,190
5163,8,13,route,224
"""


@pytest.fixture
def engine(tmp_path: Path) -> GraphEngine:
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "edges.csv").write_text(EDGES)
    return GraphEngine(graph_source(tmp_path))


def graph_source(location: Path) -> GraphSource:
    return GraphSource(kind="graph", name="routes", location=str(location))


def values(engine: GraphEngine, query: str, max_rows: int = 100) -> list[object]:
    return [row[0] for row in engine.execute(query, max_rows=max_rows, timeout_s=10).rows]


def test_the_files_ids_find_their_elements(engine: GraphEngine) -> None:
    assert values(engine, "g.V(3).values('code')") == ["AUS"]
    assert values(engine, "g.V().hasId(8).values('city')") == ["Dallas"]
    assert values(engine, "g.E(5161).values('dist')") == [190]
    # The engine keeps every id as text: `id()` answers "3", while elements show the files' 3.
    assert values(engine, "g.V().has('code','AUS').id()") == ["3"]


def test_results_come_as_gremlin_returns_them(engine: GraphEngine) -> None:
    [vertex] = values(engine, "g.V(3)")
    assert vertex == {
        "id": 3,
        "label": "airport",
        "properties": {"code": "AUS", "city": "Austin", "runways": 2, "lat": 30.19},
    }
    [edge] = values(engine, "g.E(5163)")
    assert edge == {"id": 5163, "label": "route", "outV": 8, "inV": 13, "properties": {"dist": 224}}
    paths = values(engine, "g.V(3).out('route').out('route').path().by('code')")
    assert sorted(paths) == [["AUS", "DFW", "AUS"], ["AUS", "DFW", "IAH"]]  # type: ignore[type-var]
    assert values(engine, "g.V().groupCount().by('code')") == [{"AUS": 1, "DFW": 1, "IAH": 1}]
    assert values(engine, "g.V().values('code').fold()") == [["AUS", "DFW", "IAH"]]


def test_terminal_steps_are_done_by_the_engine(engine: GraphEngine) -> None:
    assert values(engine, "g.V(3).out().has('code','DFW').hasNext()") == [True]
    assert values(engine, "g.V(3).out().has('code','IAH').hasNext()") == [False]
    assert values(engine, "g.V().values('code').next()") == ["AUS"]
    assert values(engine, "g.V().values('code').toList()") == ["AUS", "DFW", "IAH"]


def test_the_row_cap_goes_into_the_query_and_says_it_cut(engine: GraphEngine) -> None:
    result = engine.execute("g.E().values('dist')", max_rows=2, timeout_s=10)
    assert result.rows == [[190], [190]] and result.truncated_by == "rows"
    assert ".limit(3)" in result.query and 'with("evaluationTimeout", 10000)' in result.query


def test_a_write_never_reaches_the_graph(engine: GraphEngine) -> None:
    for query in ("g.V().addV('x').limit(0)", "g.V(3).property('code', 'XXX')", "g.V().drop()"):
        with pytest.raises(QueryError) as refused:
            engine.execute(query, max_rows=10, timeout_s=10)
        assert refused.value.code == "not_read_only"
    assert values(engine, "g.V().count()") == [3] and values(engine, "g.V(3).values('code')") == ["AUS"]


def test_a_map_key_select_reads_the_map(engine: GraphEngine) -> None:
    # The engine's select looks for step labels only; the book's `select('FR','GR','BE')` failed.
    assert values(engine, "g.V().groupCount().by('code').select('AUS','IAH')") == [{"AUS": 1, "IAH": 1}]
    assert values(engine, "g.V().groupCount().by('code').select('DFW')") == [1]
    assert values(engine, "g.V(3).as('a').out().select('a').values('code')") == ["AUS"]  # a label still


def test_a_failed_query_says_why_in_one_line(engine: GraphEngine) -> None:
    with pytest.raises(QueryError) as failed:
        engine.execute("g.V().values('code').sum()", max_rows=10, timeout_s=10)
    assert failed.value.code == "execution_error" and "\n" not in failed.value.message


def test_a_folder_that_is_not_a_graph_is_named_not_shown(tmp_path: Path) -> None:
    (tmp_path / "nodes.csv").write_text("code\nAUS\n")
    (tmp_path / "edges.csv").write_text(EDGES)
    with pytest.raises(GraphLoadError, match="~id"):
        load_graph(tmp_path)
    with pytest.raises(QueryError) as failed:
        GraphEngine(graph_source(tmp_path)).execute("g.V()", max_rows=1, timeout_s=5)
    assert failed.value.code == "source_unavailable" and str(tmp_path) not in failed.value.message


@pytest.mark.parametrize(
    ("query", "code", "near"),
    [
        ("g.V().hasLabel('airprot').count()", "unknown_label", "airport"),
        ("g.V(3).out('routes').values('code')", "unknown_edge_label", "route"),
        ("g.V().has('airport', 'cod', 'AUS')", "unknown_property", "code"),
        ("g.V().values('citty')", "unknown_property", "city"),
    ],
)
def test_an_unknown_label_or_key_is_refused_with_the_closest_names(
    engine: GraphEngine, query: str, code: str, near: str
) -> None:
    with pytest.raises(QueryError) as refused:
        engine.execute(query, max_rows=5, timeout_s=10)
    assert refused.value.code == code and near in refused.value.problems[0].suggestions


def test_a_key_the_catalogs_sample_missed_is_looked_for_in_the_graph(
    engine: GraphEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "nodes.csv").write_text(
        NODES.replace("lat:double", "lat:double,hub:string") + "21,airport,SAT,San Antonio,2,29.5,yes\n"
    )
    (tmp_path / "edges.csv").write_text(EDGES)
    monkeypatch.setattr("loom.engines.graph.catalog.SAMPLE", 1)  # the sample sees one airport only
    sampled = GraphEngine(graph_source(tmp_path))
    assert "hub" not in [p.name for p in sampled.catalog().vertex_labels[0].properties]
    assert values(sampled, "g.V().has('hub', 'yes').values('code')") == ["SAT"]


def test_a_repeat_without_times_or_until_stops_at_the_bound_it_shows(engine: GraphEngine) -> None:
    result = engine.execute(
        "g.V(3).repeat(out('route')).emit().path().by('code').limit(3)", max_rows=5, timeout_s=10
    )
    assert '.repeat(__.out("route")).times(10)' in result.query and result.rows
    bounded = engine.execute("g.V(3).repeat(out('route')).times(2).count()", max_rows=5, timeout_s=10)
    assert ".times(10)" not in bounded.query  # its own bound stands


def test_the_catalog_names_labels_their_keys_and_what_edges_join(engine: GraphEngine) -> None:
    catalog = engine.catalog()
    [airport] = catalog.vertex_labels
    assert (airport.name, airport.count) == ("airport", 3)
    keys = {c.name: c for c in airport.properties}
    assert sorted(keys) == ["city", "code", "lat", "runways"]
    assert keys["runways"].type == "long" and keys["lat"].type == "double" and keys["code"].type == "string"
    assert keys["code"].sample_values == ["AUS", "DFW", "IAH"]
    [route] = catalog.edge_labels
    assert (route.name, route.count, route.out_labels, route.in_labels) == (
        "route",
        3,
        ["airport"],
        ["airport"],
    )
    assert [c.name for c in route.properties] == ["dist"]


def test_a_graph_source_answers_gremlin_in_a_process_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "edges.csv").write_text(EDGES)
    source = graph_source(tmp_path)
    assert languages(source) == ("gremlin",)
    engine = OPENERS[("graph", "gremlin")](source, CloudAccess(local=LocalLimits()))
    try:
        assert engine.execute("g.V(3).out().values('code')", max_rows=5, timeout_s=30).rows == [["DFW"]]
        assert [v.name for v in engine.catalog().vertex_labels] == ["airport"]
    finally:
        engine.close()


@pytest.mark.skipif(not AIR_ROUTES.is_dir(), reason=f"the air-routes data is absent at {AIR_ROUTES}")
def test_the_air_routes_books_queries_are_all_answered_correctly(tmp_path: Path) -> None:
    for kind in ("nodes", "edges"):
        (tmp_path / f"{kind}.csv").symlink_to(AIR_ROUTES / f"air-routes-latest-{kind}.csv")
    engine = GraphEngine(graph_source(tmp_path))
    cases = json.loads((AIR_ROUTES / "gremlin_gold_cases.json").read_text())
    wrong = []
    for case in cases:
        query, _, note = case["gremlin"].partition("  [")  # "[as set]": order does not matter
        got = values(engine, query, max_rows=1000)
        answer = got[0] if len(got) == 1 else got
        expected = case["computed_from_csv"]
        if "set" in note:
            answer, expected = sorted(answer), sorted(expected)  # type: ignore[call-overload]
        if answer != pytest.approx(expected) if isinstance(expected, float) else answer != expected:
            wrong.append((query, answer, expected))
    assert len(cases) == 31 and wrong == []
