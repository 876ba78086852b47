"""The SDK's KustoClient for one cluster, what it signs in with, and what each request carries.

Sign-in: an azure-identity credential from CloudAccess through `with_azure_token_credential`.
The SDK would ask the cluster itself (GET /v1/rest/auth/metadata) which authority and token
audience to use; here the source's cloud decides them instead (`seed_cloud_info`), so a cluster
cannot send the sign-in elsewhere, and the SDK's own trusted-endpoint check then runs against the
right cloud's login endpoint. The credential is wrapped (`SignIn`): it is asked only for the
cloud's Kusto scope, its token is kept until near expiry (the SDK asks on every request), and the
SDK cannot close it (closing a KustoClient closes its credential).

Transport: the session's adapter is wrapped (`ClusterTransport`) to refuse any request to another
host, to cap each request's wait at the query's own deadline (the SDK waits the server timeout
plus 30 s), and to keep the responses of the current query so that a result read only in part, or
cut at the time limit, is closed. Tests give their own inner adapter: the HTTP seam.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

import requests
from azure.core.credentials import AccessToken, TokenCredential
from azure.kusto.data import ClientRequestProperties, KustoClient, KustoConnectionStringBuilder
from azure.kusto.data._cloud_settings import CloudInfo, CloudSettings
from requests.adapters import BaseAdapter

from loom.engines.kql.adx.hosts import PUBLIC, US_GOVERNMENT
from loom.engines.sql.dbapi import EntraToken

APP = "loom-data-agents"
CONNECT_S = 10.0  # at most, of a request's wait, to open the connection
MAX_SERVER_TIMEOUT_S = 3600.0  # the SDK writes servertimeout as `h:mm:ss`: under a day, always
# What the server may send before it cuts the result, as a multiple of the byte budget: its sizes
# are not JSON's, so the engine's own bound (counted as sent) is normally the one that stops.
SERVER_SIZE_FACTOR = 2

LOGIN = {PUBLIC: "https://login.microsoftonline.com", US_GOVERNMENT: "https://login.microsoftonline.us"}
KUSTO_RESOURCE = {
    PUBLIC: "https://kusto.kusto.windows.net",
    US_GOVERNMENT: "https://kusto.kusto.usgovcloudapi.net",
}
_KUSTO_CLIENT_APP = "db662dc1-0cfe-4e1c-a843-19a68e65be58"  # Kusto's first-party client (the SDK's default)
_FIRST_PARTY_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"


def kusto_scope(cluster: str, cloud: str) -> str:
    """The token scope for `cluster`: Kusto's resource in its cloud (`kustomfa` clusters have their
    own, as the SDK derives it)."""
    resource = KUSTO_RESOURCE[cloud]
    if ".kustomfa." in cluster:
        resource = resource.replace(".kusto.", ".kustomfa.")
    return resource + "/.default"


def seed_cloud_info(cluster: str, cloud: str) -> None:
    """The SDK's per-cluster cloud settings, given rather than fetched from the cluster."""
    info = CloudInfo(
        login_endpoint=LOGIN[cloud],
        login_mfa_required=".kustomfa." in cluster,
        kusto_client_app_id=_KUSTO_CLIENT_APP,
        kusto_client_redirect_uri="http://localhost",
        kusto_service_resource_id=KUSTO_RESOURCE[cloud],
        first_party_authority_url=f"{LOGIN[cloud]}/{_FIRST_PARTY_TENANT}",
    )
    CloudSettings.add_to_cache(cluster, info)


class WrongScope(RuntimeError):
    """The SDK asked for a token for another audience than the cloud's Kusto scope."""


class SignIn:
    """The credential as the SDK sees it (see the module's docstring)."""

    def __init__(self, credential: TokenCredential, scope: str) -> None:
        self.scope = scope
        self._token = EntraToken(credential, scope)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        if scopes != (self.scope,):
            raise WrongScope(f"a token for {', '.join(scopes)} was asked for; only {self.scope} is given")
        return self._token.access_token()

    def close(self) -> None:
        return None  # the credential is the engine pool's, not the client's


class UntrustedHost(requests.RequestException):
    """A request to a host other than the source's cluster: never sent."""


