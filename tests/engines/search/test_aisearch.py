"""Azure AI Search at the SDK's HTTP seam: azure-search-documents runs for real down to its
requests session, whose adapter answers as the service's REST API documents. Nothing reaches Azure."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip(
    "azure.search.documents", reason="azure-search-documents is not installed: pip install '.[search]'"
)

import requests  # noqa: E402
from azure.core.credentials import AccessToken  # noqa: E402
from azure.core.pipeline.transport import RequestsTransport  # noqa: E402
from requests.adapters import BaseAdapter  # noqa: E402
from urllib3 import HTTPResponse  # noqa: E402

from loom.engines.contracts import QueryError  # noqa: E402
from loom.engines.registry import OPENERS, CloudAccess, answerable, open_retriever  # noqa: E402
from loom.engines.search.aisearch.engine import AzureSearchRetriever  # noqa: E402
from loom.engines.sources import AiSearchSource  # noqa: E402

ENDPOINT = "https://acme.search.windows.net"
DOCS = [
    {
        "@search.score": 2.5,
        "id": "refunds",
        "title": "Refund policy",
        "content": "Goods may be returned in 30 days.",
    },
    {"@search.score": 1.1, "id": "laptops", "title": "Onboarding", "content": "New staff get a laptop."},
]


@dataclass
class FakeSearch(BaseAdapter):
    status: int = 200
    body: dict[str, Any] = field(default_factory=lambda: {"value": DOCS})
    sent: list[requests.PreparedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        response = requests.Response()
        response.status_code = self.status
        response.headers["Content-Type"] = "application/json; odata.metadata=none"
        data = json.dumps(self.body).encode()
        response.raw = HTTPResponse(body=io.BytesIO(data), preload_content=False, status=self.status)
        response.request, response.url = request, str(request.url)
        return response

    def close(self) -> None:
        pass


def retriever(fake: FakeSearch, **options: Any) -> AzureSearchRetriever:
    session = requests.Session()
    session.mount("https://", fake)
    settings: dict[str, Any] = {"key": "query-key", **options}
    return AzureSearchRetriever(
        ENDPOINT, "policies", transport=RequestsTransport(session=session), **settings
    )


def body(fake: FakeSearch) -> dict[str, Any]:
    sent = fake.sent[-1].body
    assert isinstance(sent, bytes | str)
    return json.loads(sent)


def test_a_search_sends_the_question_and_returns_passages() -> None:
    fake = FakeSearch()
    result = retriever(fake).search("return goods", top=5, timeout_s=10, filter="year ge 2024")
    sent = fake.sent[-1]
    assert sent.url is not None and sent.url.startswith(
        f"{ENDPOINT}/indexes('policies')/docs/search.post.search"
    )
    assert sent.headers["api-key"] == "query-key"
    assert body(fake) == {
        "search": "return goods",
        "filter": "year ge 2024",
        "top": 5,
        "select": "id,title,content",
    }
    assert [c.name for c in result.columns] == ["id", "chunk_id", "title", "text", "score"]
    assert result.rows[0] == ["refunds", "refunds", "Refund policy", "Goods may be returned in 30 days.", 2.5]


def test_hybrid_and_semantic_ranking_are_asked_for_when_configured() -> None:
    fake = FakeSearch(body={"value": [{**DOCS[1], "@search.rerankerScore": 3.2}]})
    result = retriever(fake, vector_field="content_vector", semantic_configuration="default").search(
        "laptops", top=3, timeout_s=10
    )
    sent = body(fake)
    assert sent["queryType"] == "semantic" and sent["semanticConfiguration"] == "default"
    assert sent["vectorQueries"] == [{"kind": "text", "text": "laptops", "k": 50, "fields": "content_vector"}]
    assert result.rows[0][4] == 3.2  # the semantic ranker's score


def test_entra_signs_in_for_the_clouds_search_audience() -> None:
    class Credential:
        scopes: list[str] = []

        def get_token(self, *scopes: str, **_: Any) -> AccessToken:
            self.scopes.extend(scopes)
            return AccessToken("tok", 9_999_999_999)

    fake = FakeSearch()
    credential = Credential()
    session = requests.Session()
    session.mount("https://", fake)
    gov = AzureSearchRetriever(
        "https://acme.search.azure.us", "policies", credential=credential, cloud="AzureUSGovernment",
        transport=RequestsTransport(session=session),
    )  # fmt: skip
    gov.search("x", top=1, timeout_s=5)
    assert credential.scopes == ["https://search.azure.us/.default"]
    assert fake.sent[-1].headers["Authorization"] == "Bearer tok"


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "invalid_filter"), (403, "access_denied"), (404, "source_misconfigured"), (503, "source_busy")],
)
def test_the_services_errors_come_back_with_stable_codes(status: int, code: str) -> None:
    fake = FakeSearch(
        status=status, body={"error": {"code": "x", "message": "Invalid expression: no field 'yeer'"}}
    )
    with pytest.raises(QueryError) as raised:
        retriever(fake).search("x", top=1, timeout_s=5)
    assert raised.value.code == code
    if status == 400:
        assert "no field 'yeer'" in raised.value.message


def test_bad_input_is_refused_before_anything_is_sent() -> None:
    fake = FakeSearch()
    bad = [
        ("", None, "invalid_query"),
        ("x" * 2_001, None, "invalid_query"),
        ("x", "year ge", "invalid_filter"),
    ]
    for query, filter, code in bad:
        with pytest.raises(QueryError) as raised:
            retriever(fake).search(query, top=1, timeout_s=5, filter=filter)
        assert raised.value.code == code
    assert fake.sent == []


@pytest.mark.parametrize(
    ("endpoint", "cloud", "says"),
    [
        ("https://evil.example.com", "AzureCloud", "not in the AzureCloud cloud's Azure AI Search domain"),
        ("https://acme.search.azure.us", "AzureCloud", "not in the AzureCloud cloud's"),
        ("http://acme.search.windows.net", "AzureCloud", "must start with https://"),
        ("https://acme.search.windows.net/indexes/x", "AzureCloud", "the index is its own field"),
    ],
)
def test_an_endpoint_outside_the_clouds_search_domains_is_refused(
    endpoint: str, cloud: str, says: str
) -> None:
    with pytest.raises(QueryError) as raised:
        AzureSearchRetriever(endpoint, "i", key="k", cloud=cloud)
    assert raised.value.code == "source_misconfigured" and says in raised.value.message


def test_an_aisearch_source_is_searched_not_queried() -> None:
    source = AiSearchSource(
        kind="aisearch", name="docs", location=ENDPOINT, index="policies", key_env="SEARCH_KEY"
    )
    assert answerable(source) == ("search",)
    assert not any(kind == "aisearch" for kind, _ in OPENERS)
    opened = open_retriever(source, CloudAccess(secret={"SEARCH_KEY": "k"}.get))
    assert isinstance(opened, AzureSearchRetriever)
    with pytest.raises(QueryError, match=r"\$SEARCH_KEY is not set"):
        open_retriever(source, CloudAccess())
