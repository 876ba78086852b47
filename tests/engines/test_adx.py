"""AdxEngine at the SDK's HTTP seam: what is sent, what is refused before anything is sent, sign-in,
types and values, bounds, time limits, errors, the catalog, and the `loom query kql` path.

Nothing here reaches Azure. azure-kusto-data runs for real down to its `requests` session, whose
transport is a scripted fake (`FakeKusto`) answering with v2 query frames (DataSetHeader, DataTable
for QueryProperties, PrimaryResult and QueryCompletionInformation, DataSetCompletion) and v1
management tables, built after the documented formats, with the documented OneApiError bodies.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("azure.kusto.data", reason="azure-kusto-data is not installed: pip install '.[adx]'")

import requests  # noqa: E402
from azure.core.credentials import AccessToken  # noqa: E402
from requests.adapters import BaseAdapter  # noqa: E402
from typer.testing import CliRunner  # noqa: E402
from urllib3 import HTTPResponse  # noqa: E402

from loom.engines.contracts import Engine, QueryError  # noqa: E402
from loom.engines.kql.adx import engine as adx_engine  # noqa: E402
from loom.engines.kql.adx.client import UntrustedHost  # noqa: E402
from loom.engines.kql.adx.engine import AdxEngine  # noqa: E402

CLUSTER = "https://help.kusto.windows.net"
GOV_CLUSTER = "https://ops.usgovvirginia.kusto.usgovcloudapi.net"
PUBLIC_SCOPE = "https://kusto.kusto.windows.net/.default"
GOV_SCOPE = "https://kusto.kusto.usgovcloudapi.net/.default"

# --- the fake service ---------------------------------------------------------------------------


class FakeCredential:
    def __init__(self) -> None:
        self.scopes: list[str] = []
        self.closed = False

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(f"token-{len(self.scopes)}", int(time.time()) + 3600)

    def close(self) -> None:
        self.closed = True


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    timeout: Any

    @property
    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = json.loads(self.body["properties"])["Options"]
        return options


@dataclass
class Reply:
    body: bytes
    status: int = 200
    stall: threading.Event | None = None  # the body's read blocks until this is set (or closed)


Answer = Callable[[Sent], Reply]


@dataclass
class FakeKusto(BaseAdapter):
    """The transport under the SDK's session: records each request and answers it."""

    answer: Answer = field(default_factory=lambda: lambda sent: query_reply())
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        body = json.loads(request.body if isinstance(request.body, bytes | str) else b"{}")
        headers = {k: str(v) for k, v in request.headers.items()}
        sent = Sent(request.method or "", request.url or "", headers, body, kwargs.get("timeout"))
        self.sent.append(sent)
        reply = self.answer(sent)
        response = requests.Response()
        response.status_code = reply.status
        response.url = sent.url
        response.request = request
        response.headers["Content-Type"] = "application/json"
        stream: io.RawIOBase | io.BytesIO = (
            _Stalling(reply.body, reply.stall) if reply.stall else io.BytesIO(reply.body)
        )
        response.raw = HTTPResponse(body=stream, preload_content=False, status=reply.status)
        return response

    def close(self) -> None:
        return None


class _Stalling(io.RawIOBase):
    """A body whose first read waits (a server that has not finished), until closed."""

    def __init__(self, data: bytes, stall: threading.Event) -> None:
        self._data = io.BytesIO(data)
        self._stall = stall

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._stall.wait(10):
            raise AssertionError("the read was never cut")
        raise OSError("connection closed")

    def close(self) -> None:
        self._stall.set()
        super().close()


def column(name: str, kusto_type: str) -> dict[str, str]:
    return {"ColumnName": name, "ColumnType": kusto_type}


