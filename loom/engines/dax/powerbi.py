"""PowerBIEngine: DAX on a Power BI semantic model in the service, through `executeQueries`.

Every query is parsed by the same DAX parser as the embedded engine before anything is sent: a
syntax error, a DMV or XMLA command, or an `INFO.*` function is refused here (names and semantics
are the service's to check: it runs all of DAX). The answer is read with a byte cap (the service
itself stops at 100,000 rows and 15 MB per query), then bounded in rows and bytes like every
engine's. The catalog (tables, columns, measures, relationships) comes from the model through the
INFO.VIEW functions, which only the engine itself may call, and is read again after 15 minutes.

Endpoints and token audiences per Power BI cloud: commercial (api.powerbi.com), US Government
GCC (api.powerbigov.us), GCC High (api.high.powerbigov.us) and DoD (api.mil.powerbigov.us).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from azure.core.credentials import TokenCredential

from loom.engines.bounds import MAX_RESULT_BYTES, bounded_rows, header_size
from loom.engines.catalog_cache import KeptCatalog
from loom.engines.contracts import (
    Catalog,
    Column,
    ColumnInfo,
    ForeignKey,
    MeasureInfo,
    Problem,
    QueryError,
    ResultSet,
    TableInfo,
    unsupported_dialect,
)
from loom.engines.dax.parser import parse_query
from loom.engines.dax.references import walk
from loom.engines.dax.syntax import Call
from loom.engines.errors import public_text

MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # above the service's own 15 MB per query, with JSON overhead


@dataclass(frozen=True)
class PowerBICloud:
    api: str
    scope: str


CLOUDS = {
    "commercial": PowerBICloud(
        "https://api.powerbi.com", "https://analysis.windows.net/powerbi/api/.default"
    ),
    "gcc": PowerBICloud(
        "https://api.powerbigov.us", "https://analysis.usgovcloudapi.net/powerbi/api/.default"
    ),
    "gcc-high": PowerBICloud(
        "https://api.high.powerbigov.us", "https://high.analysis.usgovcloudapi.net/powerbi/api/.default"
    ),
    "dod": PowerBICloud(
        "https://api.mil.powerbigov.us", "https://mil.analysis.usgovcloudapi.net/powerbi/api/.default"
    ),
}
AZURE_CLOUD_OF = {"commercial": "AzureCloud", "gcc": "AzureUSGovernment", "gcc-high": "AzureUSGovernment",
                  "dod": "AzureUSGovernment"}  # fmt: skip


def refused_functions(query: str, allow_info: bool = False) -> list[Problem]:
    """A query the service must not be sent: not DAX, or one reading the model's metadata (unless
    the source allows INFO functions)."""
    tree = parse_query(query)
    parts = [e.table for e in tree.evaluates] + [d.expr for d in tree.defines]
    calls = [n for part in parts for n in walk(part) if isinstance(n, Call)]
    return [
        Problem(code="forbidden_function", message=f"{n.name} reads the model's metadata: not allowed here.")
        for n in calls
        if n.name.startswith("INFO.") and not allow_info
    ]


class PowerBIEngine:
    """DAX on one semantic model (dataset) of a workspace. Thread-safe."""

    name = "powerbi"
    language = "dax"
    dialect = "dax"
    dialects = frozenset({"dax"})

    def __init__(
        self,
        dataset_id: str,
        *,
        workspace_id: str | None,
        credential: TokenCredential,
        environment: str = "commercial",
        impersonated_user: str | None = None,
        allow_info: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if environment not in CLOUDS:
            raise QueryError("source_misconfigured", f"environment must be one of: {', '.join(CLOUDS)}")
        self.cloud = CLOUDS[environment]
        group = f"/groups/{workspace_id}" if workspace_id else ""
        self.url = f"{self.cloud.api}/v1.0/myorg{group}/datasets/{dataset_id}/executeQueries"
        self.credential = credential
        self.impersonated_user = impersonated_user
        self.allow_info = allow_info
        self._http = httpx.Client(transport=transport, follow_redirects=False)
        self._catalog = KeptCatalog(self._read_catalog, "Power BI")
        self._problem: str | None = None

    def execute(
        self,
        query: str,
        *,
        max_rows: int,
        timeout_s: float,
        now: dt.datetime | None = None,
        dialect: str | None = None,
        max_bytes: int | None = None,
    ) -> ResultSet:
        if dialect not in (None, self.dialect):
            raise unsupported_dialect(self, dialect)
        problems = refused_functions(query, self.allow_info)
        if problems:
            raise QueryError(problems[0].code, problems[0].message, problems)
        started = time.perf_counter()
        table = self._run(query, timeout_s)
        names = list(table[0]) if table else []
        bounded = bounded_rows(
            _fetcher([[row.get(n) for n in names] for row in table]),
            max_rows=max_rows,
            max_bytes=max_bytes or MAX_RESULT_BYTES,
            header=header_size(names),
        )
        columns = [Column(name=n, type=_type_of(table, n)) for n in names]
        return bounded.result(columns, engine=self.name, query=query, started=started)

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        try:
            return refused_functions(query, self.allow_info)
        except QueryError as e:
            return e.problems

    def catalog(self) -> Catalog:
        return self._catalog.get()

    def loaded_catalog(self) -> Catalog | None:
        return self._catalog.loaded()

    def problem(self) -> str | None:
        return self._problem

    def close(self) -> None:
        self._http.close()

    # --- the service ----------------------------------------------------------------------------

    def _run(self, query: str, timeout_s: float) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"queries": [{"query": query}], "serializerSettings": {"includeNulls": True}}
        if self.impersonated_user:
            body["impersonatedUserName"] = self.impersonated_user
        token = self.credential.get_token(self.cloud.scope).token
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            with self._http.stream(
                "POST", self.url, json=body, headers=headers, timeout=timeout_s
            ) as response:
                content = _read_capped(response)
        except httpx.TimeoutException as e:
            raise QueryError(
                "timeout", f"Power BI did not answer within the {timeout_s:g} s time limit."
            ) from e
        except httpx.HTTPError as e:
            self._problem = f"Power BI could not be reached: {type(e).__name__}"
            raise QueryError("source_unavailable", self._problem) from e
        self._problem = None
        if response.status_code != 200:
            raise _service_error(response.status_code, content, response.headers.get("Retry-After"))
        return _first_table(content)

    def _read_catalog(self) -> Catalog:
        tables = self._run("EVALUATE INFO.VIEW.TABLES()", 60)
        columns = self._run("EVALUATE INFO.VIEW.COLUMNS()", 60)
        measures = self._run("EVALUATE INFO.VIEW.MEASURES()", 60)
        relationships = self._run("EVALUATE INFO.VIEW.RELATIONSHIPS()", 60)
        return info_catalog(tables, columns, measures, relationships)


def _fetcher(rows: list[list[Any]]):  # type: ignore[no-untyped-def]
    position = 0

    def fetch(n: int) -> list[list[Any]]:
        nonlocal position
        chunk = rows[position : position + n]
        position += n
        return chunk

    return fetch


def _read_capped(response: httpx.Response) -> bytes:
    parts, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise QueryError(
                "result_too_large",
                f"Power BI's answer is over {MAX_RESPONSE_BYTES // 2**20} MiB: "
                "filter it or take the top rows (TOPN).",
            )
        parts.append(chunk)
    return b"".join(parts)


def _first_table(content: bytes) -> list[dict[str, Any]]:
    try:
        document = json.loads(content)
        return list(document["results"][0]["tables"][0]["rows"])
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise QueryError(
            "execution_error", "Power BI answered with something that is not a query result."
        ) from e


def _service_error(status: int, content: bytes, retry_after: str | None) -> QueryError:
    detail = _detail(content)
    if status in (401, 403):
        return QueryError(
            "source_unauthorized", f"Power BI refused the server's identity ({status}): {detail}"
        )
    if status == 404:
        return QueryError("source_misconfigured", f"Power BI has no such dataset or workspace: {detail}")
    if status == 429:
        wait = f" (retry after {retry_after} s)" if retry_after else ""
        return QueryError("rate_limited", f"Power BI is limiting this dataset's queries{wait}.")
    if status >= 500:
        return QueryError("source_unavailable", f"Power BI failed ({status}): {detail}")
    return QueryError("execution_error", f"The query failed in Power BI: {detail}")


def _detail(content: bytes) -> str:
    """The service's own words: pbi.error's details, else the error code."""
    try:
        error = json.loads(content)["error"]
    except (ValueError, KeyError, TypeError):
        return public_text(content[:2000].decode("utf-8", "replace"), 300)
    details = error.get("pbi.error", {}).get("details", [])
    values = [d.get("detail", {}).get("value", "") for d in details if isinstance(d, dict)]
    text = " ".join(v for v in values if v) or str(error.get("message") or error.get("code") or "")
    return public_text(text, 600)


def _type_of(table: list[dict[str, Any]], name: str) -> str:
    value = next((row[name] for row in table if row.get(name) is not None), None)
    return {bool: "boolean", int: "integer", float: "float", str: "string"}.get(type(value), "unknown")


def info_catalog(
    tables: list[dict[str, Any]],
    columns: list[dict[str, Any]],
    measures: list[dict[str, Any]],
    relationships: list[dict[str, Any]],
) -> Catalog:
    """The catalog from INFO.VIEW.* (hidden tables and columns left out)."""

    def field(row: dict[str, Any], name: str) -> Any:
        return row.get(f"[{name}]", row.get(name))

    shown = [t for t in tables if not field(t, "IsHidden")]
    by_table: dict[str, list[ColumnInfo]] = {field(t, "Name"): [] for t in shown}
    for c in columns:
        owner = field(c, "Table")
        if owner in by_table and not field(c, "IsHidden") and field(c, "Type") != "RowNumber":
            by_table[owner].append(
                ColumnInfo(
                    name=field(c, "Name"),
                    type=str(field(c, "DataType") or ""),
                    description=field(c, "Description") or "",
                )
            )
    return Catalog(
        tables=[
            TableInfo(
                name=field(t, "Name"),
                description=field(t, "Description") or "",
                columns=by_table[field(t, "Name")],
            )
            for t in shown
        ],
        measures=[
            MeasureInfo(
                name=field(m, "Name"),
                table=field(m, "Table"),
                expression=field(m, "Expression") or "",
                description=field(m, "Description") or "",
                format=field(m, "FormatString") or "",
            )
            for m in measures
            if not field(m, "IsHidden")
        ],
        relationships=[_relationship(field, r) for r in relationships if field(r, "IsActive") is not False],
    )


def _relationship(field: Any, row: dict[str, Any]) -> ForeignKey:
    return ForeignKey(
        table=field(row, "FromTable"),
        columns=(field(row, "FromColumn"),),
        ref_table=field(row, "ToTable"),
        ref_columns=(field(row, "ToColumn"),),
        source="declared",
    )
