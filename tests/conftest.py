"""Shared test setup: no test reaches a real model, or any host but this machine.

Every test session runs with the network restricted to loopback and unix sockets, and without the
developer's OPENAI_* / AZURE_OPENAI_* / LOOM_* variables, .env or loom.toml, so a real key is never
read or sent.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.openai_server import OpenAICompatServer

_MODEL_ENV_PREFIXES = ("OPENAI_", "AZURE_OPENAI_", "LOOM_")
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


class NetworkForbidden(RuntimeError):
    """A test tried to reach a host other than this machine; tests use local fakes."""


def _is_local(host: object) -> bool:
    if host is None:
        return True
    name = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]").split("%")[0]
    if name in ("", "localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _check(address: Any) -> None:
    # AF_UNIX addresses are paths (str or bytes); inet addresses are (host, port, ...) tuples.
    if isinstance(address, tuple) and not _is_local(address[0]):
        raise NetworkForbidden(f"tests may only connect to 127.0.0.1/::1, not {address[0]!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    # Refusing the lookup too means no DNS query leaves the machine and the failure is immediate.
    if not _is_local(host):
        raise NetworkForbidden(f"tests may not resolve {host!r}; use a local fake server")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _no_real_network_or_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(_MODEL_ENV_PREFIXES)]:
            patch.delenv(name)
        # Settings also reads ./.env and ./loom.toml: run from an empty folder so a developer's
        # files cannot configure a real model (or anything else) for the tests.
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        patch.setattr(socket.socket, "connect", _guarded_connect)
        patch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
        patch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
        yield


@pytest.fixture
def openai_server() -> Iterator[OpenAICompatServer]:
    """A fresh OpenAI-compatible server on 127.0.0.1 with an empty reply queue."""
    with OpenAICompatServer() as server:
        yield server
