"""Which cluster URIs an `adx` source may name: https, a plain host name, and a Kusto domain of
the source's cloud.

A cluster URI comes from a sources file, and the engine sends a bearer token for the cloud's Kusto
scope to it with every query: a host outside Microsoft's Kusto domains would receive that token.
So the URI is checked when the source loads and again when the engine opens, and the engine's
transport refuses any request to another host. The domains are those of azure-kusto-data's
`wellKnownKustoEndpoints.json` (the SDK's own trusted-endpoint list, checked too by the SDK)
that are ADX clusters: not the Log Analytics, Resource Graph or PlayFab proxies it also lists.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from loom.engines.hosts import PUBLIC, US_GOVERNMENT, check_domain, check_host_name, plain_text

__all__ = ["CLOUDS", "KUSTO_DOMAINS", "PUBLIC", "US_GOVERNMENT", "cluster_url"]

KUSTO_DOMAINS: dict[str, tuple[str, ...]] = {
    PUBLIC: (
        "kusto.windows.net",
        "kustomfa.windows.net",
        "kusto.azuresynapse.net",  # Synapse Data Explorer pools
        "kusto.fabric.microsoft.com",  # Fabric Eventhouse query URIs
    ),
    US_GOVERNMENT: ("kusto.usgovcloudapi.net", "kustomfa.usgovcloudapi.net"),
}
CLOUDS = tuple(KUSTO_DOMAINS)


def cluster_url(location: str, cloud: str | None = None) -> str:
    """`https://<host>` for a cluster URI in `cloud`'s Kusto domains (any known cloud's when None);
    ValueError saying what is wrong otherwise."""
    host = _host(location)
    check_domain(host, KUSTO_DOMAINS, cloud, "Kusto", "the sign-in token")
    return f"https://{host}"


def _host(location: str) -> str:
    """The host of an `https://host[/]` URI, lowercase; ValueError for anything more or less."""
    plain_text(location, "cluster URI")
    parts = urlsplit(location)
    if parts.scheme.lower() != "https":
        raise ValueError(f"the cluster URI must start with https:// (got {location!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the cluster URI is just https://<cluster host>; the database is its own field")
    if "@" in parts.netloc:
        raise ValueError("the cluster URI may not carry a user name or password")
    if ":" in parts.netloc:
        raise ValueError("the cluster URI may not name a port: ADX answers on 443")
    host = parts.netloc.lower()
    check_host_name(host, "a cluster host name")
    return host