def query_reply(
    columns: list[dict[str, str]] | None = None,
    rows: list[list[Any]] | None = None,
    *,
    partial_error: dict[str, Any] | None = None,
) -> Reply:
    """A v2 response: the frames a non-progressive query returns, the partial failure (if any)
    as Kusto reports it, inside the primary result's rows and in DataSetCompletion."""
    primary_rows: list[Any] = list(rows if rows is not None else [["TEXAS", 12]])
    if partial_error:
        primary_rows.append({"OneApiErrors": [{"error": partial_error}]})
    frames = [
        {"FrameType": "DataSetHeader", "IsProgressive": False, "Version": "v2.0"},
        {
            "FrameType": "DataTable",
            "TableId": 0,
            "TableKind": "QueryProperties",
            "TableName": "@ExtendedProperties",
            "Columns": [column("TableId", "int"), column("Key", "string"), column("Value", "dynamic")],
            "Rows": [[1, "Visualization", {"Visualization": None}]],
        },
        {
            "FrameType": "DataTable",
            "TableId": 1,
            "TableKind": "PrimaryResult",
            "TableName": "PrimaryResult",
            "Columns": columns or [column("State", "string"), column("n", "long")],
            "Rows": primary_rows,
        },
        {
            "FrameType": "DataTable",
            "TableId": 2,
            "TableKind": "QueryCompletionInformation",
            "TableName": "QueryCompletionInformation",
            "Columns": [column("Level", "int"), column("LevelName", "string"), column("Payload", "string")],
            "Rows": [[4, "Info", '{"Count":1,"Text":"Query completed successfully"}']],
        },
        {"FrameType": "DataSetCompletion", "HasErrors": bool(partial_error), "Cancelled": False}
        | ({"OneApiErrors": [{"error": partial_error}]} if partial_error else {}),
    ]
    return Reply(json.dumps(frames).encode())


def one_api_error(status: int, code: str, kind: str, message: str) -> Reply:
    """A failed request's body, as documented for the v2 endpoint."""
    error = {
        "error": {
            "code": code,
            "message": "Request is invalid and cannot be executed.",
            "@type": kind,
            "@message": message,
            "@context": {"clientRequestId": "loom-data-agents;x", "activityId": "a"},
            "@permanent": True,
        }
    }
    return Reply(json.dumps(error).encode(), status)


TOO_LARGE = {
    "code": "LimitsExceeded",
    "message": "Request is invalid and cannot be executed.",
    "@type": "Kusto.Data.Exceptions.KustoServicePartialQueryFailureLimitsExceededException",
    "@message": "Query execution has exceeded the allowed limits (80DA0003): The results of this query "
    "exceed the set limit of 3 records, so not all records were returned "
    "(E_QUERY_RESULT_SET_TOO_LARGE, 0x80DA0003).",
    "@permanent": False,
}


def _engine(fake: FakeKusto, credential: FakeCredential | None = None, **kwargs: Any) -> AdxEngine:
    kwargs.setdefault("cloud", "AzureCloud")
    return AdxEngine(
        kwargs.pop("cluster", CLUSTER),
        "Samples",
        credential=credential or FakeCredential(),
        transport=fake,
        **kwargs,
    )


@pytest.fixture
def fake() -> FakeKusto:
    return FakeKusto()


# --- what is sent -------------------------------------------------------------------------------


def test_is_an_engine(fake: FakeKusto) -> None:
    engine = _engine(fake)
    assert isinstance(engine, Engine)
    assert (engine.name, engine.language, engine.dialect, engine.dialects) == ("adx", "kql", "kql", {"kql"})


def test_the_query_goes_to_the_database_with_the_limits_as_request_properties(fake: FakeKusto) -> None:
    now = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    query = "StormEvents | summarize n = count() by State"
    _engine(fake).execute(query, max_rows=10, timeout_s=5, now=now, max_bytes=4096)
    [sent] = fake.sent  # one request: no metadata lookup, no second try
    assert (sent.method, sent.url) == ("POST", f"{CLUSTER}/v2/rest/query")
    assert (sent.body["db"], sent.body["csl"]) == ("Samples", query)
    options = sent.options
    assert options["truncationmaxrecords"] == 11  # one past the cap: a cut is seen
    assert options["truncationmaxsize"] == 8192
    assert options["servertimeout"] == "0:00:05"
    assert options["query_now"] == "2025-03-01T12:00:00.0000000Z"
    for switch in ("request_readonly", "request_readonly_hardline", "request_remote_entities_disabled"):
        assert options[switch] is True
    assert options["results_progressive_enabled"] is False
    assert sent.headers["x-ms-app"] == "loom-data-agents"
    assert sent.headers["x-ms-user"] == "loom-data-agents"
    assert sent.headers["x-ms-client-request-id"].startswith("loom-data-agents;")


