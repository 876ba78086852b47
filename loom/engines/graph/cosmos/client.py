"""A gremlinpython client for one Cosmos DB graph: query strings (Cosmos DB does not take
bytecode), the GraphSON 2 serializer it speaks, and the account key or an Entra token as the
password of the SASL sign-in Gremlin servers ask for (user name `/dbs/<database>/colls/<graph>`).

Every connection's transport is wrapped in a meter (`Metered`): the bytes one request's answer
takes on the wire are counted as its frames arrive, and a request whose answer passes its budget
fails there instead of being held whole. gremlinpython puts a connection back in its pool once
an answer ends or fails, so a connection cut off mid-answer still has frames of it to read: a
client that saw a cut or a time limit is never used again (`CosmosClients`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from gremlin_python.driver.client import Client
from gremlin_python.driver.serializer import GraphSONSerializersV2d0
from gremlin_python.driver.transport import AbstractBaseTransport

POOL_SIZE = 4  # connections per graph: concurrent queries beyond it wait for one (`Slots`)
# How long one read of the socket may wait. A query abandoned at its time limit leaves the driver's
# thread in such a read (gremlinpython cannot interrupt it, and its worker threads are joined when
# the process exits): this is how long that thread outlives the query, at most.
READ_TIMEOUT_S = 60.0
TOKEN_MARGIN_S = 300.0  # an Entra token this close to expiry is renewed, with a new client
MAX_FRAME_BYTES = 16 * 1024 * 1024  # one WebSocket message; Cosmos DB sends answers in batches

TransportFactory = Callable[[], AbstractBaseTransport]


class TooLarge(Exception):
    """An answer passed its byte budget on the wire."""


@dataclass(frozen=True)
class Password:
    text: str
    renew_at: float  # time.time() after which a new client signs in afresh (inf: never)


class SignIn:
    """The account key, or an Entra token for Cosmos DB's data plane in the source's cloud."""

    def __init__(self, key: str | None, credential: TokenCredential | None, scope: str) -> None:
        if key is None and credential is None:
            raise ValueError("a Cosmos DB source needs an account key or an Entra ID credential")
        self._key, self._credential, self._scope = key, credential, scope

    def password(self) -> Password:
        if self._key is not None:
            return Password(self._key, float("inf"))
        assert self._credential is not None
        token = self._credential.get_token(self._scope)
        return Password(token.token, token.expires_on - TOKEN_MARGIN_S)


class Metered(AbstractBaseTransport):
    """A transport that counts what each request's answer takes (reset when a request is written)."""

    def __init__(self, inner: AbstractBaseTransport, budget: Callable[[], int]) -> None:
        self._inner, self._budget, self._read = inner, budget, 0

    def connect(self, url: str, headers: Any = None) -> None:
        self._inner.connect(url, headers)

    def write(self, message: bytes) -> None:
        self._read = 0
        self._inner.write(message)

    def read(self) -> Any:
        data = self._inner.read()
        self._read += len(data) if isinstance(data, bytes | str) else 0
        if self._read > self._budget():
            raise TooLarge(f"the answer passed {self._budget():,} bytes on the wire")
        return data

    def close(self) -> None:
        self._inner.close()

    @property
    def closed(self) -> bool:
        return bool(self._inner.closed)


def default_transport() -> AbstractBaseTransport:
    from gremlin_python.driver.aiohttp.transport import AiohttpTransport

    return AiohttpTransport(
        read_timeout=READ_TIMEOUT_S, write_timeout=READ_TIMEOUT_S, max_content_length=MAX_FRAME_BYTES
    )


@dataclass
class Pooled:
    client: Client
    slots: threading.BoundedSemaphore  # one per connection: a request never waits inside the driver
    renew_at: float


class CosmosClients:
    """The graph's current client, made on first use and again after a failure or a token's expiry."""

    def __init__(
        self,
        url: str,
        database: str,
        graph: str,
        sign_in: SignIn,
        transport: TransportFactory | None = None,
        budget: Callable[[], int] = lambda: MAX_FRAME_BYTES,
    ) -> None:
        self._url, self._user = url, f"/dbs/{database}/colls/{graph}"
        self._sign_in, self._transport, self._budget = sign_in, transport or default_transport, budget
        self._lock = threading.Lock()
        self._current: Pooled | None = None

    def current(self) -> Pooled:
        with self._lock:
            if self._current is None or time.time() >= self._current.renew_at:
                if self._current is not None:
                    _close_later(self._current.client)
                self._current = self._new()
            return self._current

    def drop(self, pooled: Pooled) -> None:
        """Never use `pooled` again (a connection of it may still hold part of an answer)."""
        with self._lock:
            if self._current is pooled:
                self._current = None
        _close_later(pooled.client)

    def close(self) -> None:
        with self._lock:
            pooled, self._current = self._current, None
        if pooled is not None:
            pooled.client.close()

    def _new(self) -> Pooled:
        password = self._sign_in.password()
        client = Client(
            self._url,
            "g",
            transport_factory=lambda: Metered(self._transport(), self._budget),
            message_serializer=GraphSONSerializersV2d0(),
            username=self._user,
            password=password.text,
            pool_size=POOL_SIZE,
            max_workers=POOL_SIZE * 2,  # a request's write and its read each take a worker
        )
        return Pooled(client, threading.BoundedSemaphore(POOL_SIZE), password.renew_at)


def _close_later(client: Client) -> None:
    """Closing waits for the client's threads, one of which may be in a read: not on a query's time."""
    threading.Thread(target=client.close, name="cosmos-client-close", daemon=True).start()
