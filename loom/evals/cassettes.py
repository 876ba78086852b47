"""Recording a model's HTTP traffic once, and replaying it offline and deterministically.

A cassette is a JSONL file: a header line (the model it was recorded from, with the temperature and
output bound it was called with, which a replay uses too, and when), then one line per
request: its key, the case that made it, the request body as sent, and the response (status,
content type, body — a streamed answer is kept as its SSE bytes). Request headers are never
stored, so neither is a key or a token.

The key is a hash of the request's JSON with its keys sorted, the rows of tool results sorted (a
query without ORDER BY may return its rows in another order on another run) and tool-call ids
numbered by first appearance (the agent makes up the id of a call the model wrote as text): neither
may make a replay miss. Nor which rows of an unordered result the model read (`loose_key`): a
request that matches its case's one recording but for tool-result rows replays it. On replay a
request with no recorded answer is
a miss: it is answered 400 (the SDK does not retry that), counted against the case that made it,
and that case fails naming it — never a silent live call.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx2

CASE: ContextVar[str] = ContextVar("loom_eval_case", default="(no case)")
Mode = Literal["record", "replay"]
VERSION = 1


@dataclass
class Recorded:
    key: str
    case: str
    request: dict[str, Any]
    status: int
    content_type: str
    body: str


@dataclass
class Cassette:
    path: Path
    model: str = ""
    generation: dict[str, Any] = field(default_factory=dict)  # temperature, max output tokens
    entries: dict[str, Recorded] = field(default_factory=dict)
    misses: dict[str, list[str]] = field(default_factory=dict)  # case → keys it asked for in vain

    @classmethod
    def open(cls, path: Path) -> Cassette:
        """The cassette at `path`; an empty one when there is no file yet."""
        if not path.exists():
            return cls(path)
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        header, rest = (lines[0], lines[1:]) if lines and "cassette" in lines[0] else ({}, lines)
        entries = {e["key"]: Recorded(**e) for e in rest}
        generation = header.get("generation") or {}
        return cls(path, model=str(header.get("model", "")), generation=dict(generation), entries=entries)

    def save(self) -> None:
        header = {
            "cassette": VERSION,
            "model": self.model,
            "generation": self.generation,
            "saved": dt.date.today().isoformat(),
        }
        lines = [json.dumps(header)] + [
            json.dumps(vars(e), ensure_ascii=False, sort_keys=True)
            for e in sorted(self.entries.values(), key=lambda e: (e.case, e.key))
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(lines) + "\n")

    def missed(self, case: str) -> list[str]:
        return self.misses.get(case, [])


def request_key(path: str, body: bytes) -> tuple[str, dict[str, Any]]:
    """The request's key, and its body as parsed (what the cassette keeps beside the key)."""
    parsed = json.loads(body or b"{}")
    return _hashed(path, _normal(parsed)), parsed


def loose_key(path: str, body: dict[str, Any]) -> str:
    """The key without the rows of tool results. A query without ORDER BY returns its rows in the
    engine's order, which varies with its threads' timing; when the result has more rows than
    the model reads (50), which rows it read varies with it, and the request with them (seen in
    CI: a 200-row unordered result under load). A replay that misses on its key is answered from
    the one recording of the case with this key, when there is exactly one."""
    return _hashed(path, _without_rows(_normal(body)))


def _hashed(path: str, normal: Any) -> str:
    canonical = json.dumps(normal, sort_keys=True, ensure_ascii=False)
    endpoint = "/".join(path.rstrip("/").split("/")[-2:])  # chat/completions, whatever the base URL
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()[:32]


def _without_rows(body: Any) -> Any:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return body
    return {**body, "messages": [_rowless(m) for m in messages]}


def _rowless(message: Any) -> Any:
    if not isinstance(message, dict) or message.get("role") != "tool":
        return message
    try:
        parsed = json.loads(message.get("content") or "")
    except (json.JSONDecodeError, TypeError):
        return message
    result = parsed.get("result") if isinstance(parsed, dict) else None
    if not isinstance(result, dict) or "rows" not in result:
        return message
    return {**message, "content": json.dumps({**parsed, "result": {**result, "rows": None}}, sort_keys=True)}


