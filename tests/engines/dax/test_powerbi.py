"""The Power BI connector at its HTTP seam: executeQueries requests and answers shaped as the
service sends them (httpx.MockTransport), per cloud; nothing here reaches Power BI."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken

from loom.engines.contracts import QueryError
from loom.engines.dax.powerbi import PowerBIEngine

DATASET = "cfafbeb1-8037-4d0c-896e-a46fb27ff229"
WORKSPACE = "f089354e-8366-4e18-aea3-4cb4a3a50b48"


class Credential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("token-abc", 2_000_000_000)


def answer(rows: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, json={"results": [{"tables": [{"rows": rows}]}]})


def engine(handler: Any, credential: Credential, **options: Any) -> PowerBIEngine:
    return PowerBIEngine(
        DATASET,
        workspace_id=WORKSPACE,
        credential=credential,
        transport=httpx.MockTransport(handler),
        **options,
    )


def test_a_query_is_sent_to_the_dataset_and_the_rows_come_back_named_as_power_bi_names_them() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(
            [
                {"Product[Category]": "Bikes", "[Revenue]": 12.5},
                {"Product[Category]": "Gear", "[Revenue]": None},
            ]
        )

    credential = Credential()
    result = engine(handler, credential, impersonated_user="ann@contoso.com").execute(
        'EVALUATE SUMMARIZECOLUMNS(Product[Category], "Revenue", [Revenue])', max_rows=10, timeout_s=30
    )
    assert [c.name for c in result.columns] == ["Product[Category]", "[Revenue]"]
    assert result.rows == [["Bikes", 12.5], ["Gear", None]] and result.engine == "powerbi"
    request = seen[0]
    assert str(request.url) == (
        f"https://api.powerbi.com/v1.0/myorg/groups/{WORKSPACE}/datasets/{DATASET}/executeQueries"
    )
    assert request.headers["authorization"] == "Bearer token-abc"
    body = json.loads(request.content)
    assert (
        body["queries"][0]["query"].startswith("EVALUATE")
        and body["impersonatedUserName"] == "ann@contoso.com"
    )
    assert credential.scopes == ["https://analysis.windows.net/powerbi/api/.default"]


@pytest.mark.parametrize(
    ("environment", "host", "scope"),
    [
        ("gcc", "api.powerbigov.us", "https://analysis.usgovcloudapi.net/powerbi/api/.default"),
        (
            "gcc-high",
            "api.high.powerbigov.us",
            "https://high.analysis.usgovcloudapi.net/powerbi/api/.default",
        ),
        ("dod", "api.mil.powerbigov.us", "https://mil.analysis.usgovcloudapi.net/powerbi/api/.default"),
    ],
)
def test_government_clouds_have_their_own_endpoint_and_token_audience(
    environment: str, host: str, scope: str
) -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return answer([{"[n]": 1}])

    credential = Credential()
    engine(handler, credential, environment=environment).execute(
        'EVALUATE ROW("n", 1)', max_rows=1, timeout_s=5
    )
    assert hosts == [host] and credential.scopes == [scope]


def test_rows_and_bytes_are_bounded_as_for_every_engine() -> None:
    rows = [{"T[x]": i} for i in range(50)]
    result = engine(lambda r: answer(rows), Credential()).execute("EVALUATE T", max_rows=10, timeout_s=5)
    assert result.row_count == 10 and result.truncated_by == "rows"


def test_service_errors_keep_power_bis_words_and_a_stable_code() -> None:
    error = {
        "error": {
            "code": "DatasetExecuteQueriesError",
            "pbi.error": {
                "code": "DatasetExecuteQueriesError",
                "details": [
                    {
                        "code": "DetailsMessage",
                        "detail": {"type": 1, "value": "Query (1, 10) Cannot find table 'Salez'."},
                    }
                ],
            },
        }
    }
    codes = {
        400: "execution_error",
        401: "source_unauthorized",
        404: "source_misconfigured",
        429: "rate_limited",
    }
    for status, code in (*codes.items(), (503, "source_unavailable")):
        eng = engine(
            lambda r, s=status: httpx.Response(s, json=error, headers={"Retry-After": "7"}), Credential()
        )
        with pytest.raises(QueryError) as failed:
            eng.execute("EVALUATE Salez", max_rows=5, timeout_s=5)
        assert failed.value.code == code
        if status == 400:
            assert "Cannot find table 'Salez'" in failed.value.message
        if status == 429:
            assert "retry after 7 s" in failed.value.message


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("EVALUATE INFO.TABLES()", "forbidden_function"),
        ("SELECT * FROM $SYSTEM.DISCOVER_SESSIONS", "parse_error"),
    ],
)
def test_metadata_and_non_dax_queries_are_never_sent(query: str, code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("sent")

    with pytest.raises(QueryError) as refused:
        engine(handler, Credential()).execute(query, max_rows=5, timeout_s=5)
    assert refused.value.code == code


def test_a_slow_service_is_a_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(QueryError) as failed:
        engine(handler, Credential()).execute("EVALUATE T", max_rows=5, timeout_s=2)
    assert failed.value.code == "timeout"


def test_the_catalog_comes_from_the_info_view_functions_without_hidden_things() -> None:
    views = {
        "TABLES": [
            {"[Name]": "Sales", "[IsHidden]": False, "[Description]": "lines"},
            {"[Name]": "Keys", "[IsHidden]": True},
        ],
        "COLUMNS": [
            {"[Table]": "Sales", "[Name]": "Amount", "[DataType]": "Decimal", "[IsHidden]": False},
            {"[Table]": "Sales", "[Name]": "Key", "[DataType]": "Int64", "[IsHidden]": True},
        ],
        "MEASURES": [
            {
                "[Table]": "Sales",
                "[Name]": "Revenue",
                "[Expression]": "SUM(Sales[Amount])",
                "[IsHidden]": False,
            }
        ],
        "RELATIONSHIPS": [],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        query = json.loads(request.content)["queries"][0]["query"]
        return answer(views[query.split("INFO.VIEW.")[1].split("(")[0]])

    catalog = engine(handler, Credential()).catalog()
    assert [t.name for t in catalog.tables] == ["Sales"]
    assert [c.name for c in catalog.tables[0].columns] == ["Amount"]
    assert [m.name for m in catalog.measures] == ["Revenue"]


def test_info_functions_are_sent_only_when_the_source_allows_them() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["queries"][0]["query"])
        return answer([{"[Name]": "Sales"}])

    allowed = engine(handler, Credential(), allow_info=True)
    assert allowed.validate("EVALUATE INFO.TABLES()") == []
    assert allowed.execute("EVALUATE INFO.TABLES()", max_rows=5, timeout_s=5).rows == [["Sales"]]
    assert sent == ["EVALUATE INFO.TABLES()"]
    with pytest.raises(QueryError) as refused:  # a DMV is still not DAX
        allowed.execute("SELECT * FROM $SYSTEM.DISCOVER_SESSIONS", max_rows=5, timeout_s=5)
    assert refused.value.code == "parse_error" and len(sent) == 1


def test_a_powerbi_source_opens_only_in_its_own_cloud() -> None:
    from loom.engines.registry import CloudAccess, EnginePool
    from loom.engines.sources import PowerBISource

    source = PowerBISource(
        kind="powerbi", name="fin", location=WORKSPACE, dataset_id=DATASET, environment="gcc-high"
    )
    pool = EnginePool(CloudAccess(cloud="AzureCloud", credential=Credential))
    with pytest.raises(QueryError) as refused:
        pool.engine(source, "dax")
    assert refused.value.code == "source_misconfigured" and "AzureUSGovernment" not in refused.value.message
    gov = EnginePool(CloudAccess(cloud="AzureUSGovernment", credential=Credential))
    opened = gov.engine(source, "dax")
    assert isinstance(opened, PowerBIEngine) and opened.url.startswith("https://api.high.powerbigov.us/")