def test_without_now_the_server_keeps_its_clock(fake: FakeKusto) -> None:
    _engine(fake).execute("StormEvents | take 1", max_rows=1, timeout_s=5)
    assert "query_now" not in fake.sent[0].options


def test_the_client_waits_no_longer_than_the_time_limit_and_a_grace(fake: FakeKusto) -> None:
    _engine(fake).execute("StormEvents | take 1", max_rows=1, timeout_s=3)
    assert fake.sent[0].timeout == (3 + adx_engine.CLIENT_GRACE_S, 3 + adx_engine.CLIENT_GRACE_S)


# --- sign-in ------------------------------------------------------------------------------------


def test_the_bearer_token_is_for_the_public_kusto_scope_and_kept_between_queries(fake: FakeKusto) -> None:
    credential = FakeCredential()
    engine = _engine(fake, credential)
    engine.execute("StormEvents | take 1", max_rows=1, timeout_s=5)
    engine.execute("StormEvents | take 2", max_rows=2, timeout_s=5)
    assert credential.scopes == [PUBLIC_SCOPE]  # asked once, kept until near its expiry
    assert [s.headers["Authorization"] for s in fake.sent] == ["Bearer token-1", "Bearer token-1"]


def test_azure_government_signs_in_for_its_own_kusto_scope(fake: FakeKusto) -> None:
    credential = FakeCredential()
    _engine(fake, credential, cluster=GOV_CLUSTER, cloud="AzureUSGovernment").execute(
        "T | take 1", max_rows=1, timeout_s=5
    )
    assert credential.scopes == [GOV_SCOPE]
    assert fake.sent[0].url == f"{GOV_CLUSTER}/v2/rest/query"


def test_closing_the_engine_leaves_the_pools_credential_open(fake: FakeKusto) -> None:
    credential = FakeCredential()
    engine = _engine(fake, credential)
    engine.execute("T | take 1", max_rows=1, timeout_s=5)
    engine.close()
    assert not credential.closed  # the SDK closes its credential with the client


def test_a_failed_sign_in_is_reported_without_the_token(fake: FakeKusto) -> None:
    class Failing(FakeCredential):
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise RuntimeError("AADSTS7000215: Invalid client secret provided. client_secret=s3cr3t-value")

    engine = _engine(fake, Failing())
    with pytest.raises(QueryError) as raised:
        engine.execute("T | take 1", max_rows=1, timeout_s=5)
    assert raised.value.code == "source_unavailable"
    assert "Could not sign in to ADX" in raised.value.message and "s3cr3t" not in raised.value.message
    assert fake.sent == [] and engine.problem() == raised.value.message


# --- refused before anything is sent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (".show tables", "not_read_only"),
        (".set-or-replace T <| T", "not_read_only"),
        ("// note\n.drop table T", "not_read_only"),
        ("T | evaluate python(typeof(*), 'result = df')", "forbidden_operator"),
        ("externaldata (x: string) [@'https://evil.example.com/x.csv']", "file_access"),
        ("cluster('other.kusto.windows.net').database('db').T", "cross_source"),
        ("database('Other').T | take 1", "cross_source"),
        ("set notruncation; T", "forbidden_syntax"),
        ("T | where", "parse_error"),
        ("", "parse_error"),
    ],
)
def test_what_may_not_run_is_refused_before_any_request(fake: FakeKusto, query: str, code: str) -> None:
    engine = _engine(fake)
    with pytest.raises(QueryError) as raised:
        engine.execute(query, max_rows=10, timeout_s=5)
    assert raised.value.code == code
    assert engine.validate(query)[0].code == code
    assert fake.sent == []


def test_another_dialect_is_refused(fake: FakeKusto) -> None:
    with pytest.raises(QueryError) as raised:
        _engine(fake).execute("T", max_rows=1, timeout_s=5, dialect="tsql")
    assert raised.value.code == "unsupported_dialect" and fake.sent == []