def _normal(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    messages = body.get("messages")
    if isinstance(messages, list):
        ids: dict[str, str] = {}
        body = {**body, "messages": [_ids_by_position(_message(m), ids) for m in messages]}
    return body


def _ids_by_position(message: Any, ids: dict[str, str]) -> Any:
    """Tool-call ids as their order of first appearance: the agent makes up some ids itself (a call
    the model wrote as text), and a made-up id must not make a replay miss."""
    if not isinstance(message, dict):
        return message

    def stable(value: Any) -> Any:
        return ids.setdefault(value, f"call_{len(ids)}") if isinstance(value, str) else value

    calls = message.get("tool_calls")
    if isinstance(calls, list):
        message = {
            **message,
            "tool_calls": [{**c, "id": stable(c.get("id"))} if isinstance(c, dict) else c for c in calls],
        }
    if "tool_call_id" in message:
        message = {**message, "tool_call_id": stable(message["tool_call_id"])}
    return message


def _message(message: Any) -> Any:
    if not isinstance(message, dict) or message.get("role") != "tool":
        return message
    content = message.get("content")
    try:
        parsed = json.loads(content) if isinstance(content, str) else None
    except json.JSONDecodeError:
        return message
    if not isinstance(parsed, dict):
        return message
    result = parsed.get("result")
    if isinstance(result, dict) and isinstance(result.get("rows"), list):
        rows = sorted(result["rows"], key=lambda r: json.dumps(r, sort_keys=True, default=str))
        parsed = {**parsed, "result": {**result, "rows": rows}}
        return {**message, "content": json.dumps(parsed, sort_keys=True)}
    return message


class CassetteTransport(httpx2.AsyncBaseTransport):
    """Replays from the cassette; when recording, forwards to the real endpoint and keeps the answer."""

    def __init__(self, cassette: Cassette, mode: Mode, real: httpx2.AsyncBaseTransport | None = None) -> None:
        self.cassette, self.mode = cassette, mode
        self.real = real or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        key, body = request_key(request.url.path, await request.aread())
        found = self.cassette.entries.get(key) or self._loosely(request.url.path, body)
        if found is not None and self.mode == "replay":
            return _response(found.status, found.content_type, found.body.encode())
        if self.mode == "replay":
            self.cassette.misses.setdefault(CASE.get(), []).append(key)
            return _response(400, "application/json", _miss(key))
        return await self._record(request, key, body)

    def _loosely(self, path: str, body: dict[str, Any]) -> Recorded | None:
        if self.mode != "replay":
            return None
        wanted = loose_key(path, body)
        case = CASE.get()
        found = [
            e
            for e in self.cassette.entries.values()
            if e.case == case and loose_key(path, e.request) == wanted
        ]
        return found[0] if len(found) == 1 else None

    async def _record(self, request: httpx2.Request, key: str, body: dict[str, Any]) -> httpx2.Response:
        response = await self.real.handle_async_request(request)
        content = await response.aread()
        content_type = response.headers.get("content-type", "application/json")
        if response.status_code < 500 and response.status_code != 429:  # transient failures are not kept
            text = content.decode("utf-8", errors="replace")
            self.cassette.entries[key] = Recorded(
                key, CASE.get(), body, response.status_code, content_type, text
            )
        return _response(response.status_code, content_type, content)

    async def aclose(self) -> None:
        await self.real.aclose()


def _response(status: int, content_type: str, content: bytes) -> httpx2.Response:
    return httpx2.Response(status, headers={"content-type": content_type}, content=content)


def _miss(key: str) -> bytes:
    message = f"replay miss: no recorded answer for request {key} (record the suite again with --record)"
    return json.dumps(
        {"error": {"message": message, "type": "cassette_miss", "code": "cassette_miss"}}
    ).encode()
