"""Host names a cloud source may name: one DNS name, in the service's domains for the source's cloud.

An Azure source's endpoint comes from a sources file, and its engine sends a sign-in token or an
account key to it with every request: a host outside Microsoft's domains for that service would
receive the secret. So each connector checks its endpoint when the source loads and again when the
engine opens, with these two pieces: the host is a plain DNS name (no address, no user info), and
it ends in one of the service's domains for the cloud.
"""

from __future__ import annotations

import ipaddress
import re

PUBLIC = "AzureCloud"
US_GOVERNMENT = "AzureUSGovernment"

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # one DNS label (RFC 1123), lowercase


def plain_text(location: str, what: str) -> None:
    """ValueError unless `location` is printable ASCII without spaces (no smuggled characters)."""
    if not location.isascii() or not location.isprintable() or any(c.isspace() for c in location):
        raise ValueError(f"the {what} must be plain ASCII without spaces or control characters")


def check_host_name(host: str, what: str) -> None:
    """ValueError unless `host` (lowercase) is a DNS name: not an address, every label well formed."""
    labels = host.split(".")
    if _is_ip(host) or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(f"{host!r} is not {what}")


def check_domain(
    host: str, domains: dict[str, tuple[str, ...]], cloud: str | None, service: str, receives: str
) -> None:
    """ValueError unless `host` is under one of `service`'s domains in `cloud` (any cloud's when None).
    `receives` says what the host would be sent, for the message."""
    if cloud is not None and cloud not in domains:
        raise ValueError(f"unknown Azure cloud {cloud!r}; use one of: {', '.join(domains)}")
    listed = [d for c in ((cloud,) if cloud else tuple(domains)) for d in domains[c]]
    if not any(host.endswith("." + domain) for domain in listed):
        where = f"the {cloud} cloud's" if cloud else "a"
        raise ValueError(
            f"{host} is not in {where} {service} domain ({', '.join('*.' + d for d in listed)}): "
            f"the host would receive {receives}"
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