@pytest.mark.parametrize(
    "cluster",
    [
        "http://help.kusto.windows.net",
        "https://evil.com",
        "https://help.kusto.windows.net.evil.com",
        "https://evilkusto.windows.net",
        "https://kusto.windows.net",
        "https://help.kusto.windows.net@evil.com",
        "https://evil.com@help.kusto.windows.net",
        "https://evil.com\\@help.kusto.windows.net",
        "https://help.kusto.windows.net:8443",
        "https://20.42.0.1",
        "https://[::1]",
        "https://localhost",
        "https://help.kusto.windows.net/../evil",
        "https://help.kusto.windows.net?x=evil.com",
        "https://help.kusto.windows.net\n.evil.com",
        "https://help.kusto.windows.net.",
        "https://hélp.kusto.windows.net",
        "https://ops.usgovvirginia.kusto.usgovcloudapi.net",  # a Government cluster, public cloud
    ],
)
def test_a_cluster_outside_the_clouds_kusto_domains_is_refused(fake: FakeKusto, cluster: str) -> None:
    with pytest.raises(QueryError) as raised:
        _engine(fake, cluster=cluster)
    assert raised.value.code == "source_misconfigured"
    assert fake.sent == []


@pytest.mark.parametrize(
    ("cluster", "says"),
    [
        ("http://help.kusto.windows.net", "must start with https://"),
        ("https://evil.com@help.kusto.windows.net", "may not carry a user name"),
        ("https://help.kusto.windows.net:8443", "may not name a port"),
        ("https://20.42.0.1", "is not a cluster host name"),
        ("https://evil.com", "evil.com is not in the AzureCloud cloud's Kusto domain"),
    ],
)
def test_a_refused_cluster_says_why(fake: FakeKusto, cluster: str, says: str) -> None:
    with pytest.raises(QueryError, match="ADX source refused") as raised:
        _engine(fake, cluster=cluster)
    assert says in raised.value.message


def test_the_transport_sends_nothing_to_another_host(fake: FakeKusto) -> None:
    engine = _engine(fake)
    session = engine._client._session
    assert isinstance(session, requests.Session)
    for url in ("https://evil.example.com/v2/rest/query", "http://help.kusto.windows.net/v2/rest/query"):
        with pytest.raises(UntrustedHost):
            session.post(url, json={})
    assert fake.sent == []


# --- results ------------------------------------------------------------------------------------

ALL_TYPES = [
    column("l", "long"),
    column("i", "int"),
    column("r", "real"),
    column("d", "decimal"),
    column("exact", "decimal"),
    column("t", "datetime"),
    column("span", "timespan"),
    column("s", "string"),
    column("b", "bool"),
    column("dyn", "dynamic"),
    column("g", "guid"),
]
ALL_VALUES = [
    9007199254740993,  # more than a float holds
    3,
    1.5,
    "12.50",
    "0.1000000000000000055511151231257827",
    "2024-01-01T12:00:00.1234567Z",
    "1.02:03:04.5000000",
    "TEXAS",
    True,
    {"a": [1, 2], "b": None},
    "8a1c3ed6-5b1e-4f55-9c3a-2b7f2e5d3c11",
]


def test_results_carry_kusto_types_and_exact_json_safe_values(fake: FakeKusto) -> None:
    fake.answer = lambda sent: query_reply(ALL_TYPES, [ALL_VALUES, [None] * len(ALL_VALUES)])
    result = _engine(fake).execute("T", max_rows=10, timeout_s=5)
    assert [(c.name, c.type) for c in result.columns] == [
        (c["ColumnName"], c["ColumnType"]) for c in ALL_TYPES
    ]
    assert result.rows[0] == [
        9007199254740993,
        3,
        1.5,
        12.5,  # a float holds it exactly
        "0.1000000000000000055511151231257827",  # a float would not: its text
        "2024-01-01T12:00:00.1234567Z",  # all seven digits
        "1.02:03:04.5000000",  # Kusto's timespan text
        "TEXAS",
        True,
        {"a": [1, 2], "b": None},  # a JSON value, not JSON text
        "8a1c3ed6-5b1e-4f55-9c3a-2b7f2e5d3c11",
    ]
    assert result.rows[1] == [None] * len(ALL_VALUES)
    assert (result.engine, result.query, result.row_count, result.truncated) == ("adx", "T", 2, False)
    json.dumps(result.model_dump())  # JSON-safe throughout


