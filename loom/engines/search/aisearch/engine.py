"""AzureSearchRetriever: passages from an Azure AI Search index, through azure-search-documents.

The question goes as the search text; with a vector field configured, also as a vectorizable text
query (the index's own vectorizer embeds it) so the service ranks hybrid; with a semantic
configuration, the semantic ranker reorders the top and its score is the one shown. A filter is
OData, as the service takes it: its syntax is checked here first (odata-query's grammar), the field
names by the service (its 400 comes back as `invalid_filter` with its words). Results have the
embedded index's columns: `id`, `chunk_id`, `title`, `text`, `score`.
"""

from __future__ import annotations

import time
from itertools import islice

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.core.pipeline.transport import HttpTransport
from azure.search.documents import SearchClient
from azure.search.documents.models import VectorizableTextQuery

from loom.engines.contracts import Catalog, ColumnInfo, QueryError, ResultSet, TableInfo, Value
from loom.engines.errors import public_text
from loom.engines.hosts import PUBLIC
from loom.engines.search.aisearch.hosts import AUDIENCES, service_url
from loom.engines.search.filters import parse_filter
from loom.engines.search.passages import MAX_TOP, PASSAGE_COLUMNS, checked_query, passage_result

VECTOR_NEIGHBOURS = 50


class AzureSearchRetriever:
    name = "aisearch"

    def __init__(
        self,
        endpoint: str,
        index: str,
        *,
        key: str | None = None,
        credential: TokenCredential | None = None,
        cloud: str = PUBLIC,
        fields: tuple[str, str, str] = ("id", "title", "content"),
        vector_field: str | None = None,
        semantic_configuration: str | None = None,
        transport: HttpTransport | None = None,
    ) -> None:
        """`fields` names the index's id, title and text fields. `transport` replaces the HTTP
        transport under the SDK (tests)."""
        try:
            self.endpoint = service_url(endpoint, cloud)
        except ValueError as e:
            raise QueryError("source_misconfigured", f"Azure AI Search source refused: {e}") from e
        signed: AzureKeyCredential | TokenCredential
        if key is not None:
            signed, options = AzureKeyCredential(key), dict[str, object]()
        elif credential is not None:  # a token for the cloud's search audience
            signed, options = credential, {"audience": AUDIENCES[cloud]}
        else:
            raise QueryError("source_misconfigured", "an Azure AI Search source needs a key or a credential")
        if transport is not None:
            options["transport"] = transport
        self.index, self.fields = index, fields
        self.vector_field, self.semantic_configuration = vector_field, semantic_configuration
        self._client = SearchClient(self.endpoint, index, signed, **options)

    def search(self, query: str, *, top: int, timeout_s: float, filter: str | None = None) -> ResultSet:
        started = time.perf_counter()
        _check(query, filter)
        id_field, title_field, text_field = self.fields
        options: dict[str, object] = {
            "search_text": query, "filter": filter, "top": max(1, min(top, MAX_TOP)),
            "select": [id_field, title_field, text_field], "timeout": timeout_s,
        }  # fmt: skip
        if self.vector_field:
            options["vector_queries"] = [
                VectorizableTextQuery(
                    text=query, k_nearest_neighbors=VECTOR_NEIGHBOURS, fields=self.vector_field
                )
            ]
        if self.semantic_configuration:
            options |= {"query_type": "semantic", "semantic_configuration_name": self.semantic_configuration}
        try:
            found = list(islice(self._client.search(**options), MAX_TOP))  # type: ignore[arg-type]
        except HttpResponseError as e:
            raise _service_error(e) from None
        except ServiceRequestError as e:
            raise QueryError(
                "source_unavailable", f"Azure AI Search could not be reached: {type(e).__name__}"
            ) from e
        rows = [_row(d, self.fields) for d in found]
        return passage_result(rows, [], engine=self.name, query=query, filter=filter, started=started)

    def catalog(self) -> Catalog:
        columns = [ColumnInfo(name=n, type=t) for n, t in PASSAGE_COLUMNS if n != "score"]
        return Catalog(tables=[TableInfo(name=self.index, columns=columns)])

    def close(self) -> None:
        self._client.close()


def _row(found: dict[str, object], fields: tuple[str, str, str]) -> list[Value]:
    """One passage: the document's id twice (the service's documents are passages already)."""
    id_field, title_field, text_field = fields
    score = found.get("@search.reranker_score") or found.get("@search.score") or 0
    key = str(found.get(id_field, ""))
    title, text = str(found.get(title_field) or ""), str(found.get(text_field) or "")
    return [key, key, title, text, float(score)]  # type: ignore[arg-type]


def _check(query: str, filter: str | None) -> None:
    """The search and the filter's syntax, checked before anything is sent (field names are the
    service's to check)."""
    checked_query(query)
    if filter:
        parse_filter(filter)


def _service_error(error: HttpResponseError) -> QueryError:
    status = error.status_code or 0
    detail = public_text(str(error.message or error), 400)
    if isinstance(error, ClientAuthenticationError) or status in (401, 403):
        return QueryError(
            "access_denied", f"Azure AI Search refused this server's sign-in ({status}): {detail}"
        )
    if status == 404:
        return QueryError("source_misconfigured", f"Azure AI Search has no such index: {detail}")
    if status in (429, 503):
        return QueryError(
            "source_busy", f"Azure AI Search is busy ({status}); the search did not run: {detail}"
        )
    if status == 400:
        return QueryError("invalid_filter", f"Azure AI Search refused the search: {detail}")
    return QueryError("source_unavailable", f"Azure AI Search failed ({status}): {detail}")
