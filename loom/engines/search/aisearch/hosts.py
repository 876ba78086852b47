"""Which endpoints an `aisearch` source may name: `https://<service>.search.windows.net`, or
`.search.azure.us` in Azure Government. The engine sends a query key or an Entra token there, so
another host is refused (`loom.engines.hosts`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from loom.engines.hosts import PUBLIC, US_GOVERNMENT, check_domain, check_host_name, plain_text

SEARCH_DOMAINS: dict[str, tuple[str, ...]] = {
    PUBLIC: ("search.windows.net",),
    US_GOVERNMENT: ("search.azure.us",),
}
AUDIENCES = {PUBLIC: "https://search.azure.com", US_GOVERNMENT: "https://search.azure.us"}


def service_url(location: str, cloud: str | None = None) -> str:
    """`https://<host>` for a search service in `cloud`'s domains; ValueError saying what is wrong."""
    plain_text(location, "search endpoint")
    parts = urlsplit(location)
    if parts.scheme.lower() != "https":
        raise ValueError(f"the search endpoint must start with https:// (got {location!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(
            "the search endpoint is just https://<service>.search.windows.net; the index is its own field"
        )
    host, _, port = parts.netloc.lower().partition(":")
    if port not in ("", "443"):
        raise ValueError("the search endpoint answers on port 443 only")
    check_host_name(host, "a search service host name")
    check_domain(host, SEARCH_DOMAINS, cloud, "Azure AI Search", "the query key or sign-in token")
    return f"https://{host}"
