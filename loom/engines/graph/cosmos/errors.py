"""What Cosmos DB says when a Gremlin request fails, as a QueryError with a stable code.

A failure arrives as gremlinpython's GremlinServerError: a Gremlin status (401, 500, 597…) and
Cosmos DB's response attributes, among them `x-ms-status-code` (the HTTP-like status the service
means: 429 request rate too large, 404, 408…), `x-ms-retry-after-ms` and `x-ms-activity-id`. Its
message is the server's report, `ExceptionType : …` and `ExceptionMessage : …` lines among others;
the type and the message are what is kept (through `public_text`: no key, no token).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gremlin_python.driver.protocol import GremlinServerError

from loom.engines.contracts import QueryError
from loom.engines.errors import public_text
from loom.engines.sql.dbapi import timeout_error

# A field of the server's report: `Name : value`, the value possibly going on over the next lines.
_FIELD = re.compile(r"^\s*([A-Z][A-Za-z]+)\s*:\s?(.*)$")
_TIMESPAN = re.compile(r"(\d+):(\d+):(\d+(?:\.\d+)?)")  # .NET TimeSpan, as Cosmos DB writes waits


def status_of(error: GremlinServerError) -> int:
    """The service's own status when it sent one, else the Gremlin status."""
    attributes = error.status_attributes or {}
    try:
        return int(attributes.get("x-ms-status-code", error.status_code))
    except (TypeError, ValueError):
        return int(error.status_code)


def retry_after_ms(attributes: Mapping[str, object]) -> float | None:
    """`x-ms-retry-after-ms`, which Cosmos DB's Gremlin endpoint sends as milliseconds or as a
    TimeSpan (`00:00:00.0500000`)."""
    raw = attributes.get("x-ms-retry-after-ms")
    if raw is None:
        return None
    text = str(raw).strip()
    span = _TIMESPAN.fullmatch(text)
    if span:
        hours, minutes, seconds = int(span[1]), int(span[2]), float(span[3])
        return ((hours * 60 + minutes) * 60 + seconds) * 1000
    try:
        return float(text)
    except ValueError:
        return None


def cosmos_error(error: GremlinServerError, timeout_s: float) -> QueryError:
    status = status_of(error)
    text = _sentence(str(error.status_message or ""))
    if status == 429:
        return throttled(retry_after_ms(error.status_attributes or {}))
    if status in (401, 403):
        return QueryError(
            "access_denied",
            f"Cosmos DB refused this server's sign-in ({status}): check the source's key_env, or give "
            f"its identity a data role that can run Gremlin queries. {text}".strip(),
        )
    if status == 404:
        return QueryError("source_misconfigured", f"Cosmos DB has no such database or graph: {text}")
    if status == 408:
        return timeout_error(timeout_s)
    if status >= 500 and status != 597:  # 597: Gremlin's script evaluation error, the query's fault
        return QueryError("source_unavailable", f"Cosmos DB failed ({status}): {text}")
    return QueryError("execution_error", f"The query failed in Cosmos DB: {text}")


def throttled(wait_ms: float | None) -> QueryError:
    after = f" Cosmos DB asked to retry after {wait_ms:.0f} ms." if wait_ms is not None else ""
    return QueryError(
        "source_busy",
        "Cosmos DB is limiting this graph's requests (429, request rate too large: the provisioned "
        f"request units per second are in use); the query did not run.{after}",
    )


def _sentence(message: str) -> str:
    fields = _fields(message)
    if "ExceptionMessage" in fields:
        kind = fields.get("ExceptionType", "")
        return public_text(f"{kind}: {fields['ExceptionMessage']}" if kind else fields["ExceptionMessage"])
    return public_text(message)


def _fields(message: str) -> dict[str, str]:
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in message.splitlines():
        found = _FIELD.match(line)
        if found:
            current = fields.setdefault(found[1], [])
            current.append(found[2])
        elif current is not None:
            current.append(line)
    return {k: " ".join(" ".join(v).split()) for k, v in fields.items()}