class Call:
    """One query's requests: how long each may wait, and the responses to close when it ends."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._responses: list[requests.Response] = []

    def opened(self, response: requests.Response) -> None:
        with self._lock:
            self._responses.append(response)

    def close(self) -> None:
        """Close what the query opened; from the deadline thread too, which cuts a read short."""
        with self._lock:
            responses = list(self._responses)
        for response in responses:
            with suppress(Exception):  # it may be closed already, or closing under a reader
                response.close()


_CALL: ContextVar[Call | None] = ContextVar("adx_call", default=None)


@contextmanager
def call(wait_s: float) -> Iterator[Call]:
    """Requests made inside (on this thread) wait at most `wait_s` and are closed at the end."""
    current = Call(wait_s)
    token = _CALL.set(current)
    try:
        yield current
    finally:
        _CALL.reset(token)
        current.close()


class ClusterTransport(BaseAdapter):
    """The session's transport, wrapped (see the module's docstring)."""

    def __init__(self, host: str, inner: BaseAdapter) -> None:
        super().__init__()
        self.host = host
        self.inner = inner

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        url = requests.utils.urlparse(request.url or "")
        if url.scheme != "https" or url.hostname != self.host or url.port not in (None, 443):
            raise UntrustedHost(f"refused a request to {url.hostname!r}: only {self.host} is this source's")
        current = _CALL.get()
        if current is not None:
            timeout = (min(CONNECT_S, current.wait_s), current.wait_s)
        response = self.inner.send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )
        if current is not None:
            current.opened(response)
        return response

    def close(self) -> None:
        self.inner.close()


def kusto_client(
    cluster: str, cloud: str, credential: TokenCredential, transport: BaseAdapter | None = None
) -> KustoClient:
    """A client for `cluster` (an `hosts.cluster_url`) that signs in for `cloud`."""
    seed_cloud_info(cluster, cloud)
    sign_in = SignIn(credential, kusto_scope(cluster, cloud))
    kcsb = KustoConnectionStringBuilder.with_azure_token_credential(cluster, credential=sign_in)
    kcsb.application_for_tracing = APP
    kcsb.user_name_for_tracing = APP  # not the server's OS login, which the SDK sends by default
    client = KustoClient(kcsb)
    # The SDK's requests session has no public hook for its transport; mounting is requests' own API.
    session = client._session  # typed as either client's session: the sync client's is requests'
    assert isinstance(session, requests.Session)
    wrapped = ClusterTransport(cluster.removeprefix("https://"), transport or session.get_adapter(cluster))
    for prefix in ("https://", "http://"):
        session.mount(prefix, wrapped)
    return client


def request_properties(
    *, max_rows: int, max_bytes: int, timeout_s: float, now: dt.datetime | None
) -> ClientRequestProperties:
    """What a model-written query runs with: a row cap one past `max_rows` (so a cut is seen), a
    size cap, the time limit, the clock, and the service's own read-only switches."""
    properties = ClientRequestProperties()
    properties.set_option("truncationmaxrecords", max_rows + 1)
    properties.set_option("truncationmaxsize", max_bytes * SERVER_SIZE_FACTOR)
    # A timedelta: the SDK adds its own margin to it for the HTTP wait (a string would break that).
    properties.set_option("servertimeout", dt.timedelta(seconds=min(timeout_s, MAX_SERVER_TIMEOUT_S)))
    for option in READ_ONLY_OPTIONS:
        properties.set_option(option, True)
    properties.set_option("results_progressive_enabled", False)  # the streaming reader takes DataTables
    if now is not None:
        properties.set_option("query_now", kusto_datetime(now))
    properties.application = APP
    properties.client_request_id = f"{APP};{uuid.uuid4()}"
    return properties


# Defence in depth beside the validator, never instead of it: the service refuses writes, reaching
# other clusters and databases, external data, callouts and sandboxed code (Python, R) itself.
READ_ONLY_OPTIONS = (
    "request_readonly",
    "request_readonly_hardline",
    "request_remote_entities_disabled",
    "request_external_data_disabled",
    "request_callout_disabled",
    "request_sandboxed_execution_disabled",
)


def management_properties(timeout_s: float) -> ClientRequestProperties:
    """For the engine's own `.show` command: read-only, with a time limit."""
    properties = ClientRequestProperties()
    properties.set_option("servertimeout", dt.timedelta(seconds=min(timeout_s, MAX_SERVER_TIMEOUT_S)))
    properties.set_option("request_readonly", True)
    properties.application = APP
    properties.client_request_id = f"{APP}.catalog;{uuid.uuid4()}"
    return properties


def kusto_datetime(moment: dt.datetime) -> str:
    """`2025-03-01T12:00:00.0000000Z`; a naive time is read as local time, as the embedded engine does."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
