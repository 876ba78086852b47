"""/v1/chat end to end: the real agent, the real SQLite store and DuckDB over a seeded lakehouse.

The snapshot test pins the whole AG-UI stream (ids normalised); the HTTP-model tests drive the real
model path (MAF → openai → HTTP) against the OpenAI-compatible test server on 127.0.0.1.
"""

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loom.agent.build import build_agent
from loom.agent.model_maf import build_chat_model
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.testing import ScriptedModel, sql_block, text, tool_call
from loom.api.app import create_app
from loom.api.page_limits import page_readers
from loom.lakehouse.seed import seed_lakehouse
from loom.settings import Settings
from tests.support.openai_server import OpenAICompatServer

SNAPSHOT = Path(__file__).parent / "snapshots" / "chat_stream.jsonl"
COUNT_SQL = "SELECT COUNT(*) AS order_lines FROM gold.fact_sales"
ID_KEYS = {"threadId", "runId", "messageId", "toolCallId", "parentMessageId", "tool_call_id", "id"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("home")
    seed_lakehouse(root / "lakehouse", orders=1500)
    return root


def settings_for(home: Path, **overrides: Any) -> Settings:
    return Settings(home=home, sources_file=home / "no-sources.yaml", **overrides)


async def client_for(settings: Settings, model: Any) -> AsyncIterator[httpx.AsyncClient]:
    store = SqliteConversationStore(settings.home / f"{id(model)}.db")
    app = create_app(settings, store=store, runner=build_agent(settings, store, model=model))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://loom.test") as c:
        yield c
    await store.close()


def events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines]


def normalise(stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace ids by their order of first appearance and timings by 0, so the stream compares."""
    seen: dict[str, str] = {}

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if key in ID_KEYS and isinstance(value, str):
            return seen.setdefault(value, f"<id{len(seen)}>")
        if key in {"elapsed_ms", "timestamp"}:
            return 0
        if key == "content" and isinstance(value, str) and value.startswith("{"):
            return walk(json.loads(value))
        return value

    return [walk(e) for e in stream]


async def test_the_whole_stream_matches_its_snapshot(home: Path) -> None:
    model = ScriptedModel(chunk=12).queue(
        tool_call("nl2sql", {"question": "How many order lines are there?"}, call_id="call_1"),
        sql_block(COUNT_SQL),
        text("There are that many order lines."),
    )
    async for client in client_for(settings_for(home), model):
        response = await client.post("/v1/chat", json={"message": "How many order lines are there?"})
    got = normalise(events(response))
    if os.environ.get("UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in got))
        pytest.fail(f"snapshot written to {SNAPSHOT}; review it and run again")
    expected = [json.loads(line) for line in SNAPSHOT.read_text().splitlines()]
    assert got == expected


async def test_a_turn_over_the_real_model_http_path(home: Path) -> None:
    with OpenAICompatServer(default_sql=COUNT_SQL) as server:
        settings = settings_for(
            home, openai_base_url=server.base_url, model="test-model", model_max_retries=0
        )
        model = build_chat_model(settings)
        async for client in client_for(settings, model):
            response = await client.post("/v1/chat", json={"message": "How many order lines are there?"})
            stream = events(response)
            thread = stream[0]["threadId"]
            stored = (await client.get(f"/v1/conversations/{thread}")).json()
    kinds = [e["type"] for e in stream]
    assert kinds[-1] == "RUN_FINISHED"
    [start] = [e for e in stream if e["type"] == "TOOL_CALL_START"]
    assert start["toolCallName"] == "nl2sql"
    [result] = [e for e in stream if e["type"] == "TOOL_CALL_RESULT"]
    body = json.loads(result["content"])
    assert body["query"].startswith("SELECT COUNT(*)")
    assert body["result"]["row_count"] == 1
    assert "TEXT_MESSAGE_CONTENT" in kinds
    # three model requests: streamed with tools, the non-streamed SQL generation, streamed answer
    assert [bool(r.get("stream")) for r in server.requests] == [True, False, True]
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "tool", "assistant"]


async def test_model_down_ends_with_run_error_and_keeps_the_message(home: Path) -> None:
    with OpenAICompatServer() as server:
        for _ in range(2):
            server.queue_error(429, headers={"Retry-After": "0.05"})
        settings = settings_for(home, openai_base_url=server.base_url, model="m", model_max_retries=1)
        async for client in client_for(settings, build_chat_model(settings)):
            stream = events(await client.post("/v1/chat", json={"message": "anyone there?"}))
            stored = (await client.get(f"/v1/conversations/{stream[0]['threadId']}")).json()
    assert [e["type"] for e in stream] == ["RUN_STARTED", "RUN_ERROR"]
    assert "429" in stream[-1]["message"]
    assert "retr" in stream[-1]["message"]
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [("user", "anyone there?")]


async def test_a_client_that_takes_nothing_ends_the_stream_and_the_turn() -> None:
    # Probe 14: a stream left unread held its turn, and the turn's results their room, for as
    # long as the client kept the connection open.
    import asyncio

    from ag_ui.core import BaseEvent, RunStartedEvent, TextMessageContentEvent

    from loom.api import sse

    closed = asyncio.Event()

    async def turn() -> AsyncIterator[BaseEvent]:
        try:
            yield RunStartedEvent(thread_id="c", run_id="r")
            while True:
                yield TextMessageContentEvent(message_id="m", delta="x" * 1000)
        finally:
            closed.set()

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # flow control: the client never reads

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    response = sse.sse_response(turn(), stall_s=0.2)  # LOOM_RESPONSE_STALL_S
    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "POST", "path": "/v1/chat"}
    await asyncio.wait_for(response(scope, receive, send), timeout=10)
    assert closed.is_set() and sent[0]["type"] == "http.response.start"


async def test_a_page_left_unread_frees_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from loom.api.routes import conversations
    from loom.identity import Principal

    monkeypatch.setattr(conversations, "PAGE_STALL_S", 0.2)
    readers = page_readers()
    slot = readers.take(Principal(tenant_id="t1", user_id="alice"))
    body = b"x" * (3 * conversations.SEND_CHUNK)
    response = conversations._PageResponse(conversations._sent(body, slot), media_type="application/json")

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "GET", "path": "/"}
    await asyncio.wait_for(response(scope, receive, send), timeout=10)
    assert not readers.reading