def test_rows_past_the_cap_are_not_read_and_the_result_says_truncated(fake: FakeKusto) -> None:
    # The service sends max_rows + 1 rows, then its truncation notice: the notice is never reached.
    rows = [[f"S{i}", i] for i in range(4)]
    fake.answer = lambda sent: query_reply(rows=rows, partial_error=TOO_LARGE)
    result = _engine(fake).execute("T", max_rows=3, timeout_s=5)
    assert result.rows == rows[:3]
    assert (result.truncated, result.truncated_by) == (True, "rows")


def test_the_services_size_cut_before_ours_is_reported_as_truncated_by_bytes(fake: FakeKusto) -> None:
    fake.answer = lambda sent: query_reply(rows=[["A", 1], ["B", 2]], partial_error=TOO_LARGE)
    result = _engine(fake).execute("T", max_rows=100, timeout_s=5)
    assert result.rows == [["A", 1], ["B", 2]]
    assert (result.truncated, result.truncated_by) == (True, "bytes")


def test_the_byte_budget_bounds_the_rows_read(fake: FakeKusto) -> None:
    rows = [["x" * 1000, i] for i in range(50)]
    fake.answer = lambda sent: query_reply(rows=rows)
    result = _engine(fake).execute("T", max_rows=1000, timeout_s=5, max_bytes=5000)
    assert 1 <= result.row_count < 6 and result.truncated_by == "bytes"
    assert len(json.dumps(result.rows)) < 6000


def test_an_empty_result_keeps_its_columns(fake: FakeKusto) -> None:
    fake.answer = lambda sent: query_reply(rows=[])
    result = _engine(fake).execute("T | take 0", max_rows=5, timeout_s=5)
    assert [c.type for c in result.columns] == ["string", "long"] and result.rows == []


# --- failures -----------------------------------------------------------------------------------


def test_a_server_timeout_is_reported_as_timeout(fake: FakeKusto) -> None:
    fake.answer = lambda sent: one_api_error(
        504,
        "Request_ExecutionTimeout",
        "Kusto.Data.Exceptions.KustoRequestExecutionTimeoutException",
        "Request execution timeout",
    )
    with pytest.raises(QueryError) as raised:
        _engine(fake).execute("T", max_rows=5, timeout_s=2)
    assert raised.value.code == "timeout" and "2 s time limit" in raised.value.message


def test_a_client_side_timeout_is_reported_as_timeout(fake: FakeKusto) -> None:
    def no_answer(sent: Sent) -> Reply:
        raise requests.ReadTimeout("read timed out")

    fake.answer = no_answer
    with pytest.raises(QueryError) as raised:
        _engine(fake).execute("T", max_rows=5, timeout_s=1)
    assert raised.value.code == "timeout"


def test_a_result_that_stalls_is_cut_at_the_time_limit(
    fake: FakeKusto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adx_engine, "CLIENT_GRACE_S", 0.0)
    stall = threading.Event()
    fake.answer = lambda sent: Reply(query_reply().body, stall=stall)
    started = time.monotonic()
    with pytest.raises(QueryError) as raised:
        _engine(fake).execute("T", max_rows=5, timeout_s=0.3)
    assert raised.value.code == "timeout"
    assert stall.is_set() and time.monotonic() - started < 5  # the response was closed under the reader


