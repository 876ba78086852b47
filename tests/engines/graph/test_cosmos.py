"""The Cosmos DB Gremlin connector at its driver seam: gremlinpython's own client, protocol and
GraphSON 2 serializer, over a transport that answers as Cosmos DB does (`fake_cosmos`). Nothing
here reaches Azure; what a live account would add is said in the README."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("gremlin_python", reason="gremlinpython is not installed: pip install '.[cosmos]'")

from azure.core.credentials import AccessToken  # noqa: E402

from loom.engines.contracts import QueryError  # noqa: E402
from loom.engines.graph.cosmos.engine import CosmosGraphEngine  # noqa: E402
from loom.engines.graph.engine import GraphEngine  # noqa: E402
from loom.engines.registry import OPENERS, CloudAccess  # noqa: E402
from loom.engines.sources import CosmosSource  # noqa: E402
from loom.tools.graph_schema import render_graph_schema  # noqa: E402
from tests.engines.graph.fake_cosmos import FakeCosmos, Reply  # noqa: E402
from tests.engines.graph.test_graph_engine import EDGES, NODES, graph_source  # noqa: E402

ENDPOINT = "wss://acct.gremlin.cosmos.azure.com:443/"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "edges.csv").write_text(EDGES)
    return tmp_path


@pytest.fixture
def fake(files: Path) -> FakeCosmos:
    return FakeCosmos(files)


def engine_on(fake: FakeCosmos, **options: object) -> CosmosGraphEngine:
    settings: dict[str, object] = {"key": "the-key", "transport": fake.transport, **options}
    return CosmosGraphEngine(ENDPOINT, "db", "routes", **settings)  # type: ignore[arg-type]


def values(engine: CosmosGraphEngine, query: str, max_rows: int = 100) -> list[object]:
    return [row[0] for row in engine.execute(query, max_rows=max_rows, timeout_s=10).rows]


class Credential:
    """An Entra credential that hands out numbered tokens, each `lifetime_s` long."""

    def __init__(self, lifetime_s: float = 3600) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.lifetime_s = lifetime_s

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(f"token-{len(self.scopes)}", int(time.time() + self.lifetime_s))


def test_a_query_is_sent_as_a_string_in_the_form_cosmos_documents(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    query = "g.V().has('airport','code','AUS').out('route').order().by('runways', desc).values('code')"
    assert values(engine, query + ".toList()") == ["DFW"]
    assert fake.queries[-1] == (
        "g.V().has('airport', 'code', 'AUS').out('route').order().by('runways', decr)"
        ".values('code').limit(101)"
    )


def test_the_account_key_signs_in_with_the_graphs_user_name(fake: FakeCosmos) -> None:
    values(engine_on(fake), "g.V().count()")
    assert fake.sign_ins and all(s.user == "/dbs/db/colls/routes" for s in fake.sign_ins)
    assert {s.password for s in fake.sign_ins} == {"the-key"}


def test_a_refused_key_is_access_denied_and_the_source_says_so(fake: FakeCosmos) -> None:
    engine = engine_on(fake, key="a-wrong-key")
    with pytest.raises(QueryError) as raised:
        engine.execute("g.V().count()", max_rows=10, timeout_s=5)
    assert raised.value.code == "access_denied"
    assert "a-wrong-key" not in raised.value.message
    assert engine.problem() is not None


def test_entra_signs_in_with_a_token_for_the_clouds_cosmos_audience(files: Path) -> None:
    fake = FakeCosmos(files, passwords=("token-1", "token-2", "token-3"))
    credential = Credential()
    engine = engine_on(fake, key=None, credential=credential)
    assert values(engine, "g.V().count()") == [3]
    assert credential.scopes[0] == ("https://cosmos.azure.com/.default",)
    assert {s.password for s in fake.sign_ins} == {"token-1"}

    government = CosmosGraphEngine(
        "wss://acct.gremlin.cosmos.azure.us:443/", "db", "routes",
        credential=(gov := Credential()), cloud="AzureUSGovernment", transport=fake.transport,
    )  # fmt: skip
    values(government, "g.V().count()")
    assert gov.scopes[0] == ("https://cosmos.azure.us/.default",)


def test_a_token_near_its_expiry_is_renewed_with_a_new_client(files: Path) -> None:
    fake = FakeCosmos(files, passwords=tuple(f"token-{n}" for n in range(1, 20)))
    credential = Credential(lifetime_s=60)  # inside the renewal margin: each request signs in afresh
    engine = engine_on(fake, key=None, credential=credential)
    values(engine, "g.V().count()")
    before = len(credential.scopes)
    values(engine, "g.E().count()")
    assert len(credential.scopes) == before + 1
    assert fake.sign_ins[-1].password == f"token-{before + 1}"

    lasting = Credential()
    engine = engine_on(fake, key=None, credential=lasting)
    values(engine, "g.V().count()")
    values(engine, "g.E().count()")
    assert len(lasting.scopes) == 1  # a token an hour from expiry is kept


def test_results_are_shaped_as_gremlin_returns_them(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    vertex = values(engine, "g.V().has('airport','code','AUS')")[0]
    assert vertex == {
        "id": "3",
        "label": "airport",
        "properties": {"code": "AUS", "city": "Austin", "runways": 2, "lat": 30.19},
    }
    edge = values(engine, "g.E().has('route','dist',224)")[0]
    assert edge == {"id": "5163", "label": "route", "outV": "8", "inV": "13", "properties": {"dist": 224}}
    paths = values(engine, "g.V().has('code','AUS').out('route').out('route').path().by('code')")
    assert sorted(paths) == [["AUS", "DFW", "AUS"], ["AUS", "DFW", "IAH"]]  # type: ignore[type-var]
    assert values(engine, "g.V().hasLabel('airport').groupCount().by('city')") == [
        {"Austin": 1, "Dallas": 1, "Houston": 1}
    ]
    assert values(engine, "g.V().has('code','DFW').out('route').hasNext()") == [True]


def test_the_request_charge_is_reported_with_the_result(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    fake.batch = 1  # three batches of one vertex: 206, 206, 200
    result = engine.execute("g.V().hasLabel('airport').values('code')", max_rows=10, timeout_s=5)
    assert sorted(r[0] for r in result.rows) == ["AUS", "DFW", "IAH"]  # type: ignore[type-var]
    assert result.notes == ["Cosmos DB request charge: 7.50 RU"]


def test_a_throttled_request_is_retried_after_the_wait_cosmos_asks_for(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    engine.catalog()
    throttle = [
        Reply(status=500, attributes={"x-ms-status-code": 429, "x-ms-retry-after-ms": "00:00:00.0500000"})
    ]
    answer = fake.answer
    fake.answer = lambda q: throttle.pop() if throttle else answer(q)
    result = engine.execute("g.V().count()", max_rows=10, timeout_s=5)
    assert result.rows == [[3]]
    assert result.notes[1] == "Cosmos DB throttled the request (429) 1 time(s); retried after 50 ms in all"


def test_a_wait_past_the_time_limit_is_reported_not_slept(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    engine.catalog()
    fake.answer = lambda q: Reply(
        status=500, attributes={"x-ms-status-code": 429, "x-ms-retry-after-ms": 30000}
    )
    started = time.monotonic()
    with pytest.raises(QueryError) as raised:
        engine.execute("g.V().count()", max_rows=10, timeout_s=2)
    assert time.monotonic() - started < 2
    assert raised.value.code == "source_busy"
    assert "retry after 30000 ms" in raised.value.message


def test_a_write_never_reaches_cosmos(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    for query in (
        "g.V().has('code','AUS').property('code','XXX')",
        "g.V().drop()",
        "g.V().sideEffect(drop())",
    ):
        with pytest.raises(QueryError) as raised:
            engine.execute(query, max_rows=10, timeout_s=5)
        assert raised.value.code == "not_read_only"
    assert not any("property" in q or "drop" in q for q in fake.queries)


def test_an_unknown_label_is_refused_with_the_closest_before_it_is_sent(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    with pytest.raises(QueryError) as raised:
        engine.execute("g.V().hasLabel('airports').count()", max_rows=10, timeout_s=5)
    assert raised.value.code == "unknown_label"
    assert raised.value.problems[0].suggestions == ["airport"]
    assert not any("airports" in q for q in fake.queries)


def test_a_failed_query_says_what_cosmos_said_in_one_line(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    engine.catalog()
    report = (
        "ActivityId : 5f8d\r\nExceptionType : GraphCompileException\r\nExceptionMessage :\r\n"
        "\tGremlin Query Compilation Error: Unable to find any method 'math' @ line 1, column 9.\r\n"
        "Source : Microsoft.Azure.Cosmos.Gremlin.Core\r\n\tGremlinRequestId : 5f8d"
    )
    fake.answer = lambda q: Reply(status=597, message=report, attributes={"x-ms-status-code": 400})
    with pytest.raises(QueryError) as raised:
        engine.execute("g.V().values('runways').math('_ + 1')", max_rows=10, timeout_s=5)
    assert raised.value.code == "execution_error"
    assert raised.value.message == (
        "The query failed in Cosmos DB: GraphCompileException: Gremlin Query Compilation Error: "
        "Unable to find any method 'math' @ line 1, column 9."
    )


def test_a_query_past_the_time_limit_is_abandoned_and_the_next_one_runs(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    engine.catalog()
    answer = fake.answer
    fake.answer = lambda q: Reply(hang=True)
    started = time.monotonic()
    with pytest.raises(QueryError) as raised:
        engine.execute("g.V().count()", max_rows=10, timeout_s=0.5)
    assert raised.value.code == "timeout"
    assert time.monotonic() - started < 2
    fake.answer = answer
    assert values(engine, "g.V().count()") == [3]


def test_an_answer_too_large_on_the_wire_stops_there_and_the_next_one_runs(fake: FakeCosmos) -> None:
    engine = engine_on(fake)
    engine.catalog()
    answer = fake.answer
    fake.batch = 1
    fake.answer = lambda q: Reply(data=list(range(50)), padding=200_000)
    with pytest.raises(QueryError) as raised:
        engine.execute("g.V().values('code')", max_rows=1000, timeout_s=5, max_bytes=100_000)
    assert raised.value.code == "result_too_large"
    fake.answer = answer
    assert values(engine, "g.V().count()") == [3]


def test_the_catalog_carries_the_partition_key_and_the_schema_tells_the_model(fake: FakeCosmos) -> None:
    catalog = engine_on(fake, partition_key="code").catalog()
    assert catalog.partition_key == "code"
    assert [v.name for v in catalog.vertex_labels] == ["airport"]
    assert catalog.edge_labels[0].out_labels == ["airport"]
    text = render_graph_schema(catalog)
    assert "partitioned by the property 'code'" in text and "has('code', value)" in text
    assert all(q.startswith(("g.V().limit(10000)", "g.E().limit(10000)")) for q in fake.queries[:2])


@pytest.mark.parametrize(
    ("endpoint", "cloud", "says"),
    [
        (
            "wss://evil.example.com:443/",
            "AzureCloud",
            "is not in the AzureCloud cloud's Cosmos DB Gremlin domain",
        ),
        ("wss://acct.gremlin.cosmos.azure.us:443/", "AzureCloud", "is not in the AzureCloud cloud's"),
        ("wss://acct.gremlin.cosmos.azure.com:8080/", "AzureCloud", "port 443 only"),
        ("wss://me:pw@acct.gremlin.cosmos.azure.com/", "AzureCloud", "user name or password"),
        ("wss://acct.gremlin.cosmos.azure.com/dbs/x", "AzureCloud", "fields of their own"),
        ("wss://10.0.0.1:443/", "AzureCloud", "is not a Gremlin endpoint host name"),
    ],
)
def test_an_endpoint_outside_the_clouds_cosmos_domains_is_refused(
    endpoint: str, cloud: str, says: str
) -> None:
    with pytest.raises(QueryError) as raised:
        CosmosGraphEngine(endpoint, "db", "g", key="k", cloud=cloud)
    assert raised.value.code == "source_misconfigured"
    assert says in raised.value.message


def test_a_cosmos_source_opens_with_the_key_its_variable_holds(fake: FakeCosmos) -> None:
    source = CosmosSource(
        kind="cosmos", name="routes", location=ENDPOINT, database="db", graph="routes", key_env="ROUTES_KEY"
    )
    opened = OPENERS[("cosmos", "gremlin")](source, CloudAccess(secret={"ROUTES_KEY": "the-key"}.get))
    assert isinstance(opened, CosmosGraphEngine)
    with pytest.raises(QueryError) as raised:
        OPENERS[("cosmos", "gremlin")](source, CloudAccess())
    assert raised.value.code == "source_misconfigured" and "$ROUTES_KEY" in raised.value.message


SHAPES = [
    "g.V().hasLabel('airport').values('code')",
    "g.V().has('airport','runways',gt(3)).values('city')",
    "g.V().has('code', within('AUS','IAH')).values('runways')",
    "g.V().has('city', TextP.startingWith('Da')).values('code')",
    "g.V().has('code','AUS').repeat(out('route')).times(2).values('code')",
    "g.V().has('code','AUS').repeat(out('route').simplePath()).until(has('code','IAH')).path().by('code')",
    "g.V().hasLabel('airport').order().by('lat', desc).values('code')",
    "g.V().hasLabel('airport').project('c','n').by('code').by(out('route').count())",
    "g.V().hasLabel('airport').group().by('code').by('runways')",
    "g.V().has('code','DFW').union(out('route'), in('route')).dedup().values('code')",
    "g.V().has('code','AUS').coalesce(out('route').has('code','XXX'), out('route')).values('code')",
    "g.V().hasLabel('airport').choose(values('runways').is(gt(4)), constant('big'), constant('small'))",
    "g.E().hasLabel('route').values('dist').sum()",
    "g.V().hasLabel('airport').values('runways').mean()",
    "g.V().has('code','DFW').outE('route').inV().values('code')",
    "g.V().hasLabel('airport').where(out('route').count().is(gt(1))).values('code')",
]


@pytest.mark.parametrize("query", SHAPES)
def test_each_shape_answers_through_cosmos_as_the_embedded_engine_does(
    files: Path, fake: FakeCosmos, query: str
) -> None:
    """The string sent to Cosmos DB says what the model wrote: parsed back and run on the same
    graph, it gives the embedded engine's answer."""
    embedded = GraphEngine(graph_source(files))
    assert values(engine_on(fake), query) == [
        row[0] for row in embedded.execute(query, max_rows=100, timeout_s=10).rows
    ]
