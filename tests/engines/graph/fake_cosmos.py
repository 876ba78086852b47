"""A Cosmos DB Gremlin endpoint at gremlinpython's transport seam, for tests.

It speaks what the driver writes and reads on the WebSocket: each request a GraphSON 2 message
behind its MIME type, each answer a JSON message with a Gremlin status. It asks for the SASL
PLAIN sign-in Cosmos DB asks for (407) on a connection's first request and checks the user name
`/dbs/<db>/colls/<graph>` and the password; it refuses bytecode (Cosmos DB takes strings only);
it answers in batches (206, then 200) with Cosmos DB's attributes (`x-ms-request-charge`,
`x-ms-total-request-charge`, `x-ms-status-code`, `x-ms-retry-after-ms`).

What a query returns comes from `answer`: by default the query is run on a real graph —
graphersal, over the same files the embedded engine reads — after parsing the string as sent,
and its elements are written back in Cosmos DB's untyped GraphSON (vertex properties as lists of
`{id, value}`, paths as `{labels, objects}`). A test may replace `answer` to script failures.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import graphersal
from gremlin_python.driver.transport import AbstractBaseTransport

from loom.engines.graph.gremlin import parse, render
from loom.engines.graph.load import load_graph

GRAPHSON_V2 = b"application/vnd.gremlin-v2.0+json"


@dataclass
class Reply:
    data: list[Any] = field(default_factory=list)
    charge: float = 2.5  # RU of each batch
    status: int = 200  # a Gremlin status; errors are 500 (or 597) with x-ms-status-code
    attributes: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    hang: bool = False  # send nothing until the connection is closed
    padding: int = 0  # bytes of filler in each batch (a large answer on the wire)


@dataclass
class SignedIn:
    user: str
    password: str


class FakeCosmos:
    def __init__(
        self,
        graph_files: Path | None = None,
        *,
        database: str = "db",
        graph: str = "routes",
        passwords: tuple[str, ...] = ("the-key",),
        batch: int = 2,
        read_timeout_s: float = 2.0,
    ) -> None:
        self.user = f"/dbs/{database}/colls/{graph}"
        self.passwords = passwords
        self.batch = batch
        self.read_timeout_s = read_timeout_s
        self.graph = load_graph(graph_files, memory_limit=1 << 30) if graph_files else None
        self.queries: list[str] = []  # every eval request's gremlin, in order
        self.sign_ins: list[SignedIn] = []
        self.answer: Callable[[str], Reply] = self.run_on_graph
        self.lock = threading.Lock()

    def transport(self) -> FakeTransport:
        return FakeTransport(self)

    def run_on_graph(self, query: str) -> Reply:
        assert self.graph is not None, "no graph files: give the fake an `answer`"
        traversal = parse(query)
        found = self.graph.execute(render(traversal))
        found = found if isinstance(found, list) else [found]
        is_path = any(s.name == "path" for s in traversal.steps)
        return Reply([_cosmos(v, path=is_path) for v in found])


class FakeTransport(AbstractBaseTransport):
    def __init__(self, server: FakeCosmos) -> None:
        self.server = server
        self.out: queue.Queue[bytes | None] = queue.Queue()
        self.signed_in = False
        self.pending: tuple[str, str] | None = None  # (request id, gremlin) awaiting sign-in
        self._closed = threading.Event()

    def connect(self, url: str, headers: Any = None) -> None:
        assert url.startswith("wss://") and url.endswith(":443/"), url

    def write(self, message: bytes) -> None:
        size = message[0]
        assert message[1 : 1 + size] == GRAPHSON_V2, "Cosmos DB speaks GraphSON 2"
        request = json.loads(message[1 + size :])
        request_id = request["requestId"]["@value"]
        if request["op"] == "authentication":
            self._authenticate(request_id, request["args"]["sasl"])
            return
        assert request["op"] == "eval" and isinstance(request["args"]["gremlin"], str), "strings only"
        assert request["args"]["aliases"] == {"g": "g"}
        if not self.signed_in:
            self.pending = (request_id, request["args"]["gremlin"])
            self._send(request_id, 407, [], {}, "authenticate")
            return
        self._answer(request_id, request["args"]["gremlin"])

    def read(self) -> bytes | None:
        """The next message; like the driver's transport, a read that waits `read_timeout_s` fails."""
        deadline = time.monotonic() + self.server.read_timeout_s
        while not self._closed.is_set():
            try:
                return self.out.get(timeout=0.05)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError("no answer within the read timeout") from None
        return None

    def close(self) -> None:
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _authenticate(self, request_id: str, sasl: str) -> None:
        _, user, password = base64.b64decode(sasl).decode().split("\x00")
        with self.server.lock:
            self.server.sign_ins.append(SignedIn(user, password))
        if user != self.server.user or password not in self.server.passwords:
            self._send(request_id, 401, [], {"x-ms-status-code": 401}, "Unauthorized: invalid credentials")
            return
        self.signed_in = True
        assert self.pending is not None
        pending_id, gremlin = self.pending
        self._answer(pending_id, gremlin)

    def _answer(self, request_id: str, gremlin: str) -> None:
        with self.server.lock:
            self.server.queries.append(gremlin)
        reply = self.server.answer(gremlin)
        if reply.hang:
            return
        if reply.status >= 300:
            self._send(request_id, reply.status, [], reply.attributes, reply.message)
            return
        batches = [
            reply.data[i : i + self.server.batch] for i in range(0, len(reply.data), self.server.batch)
        ]
        batches = batches or [[]]
        for n, batch in enumerate(batches, start=1):
            last = n == len(batches)
            attributes = {"x-ms-request-charge": reply.charge, "x-ms-activity-id": "00000000-0000"}
            if last:
                attributes["x-ms-total-request-charge"] = reply.charge * len(batches)
                attributes.update(reply.attributes)
            filler = ["x" * reply.padding] if reply.padding else []
            self._send(
                request_id, 200 if last else 206, batch + filler if not last else batch, attributes, ""
            )

    def _send(
        self, request_id: str, code: int, data: list[Any], attributes: dict[str, Any], message: str
    ) -> None:
        self.out.put(
            json.dumps(
                {
                    "requestId": request_id,
                    "status": {"code": code, "message": message, "attributes": attributes},
                    "result": {"data": data, "meta": {}},
                }
            ).encode()
        )


def _cosmos(value: object, *, path: bool = False) -> object:
    """A graphersal result in Cosmos DB's untyped GraphSON."""
    if isinstance(value, graphersal.Vertex):
        properties = {k: [{"id": f"{value.id}|{k}", "value": v}] for k, v in dict(value.properties).items()}
        return {"id": str(value.id), "label": value.label, "type": "vertex", "properties": properties}
    if isinstance(value, graphersal.Edge):
        return {
            "id": str(value.id),
            "label": value.label,
            "type": "edge",
            "outV": str(getattr(value.out_v, "id", value.out_v)),
            "inV": str(getattr(value.in_v, "id", value.in_v)),
            "properties": dict(value.properties),
        }
    if isinstance(value, list) and path:
        return {"labels": [[] for _ in value], "objects": [_cosmos(v) for v in value]}
    if isinstance(value, list):
        return [_cosmos(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _cosmos(v) for k, v in value.items()}
    return value