@pytest.mark.parametrize(
    ("reply", "code", "says"),
    [
        (
            one_api_error(
                400,
                "General_BadRequest",
                "Kusto.Data.Exceptions.SyntaxException",
                "Request is invalid and cannot be processed: Syntax error: SYN0002: A recognition error "
                "occurred. [line:position=1:9]",
            ),
            "parse_error",
            "ADX: Syntax error: SYN0002: A recognition error occurred. [line:position=1:9]",
        ),
        (
            one_api_error(
                400,
                "General_BadRequest",
                "Kusto.Data.Exceptions.KustoBadRequestException",
                "Request is invalid and cannot be processed: Semantic error: SEM0100: 'project' operator: "
                "Failed to resolve scalar expression named 'Stat'",
            ),
            "unknown_column",
            "Failed to resolve scalar expression named 'Stat'",
        ),
        (
            one_api_error(
                429, "TooManyRequests", "Kusto.DataNode.Exceptions.ThrottledException", "throttled"
            ),
            "source_busy",
            "Try again in a minute",
        ),
        (
            one_api_error(401, "Unauthorized", "Kusto.Data.Exceptions.KustoRequestDeniedException", "x"),
            "source_unavailable",
            "refused the sign-in token (401)",
        ),
        (
            one_api_error(
                403,
                "Forbidden",
                "Kusto.Data.Exceptions.KustoRequestDeniedException",
                "Principal 'aadapp=1' is not authorized to access database 'Samples'.",
            ),
            "access_denied",
            "is not authorized to access database 'Samples'",
        ),
        (
            one_api_error(
                500,
                "LimitsExceeded",
                "Kusto.Data.Exceptions.KustoServicePartialQueryFailureLowMemoryConditionException",
                "Query execution lacks memory resources to complete (80DA0007): E_LOW_MEMORY_CONDITION",
            ),
            "execution_error",
            "E_LOW_MEMORY_CONDITION",
        ),
    ],
)
def test_service_errors_keep_the_servers_message_under_a_stable_code(
    fake: FakeKusto, reply: Reply, code: str, says: str
) -> None:
    fake.answer = lambda sent: reply
    with pytest.raises(QueryError) as raised:
        _engine(fake).execute("T | project Stat", max_rows=5, timeout_s=5)
    assert raised.value.code == code
    assert says in raised.value.message


def test_a_failure_after_the_first_rows_is_an_error_not_a_short_result(fake: FakeKusto) -> None:
    failure = TOO_LARGE | {
        "code": "LimitsExceeded",
        "@message": "Query execution lacks memory resources to complete (80DA0007): E_LOW_MEMORY_CONDITION",
    }
    fake.answer = lambda sent: query_reply(rows=[["A", 1]], partial_error=failure)
    with pytest.raises(QueryError) as raised:
        _engine(fake).execute("T", max_rows=100, timeout_s=5)
    assert raised.value.code == "execution_error" and "E_LOW_MEMORY_CONDITION" in raised.value.message


def test_an_unknown_table_names_the_known_ones_closest_first(fake: FakeKusto) -> None:
    engine = _engine(fake)
    fake.answer = lambda sent: schema_reply() if "mgmt" in sent.url else unknown_table()
    engine.catalog()
    with pytest.raises(QueryError) as raised:
        engine.execute("Storms | take 1", max_rows=5, timeout_s=5)
    assert raised.value.code == "unknown_table"
    assert "Failed to resolve table expression named 'Storms'" in raised.value.message
    assert raised.value.problems[0].suggestions[0] == "StormEvents"


def unknown_table() -> Reply:
    return one_api_error(
        400,
        "General_BadRequest",
        "Kusto.Data.Exceptions.KustoBadRequestException",
        "Request is invalid and cannot be processed: Semantic error: SEM0100: 'table' operator: Failed to "
        "resolve table expression named 'Storms'",
    )


# --- catalog ------------------------------------------------------------------------------------

SCHEMA = {
    "Databases": {
        "Samples": {
            "Name": "Samples",
            "Tables": {
                "StormEvents": {
                    "Name": "StormEvents",
                    "EntityType": "Table",
                    "DocString": "US storm events, 2007",
                    "OrderedColumns": [
                        {"Name": "StartTime", "Type": "System.DateTime", "CslType": "datetime"},
                        {
                            "Name": "State",
                            "Type": "System.String",
                            "CslType": "string",
                            "DocString": "US state, upper case",
                        },
                        {"Name": "DamageProperty", "Type": "System.Int32", "CslType": "int"},
                        {"Name": "StormSummary", "Type": "System.Object", "CslType": "dynamic"},
                    ],
                }
            },
            "MaterializedViews": {
                "DailyStorms": {
                    "Name": "DailyStorms",
                    "OrderedColumns": [
                        {"Name": "Day", "CslType": "datetime"},
                        {"Name": "n", "CslType": "long"},
                    ],
                }
            },
            "ExternalTables": {"Archive": {"Name": "Archive", "OrderedColumns": []}},
            "Functions": {},
        }
    }
}


def schema_reply(schema: dict[str, Any] = SCHEMA) -> Reply:
    """A v1 management response: one table, one cell of JSON."""
    table = {
        "TableName": "Table_0",
        "Columns": [{"ColumnName": "DatabaseSchema", "DataType": "String", "ColumnType": "string"}],
        "Rows": [[json.dumps(schema)]],
    }
    return Reply(json.dumps({"Tables": [table]}).encode())


