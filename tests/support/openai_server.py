"""An OpenAI-compatible chat-completions server on 127.0.0.1 for tests, benchmarks and demos.

It exercises the real HTTP path (SDK, retries, SSE parsing) without a real model. Replies come from
a queue; when the queue is empty a rule-based responder answers from the *shape* of the conversation
(tools offered? last message a tool result?), never by matching prompt text.

    with OpenAICompatServer() as srv:
        srv.queue_text("hello")
        ... OpenAI(base_url=srv.base_url) ...

Standalone demo: `python -m tests.support.openai_server --port 9100 [--sql "SELECT ..."]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

TEXT_PIECES = 4  # a streamed text reply is cut into about this many deltas
ARG_PIECES = 3  # tool-call arguments are cut into about this many chunks
_ids = itertools.count(1)


@dataclass(frozen=True)
class QueuedToolCall:
    name: str
    arguments: dict[str, Any]
    call_id: str = field(default_factory=lambda: f"call_{next(_ids)}")


@dataclass(frozen=True)
class QueuedReply:
    text: str = ""
    tool_calls: tuple[QueuedToolCall, ...] = ()


@dataclass(frozen=True)
class QueuedError:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class QueuedRaw:
    """Bytes as they are, for a misbehaving endpoint: a body that is not JSON, one far past
    max_tokens, one sent a piece at a time with `pause_s` between pieces."""

    pieces: tuple[bytes, ...]
    content_type: str = "application/json"
    pause_s: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)


Queued = QueuedReply | QueuedError | QueuedRaw


@dataclass
class RecordedRequest:
    body: dict[str, Any]
    path: str
    headers: dict[str, str]
    received_at: float  # time.monotonic()
    first_token_at: float | None = None


class OpenAICompatServer:
    """A uvicorn server in a background thread; use as a context manager or call start()/stop()."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, default_sql: str = "SELECT 1 AS one"
    ) -> None:
        self.host = host
        self.default_sql = default_sql
        self.recorded: list[RecordedRequest] = []
        self._queue: deque[Queued] = deque()
        self._lock = threading.Lock()
        self._socket = _bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(build_app(self), log_level="warning", lifespan="off"))
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OpenAICompatServer:
        run = {"sockets": [self._socket]}
        self._thread = threading.Thread(target=self._server.run, kwargs=run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the OpenAI-compatible test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- scripting ------------------------------------------------------------------------
    def queue_text(self, text: str) -> None:
        self._push(QueuedReply(text=text))

    def queue_tool_call(self, name: str, arguments: dict[str, Any], call_id: str | None = None) -> None:
        self.queue_tool_calls((name, arguments, call_id))

    def queue_tool_calls(self, *calls: tuple[str, dict[str, Any], str | None]) -> None:
        """Several calls in one reply, as a model doing parallel tool calls would answer."""
        made = tuple(_tool_call(name, args, call_id) for name, args, call_id in calls)
        self._push(QueuedReply(tool_calls=made))

    def queue_error(self, status: int, headers: Mapping[str, str] | None = None, body: Any = None) -> None:
        self._push(QueuedError(status, dict(headers or {}), body))

    def queue_raw(
        self,
        *pieces: bytes,
        content_type: str = "application/json",
        pause_s: float = 0.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._push(QueuedRaw(pieces, content_type, pause_s, dict(headers or {})))

    def _push(self, item: Queued) -> None:
        with self._lock:
            self._queue.append(item)

    def next_reply(self, body: dict[str, Any]) -> Queued:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return default_reply(body, self.default_sql)

    # --- what was received ----------------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat-completion requests, in arrival order."""
        return [r.body for r in self.recorded]

    @property
    def first_token_times(self) -> list[float | None]:
        return [r.first_token_at for r in self.recorded]


def _bind(host: str, port: int) -> socket.socket:
    # Binding here (not in uvicorn) gives us the free port before the thread starts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _tool_call(name: str, arguments: dict[str, Any], call_id: str | None) -> QueuedToolCall:
    return QueuedToolCall(name, arguments, call_id) if call_id else QueuedToolCall(name, arguments)


# --- the rule-based responder ------------------------------------------------------------------


def default_reply(body: dict[str, Any], default_sql: str) -> QueuedReply:
    """Answer from the conversation's shape: ask the first tool, summarise its result, or write SQL."""
    messages = body.get("messages") or [{}]
    last, tools = messages[-1], body.get("tools") or []
    if last.get("role") == "tool":
        return QueuedReply(text=f"Here is what I found: {message_text(last)[:200]}")
    if not tools:
        return QueuedReply(text=f"```sql\n{default_sql}\n```")
    if last.get("role") == "user":
        name = tools[0].get("function", {}).get("name", "tool")
        return QueuedReply(tool_calls=(QueuedToolCall(name, {"question": message_text(last)}),))
    return QueuedReply(text="Done.")


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text whether content is a string or a list of typed parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = content or []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


# --- wire format --------------------------------------------------------------------------------


def split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def usage(body: dict[str, Any], reply: QueuedReply) -> dict[str, int]:
    # Rough word counts: enough for usage plumbing tests, not a tokenizer.
    prompt = sum(len(message_text(m).split()) for m in body.get("messages", []))
    completion = len(reply.text.split()) + sum(len(json.dumps(c.arguments).split()) for c in reply.tool_calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def wire_tool_call(call: QueuedToolCall) -> dict[str, Any]:
    return {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
    }


def completion(body: dict[str, Any], reply: QueuedReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [wire_tool_call(c) for c in reply.tool_calls]
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
        "usage": usage(body, reply),
    }


def _finish(reply: QueuedReply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def chunk_deltas(reply: QueuedReply) -> Iterator[dict[str, Any]]:
    """The `delta` objects of a streamed reply: role, text pieces, then each call's pieces."""
    yield {"role": "assistant", "content": ""}
    for piece in split(reply.text, TEXT_PIECES) if reply.text else []:
        yield {"content": piece}
    for index, call in enumerate(reply.tool_calls):
        head = {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        yield {"tool_calls": [{"index": index, **head}]}
        for piece in split(json.dumps(call.arguments), ARG_PIECES):
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


async def stream_events(
    body: dict[str, Any], reply: QueuedReply, record: RecordedRequest
) -> AsyncIterator[bytes]:
    base = {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "test-model"),
    }
    for delta in chunk_deltas(reply):
        if record.first_token_at is None and (delta.get("content") or delta.get("tool_calls")):
            record.first_token_at = time.monotonic()
        yield sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        await asyncio.sleep(0)  # let each chunk leave as its own write, as a real model's would
    yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": _finish(reply)}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        yield sse({**base, "choices": [], "usage": usage(body, reply)})
    yield sse("[DONE]")


async def raw_pieces(raw: QueuedRaw) -> AsyncIterator[bytes]:
    for i, piece in enumerate(raw.pieces):
        if i and raw.pause_s:
            await asyncio.sleep(raw.pause_s)
        yield piece


def error_response(error: QueuedError) -> JSONResponse:
    body = error.body
    if body is None:
        body = {"error": {"message": f"scripted error {error.status}", "type": "test_error", "code": None}}
    return JSONResponse(body, status_code=error.status, headers=dict(error.headers))


EMBEDDING_DIMENSIONS = 64


def bag_of_words(text: str) -> list[float]:
    """A deterministic stand-in for an embedding: hashed word counts, so shared words mean similar."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in text.lower().replace("_", " ").split():
        vector[zlib.crc32(word.encode()) % EMBEDDING_DIMENSIONS] += 1.0
    return vector


def build_app(server: OpenAICompatServer) -> FastAPI:
    app = FastAPI(title="OpenAI-compatible test server")

    async def chat_completions(request: Request) -> Response:
        body = await request.json()
        record = RecordedRequest(body, request.url.path, dict(request.headers), time.monotonic())
        server.recorded.append(record)
        reply = server.next_reply(body)
        if isinstance(reply, QueuedError):
            return error_response(reply)
        if isinstance(reply, QueuedRaw):
            return StreamingResponse(
                raw_pieces(reply), media_type=reply.content_type, headers=dict(reply.headers)
            )
        if body.get("stream"):
            return StreamingResponse(stream_events(body, reply, record), media_type="text/event-stream")
        record.first_token_at = time.monotonic()
        return JSONResponse(completion(body, reply))

    # The OpenAI path, and Azure's deployment and v1 paths so Azure settings can point here too.
    for path in (
        "/v1/chat/completions",
        "/openai/deployments/{deployment}/chat/completions",
        "/openai/v1/chat/completions",
    ):
        app.add_api_route(path, chat_completions, methods=["POST"])

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        server.recorded.append(
            RecordedRequest(body, request.url.path, dict(request.headers), time.monotonic())
        )
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": bag_of_words(t)} for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        return JSONResponse({"object": "list", "data": data, "model": body.get("model", "m"), "usage": usage})

    for path in ("/v1/embeddings", "/openai/deployments/{deployment}/embeddings"):
        app.add_api_route(path, embeddings, methods=["POST"])

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "test-model", "object": "model", "owned_by": "loom-tests"}]}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the rule-based OpenAI-compatible test model.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--sql", default="SELECT 1 AS one", help="what query-generation calls answer")
    args = parser.parse_args(argv)
    with OpenAICompatServer(host=args.host, port=args.port, default_sql=args.sql) as srv:
        sys.stderr.write(f"OpenAI-compatible test model at {srv.base_url} (Ctrl-C to stop)\n")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
