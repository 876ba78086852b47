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

import ipaddress
import re
from urllib.parse import urlsplit

PUBLIC = "AzureCloud"
US_GOVERNMENT = "AzureUSGovernment"

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

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # one DNS label (RFC 1123), lowercase


def cluster_url(location: str, cloud: str | None = None) -> str:
    """`https://<host>` for a cluster URI in `cloud`'s Kusto domains (any known cloud's when None);
    ValueError saying what is wrong otherwise."""
    host = _host(location)
    clouds = CLOUDS if cloud is None else (cloud,)
    if cloud is not None and cloud not in KUSTO_DOMAINS:
        raise ValueError(f"unknown Azure cloud {cloud!r}; use one of: {', '.join(CLOUDS)}")
    domains = [d for c in clouds for d in KUSTO_DOMAINS[c]]
    if not any(host.endswith("." + domain) for domain in domains):
        where = f"the {cloud} cloud's" if cloud else "a"
        raise ValueError(
            f"{host} is not in {where} Kusto domain ({', '.join('*.' + d for d in domains)}): "
            "the cluster would receive the sign-in token"
        )
    return f"https://{host}"


def _host(location: str) -> str:
    """The host of an `https://host[/]` URI, lowercase; ValueError for anything more or less."""
    if not location.isascii() or not location.isprintable() or any(c.isspace() for c in location):
        raise ValueError("the cluster URI must be plain ASCII without spaces or control characters")
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
    _check_name(host)
    return host


def _check_name(host: str) -> None:
    labels = host.split(".")
    if _is_ip(host) or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(f"{host!r} is not a cluster host name")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