def test_the_catalog_is_read_with_the_schema_command_and_kept(fake: FakeKusto) -> None:
    fake.answer = lambda sent: schema_reply()
    engine = _engine(fake)
    assert engine.loaded_catalog() is None
    catalog = engine.catalog()
    [sent] = fake.sent
    assert (sent.url, sent.body["db"]) == (f"{CLUSTER}/v1/rest/mgmt", "Samples")
    assert sent.body["csl"] == ".show database ['Samples'] schema as json"
    assert sent.options["request_readonly"] is True
    assert [t.name for t in catalog.tables] == ["DailyStorms", "StormEvents"]  # no external table
    storms = catalog.tables[1]
    assert storms.description == "US storm events, 2007"
    assert [(c.name, c.type) for c in storms.columns] == [
        ("StartTime", "datetime"),
        ("State", "string"),
        ("DamageProperty", "int"),
        ("StormSummary", "dynamic"),
    ]
    assert storms.columns[1].description == "US state, upper case"
    assert engine.catalog() is catalog and engine.loaded_catalog() is catalog
    assert len(fake.sent) == 1  # kept: not read again


def test_a_catalog_that_cannot_be_read_is_the_engines_problem(fake: FakeKusto) -> None:
    fake.answer = lambda sent: one_api_error(401, "Unauthorized", "KustoRequestDeniedException", "no")
    engine = _engine(fake)
    with pytest.raises(QueryError) as raised:
        engine.catalog()
    assert raised.value.code == "source_unavailable" and engine.problem() == raised.value.message
    fake.answer = lambda sent: schema_reply()
    engine.catalog()
    assert engine.problem() is None


def test_a_schema_for_another_database_is_refused(fake: FakeKusto) -> None:
    fake.answer = lambda sent: schema_reply({"Databases": {"Other": {"Tables": {}}}})
    with pytest.raises(QueryError, match="no schema for the database 'Samples'"):
        _engine(fake).catalog()


# --- through the registry and `loom query kql` --------------------------------------------------


@pytest.fixture
def sources_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeKusto
) -> Iterator[FakeCredential]:
    """A sources file with an adx source; the engine pool's credential and transport are fakes."""
    from loom.cloud import azure_credential  # noqa: F401  (the name patched below)
    from loom.engines.kql.adx import client as adx_client

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOM_HOME", str(tmp_path))
    monkeypatch.setenv("LOOM_CONFIG", str(tmp_path / "absent.toml"))
    (tmp_path / "sources.yaml").write_text(
        "sources:\n"
        "  - {name: storms, kind: adx, location: 'https://help.kusto.windows.net', database: Samples}\n"
    )
    credential = FakeCredential()
    monkeypatch.setattr("loom.cloud.azure_credential", lambda settings: credential)
    real = adx_client.kusto_client
    monkeypatch.setattr(
        adx_engine,
        "kusto_client",
        lambda cluster, cloud, cred, transport=None: real(cluster, cloud, cred, fake),
    )
    yield credential


def test_loom_query_kql_runs_on_an_adx_source_by_name(sources_home: FakeCredential, fake: FakeKusto) -> None:
    from loom.cli.query import add_languages, query_app

    add_languages()
    result = CliRunner().invoke(
        query_app,
        ["kql", "--source", "storms", "--format", "json", "--max-rows", "5", "StormEvents | take 1"],
    )
    assert result.exit_code == 0, result.stdout
    payload = json.loads(result.stdout)
    assert (payload["engine"], payload["rows"]) == ("adx", [["TEXAS", 12]])
    assert fake.sent[0].options["truncationmaxrecords"] == 6
    assert sources_home.scopes == [PUBLIC_SCOPE]


def test_loom_query_kql_refuses_a_management_command_with_exit_2(
    sources_home: FakeCredential, fake: FakeKusto
) -> None:
    from loom.cli.query import add_languages, query_app

    add_languages()
    result = CliRunner().invoke(query_app, ["kql", "--source", "storms", "--format", "json", ".show tables"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "not_read_only"
    assert fake.sent == []
