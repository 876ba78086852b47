"""What ADX says when a query fails, as a QueryError with a stable code and the server's sentence.

Kusto reports a failure as a OneApiError (`code`, `@type`, `@message`): in the body of a 4xx/5xx
response (the SDK raises KustoApiError), or inside a 200 response when the failure came after the
first rows (a "partial query failure": KustoMultiApiError). Codes, for the repair loop and exit
codes: `parse_error` (syntax), `unknown_table` / `unknown_column` / `semantic_error`, `timeout`,
`source_busy` (throttled: try later), `access_denied`, `source_unavailable` (sign-in or network),
`execution_error` (anything else). Every message goes through `shown`: no token, no secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import requests
from azure.kusto.data.exceptions import (
    KustoApiError,
    KustoAuthenticationError,
    KustoClientError,
    KustoClientInvalidConnectionStringException,
    KustoMultiApiError,
    KustoNetworkError,
    KustoServiceError,
    KustoThrottlingError,
    OneApiError,
)

from loom.engines.contracts import QueryError
from loom.engines.errors import shown
from loom.engines.kql.adx.client import UntrustedHost
from loom.engines.sql.dbapi import timeout_error
from loom.engines.sql.qualify import unknown_table_problem

log = logging.getLogger(__name__)

TOO_LARGE = ("E_QUERY_RESULT_SET_TOO_LARGE", "80DA0003")  # result truncation (records or size)
_SERVER_TIMEOUT = ("Request_ExecutionTimeout", "TimeoutException", "E_QUERY_TIMEOUT")
_NAMED = re.compile(r"named '([^']+)'")  # "Failed to resolve table expression named 'Storms'"
_TABLE_TEXTS = ("failed to resolve table", "'table' operator")
_COLUMN_TEXTS = ("failed to resolve scalar expression", "failed to resolve column")


@dataclass(frozen=True)
class ServiceError:
    """The parts of a Kusto failure that decide its code."""

    status: int | None
    code: str
    kind: str
    text: str

    def says(self, *marks: str) -> bool:
        haystack = f"{self.code} {self.kind} {self.text}".lower()
        return any(mark.lower() in haystack for mark in marks)


def service_error(error: BaseException) -> ServiceError:
    response = getattr(error, "http_response", None)
    status = getattr(response, "status_code", None)
    api = _api_error(error)
    if api is None:
        return ServiceError(status, "", "", _text(error))
    text = api.description or api.message or _text(error)
    return ServiceError(status, api.code or "", api.type or "", text)


def _api_error(error: BaseException) -> OneApiError | None:
    if isinstance(error, KustoApiError):
        return error.get_api_error()
    if isinstance(error, KustoMultiApiError) and error.get_api_errors():
        return error.get_api_errors()[0]
    return None


def _text(error: BaseException) -> str:
    return getattr(error, "message_text", None) or str(error)


def is_truncation(error: BaseException) -> bool:
    """Kusto cut the result at `truncationmaxrecords` / `truncationmaxsize` (a partial failure)."""
    return isinstance(error, KustoMultiApiError) and service_error(error).says(*TOO_LARGE)


def query_error(error: BaseException, *, timeout_s: float, tables: Mapping[str, str]) -> QueryError:
    """The QueryError for an SDK failure; `tables` (lowercase → name) for unknown-table hints."""
    if _timed_out(error):
        return timeout_error(timeout_s)
    if any(isinstance(e, UntrustedHost) for e in _chain(error)):
        return QueryError("source_misconfigured", shown(error.__cause__ or error, log, "adx"))
    if isinstance(error, KustoClientInvalidConnectionStringException):
        reason = shown(error, log, "ADX cluster not trusted")
        return QueryError("source_misconfigured", f"The ADX cluster is not trusted: {reason}")
    if isinstance(error, KustoAuthenticationError | KustoClientError):
        reason = shown(str(getattr(error, "exception", error)), log, "ADX sign-in failed", logging.WARNING)
        return QueryError("source_unavailable", f"Could not sign in to ADX: {reason}")
    if isinstance(error, KustoNetworkError):
        return QueryError("source_unavailable", "Could not reach the ADX cluster (network error).")
    if isinstance(error, KustoThrottlingError):
        return _throttled()
    if isinstance(error, KustoServiceError):
        return _from_service(service_error(error), tables)
    reason = shown(error, log, "ADX query failed", logging.WARNING)
    return QueryError("execution_error", f"ADX could not run the query: {reason}")


def _timed_out(error: BaseException) -> bool:
    if any(isinstance(e, requests.Timeout) for e in _chain(error)):
        return True
    if not isinstance(error, KustoServiceError):
        return False
    failure = service_error(error)
    return failure.status == 504 or failure.says(*_SERVER_TIMEOUT)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = error
    for _ in range(10):  # a cause chain is short; a loop in one is not followed forever
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def _throttled() -> QueryError:
    return QueryError(
        "source_busy",
        "ADX is throttling requests from this service (too many at once); the query did not run. "
        "Try again in a minute.",
    )


def _from_service(failure: ServiceError, tables: Mapping[str, str]) -> QueryError:
    text = _sentence(failure)
    if failure.status == 429:
        return _throttled()
    if failure.status == 401:
        return QueryError(
            "source_unavailable",
            "ADX refused the sign-in token (401): the identity is unknown to the cluster, or signed "
            "in to another cloud.",
        )
    if failure.status == 403 or failure.says("Forbidden", "KustoRequestDeniedException"):
        return QueryError("access_denied", f"ADX denied access: {text}")
    if failure.says("Syntax error"):
        return QueryError("parse_error", f"ADX: {text}")
    if failure.says("Semantic error"):
        return _semantic(failure, text, tables)
    return QueryError("execution_error", f"ADX could not run the query: {text}")


def _semantic(failure: ServiceError, text: str, tables: Mapping[str, str]) -> QueryError:
    named = _NAMED.search(failure.text)
    if failure.says(*_TABLE_TEXTS):
        if named and tables:
            problem = unknown_table_problem(named[1].lower(), tables)
            return QueryError(problem.code, f"ADX: {text}. {problem.message}", [problem])
        return QueryError("unknown_table", f"ADX: {text}")
    if failure.says(*_COLUMN_TEXTS):
        return QueryError("unknown_column", f"ADX: {text}")
    return QueryError("semantic_error", f"ADX: {text}")


def _sentence(failure: ServiceError) -> str:
    """The useful part: from "Syntax error" / "Semantic error" on when the server says so (it
    prefixes "Request is invalid and cannot be processed:"), made fit to show."""
    text = failure.text
    for mark in ("Syntax error", "Semantic error"):
        at = text.find(mark)
        if at >= 0:
            text = text[at:]
            break
    return shown(text, log, "ADX query failed")
