"""Which Gremlin endpoints a `cosmos` source may name: `wss://<account>.gremlin.cosmos.azure.com:443/`
(or `.us` in Azure Government), as the portal shows it, with the scheme and port optional.

The engine sends the account key or an Entra token to this host when it signs in, so a host outside
the cloud's Cosmos DB Gremlin domains is refused (`loom.engines.hosts`). The older
`*.gremlin.cosmosdb.azure.com` names of the public cloud are accepted too: accounts made before
2020 still show them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from loom.engines.hosts import PUBLIC, US_GOVERNMENT, check_domain, check_host_name, plain_text

GREMLIN_DOMAINS: dict[str, tuple[str, ...]] = {
    PUBLIC: ("gremlin.cosmos.azure.com", "gremlin.cosmosdb.azure.com"),
    US_GOVERNMENT: ("gremlin.cosmos.azure.us",),
}
CLOUDS = tuple(GREMLIN_DOMAINS)
# The audience of an Entra token for Cosmos DB's data plane, by cloud.
COSMOS_SCOPES = {
    PUBLIC: "https://cosmos.azure.com/.default",
    US_GOVERNMENT: "https://cosmos.azure.us/.default",
}


def endpoint_url(location: str, cloud: str | None = None) -> str:
    """`wss://<host>:443/` for a Gremlin endpoint in `cloud`'s Cosmos DB domains (any known cloud's
    when None); ValueError saying what is wrong otherwise."""
    host = _host(location)
    check_domain(host, GREMLIN_DOMAINS, cloud, "Cosmos DB Gremlin", "the account key or sign-in token")
    return f"wss://{host}:443/"


def _host(location: str) -> str:
    plain_text(location, "Gremlin endpoint")
    parts = urlsplit(location if "://" in location else f"wss://{location}")
    if parts.scheme.lower() not in ("wss", "https"):
        raise ValueError(f"the Gremlin endpoint must start with wss:// (got {location!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            "the Gremlin endpoint is just wss://<account>.gremlin.cosmos.azure.com:443/; "
            "the database and the graph are fields of their own"
        )
    if "@" in parts.netloc:
        raise ValueError("the Gremlin endpoint may not carry a user name or password")
    host, _, port = parts.netloc.lower().partition(":")
    if port not in ("", "443"):
        raise ValueError("the Gremlin endpoint answers on port 443 only")
    check_host_name(host, "a Gremlin endpoint host name")
    return host
