"""The HTTP API end to end over ASGI, with a fake TurnRunner that streams and persists like the real one."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from ag_ui.core import (
    BaseEvent,
    RunFinishedEvent,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from fastapi.testclient import TestClient

from loom.agent.model import ChatMessage, ModelError, ToolCall
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.store import ConversationStore
from loom.agent.turns import TurnRequest
from loom.api.app import create_app
from loom.engines.contracts import QueryError
from loom.engines.sources import DuckDBSource
from loom.identity import DEV_PRINCIPAL, Principal
from loom.settings import Settings
from tests.api.test_auth import PARTNER, TENANT, Issuer, entra_settings

ARGS = '{"question": "orders per channel"}'


@dataclass
class FakeRunner:
    """Streams a turn with one tool call, then persists it through the store, as the real runner does."""

    store: ConversationStore
    fail_after: int | None = None  # raise after this many events
    failure: Exception = field(default_factory=lambda: RuntimeError("db path /secret/x.duckdb locked"))
    hang: bool = False  # wait forever after the first event (a slow model)
    calls: list[tuple[Principal, TurnRequest]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run_turn(self, principal: Principal, request: TurnRequest) -> AsyncIterator[BaseEvent]:
        self.calls.append((principal, request))
        try:
            thread = await self._conversation(principal, request)
            for i, event in enumerate(self._events(thread)):
                if self.fail_after is not None and i == self.fail_after:
                    raise self.failure
                yield event
                if self.hang:
                    await asyncio.Event().wait()
            await self._persist(principal, thread, request.message)
            yield RunFinishedEvent(thread_id=thread, run_id="run-1")
        finally:
            self.closed.set()

    async def _conversation(self, principal: Principal, request: TurnRequest) -> str:
        if request.conversation_id is None:
            return (await self.store.create_conversation(principal, request.message[:40])).id
        return request.conversation_id

    def _events(self, thread: str) -> list[BaseEvent]:
        return [
            RunStartedEvent(thread_id=thread, run_id="run-1"),
            ToolCallStartEvent(tool_call_id="call_1", tool_call_name="nl2sql", parent_message_id="msg_1"),
            ToolCallArgsEvent(tool_call_id="call_1", delta=ARGS),
            ToolCallEndEvent(tool_call_id="call_1"),
            ToolCallResultEvent(message_id="msg_2", tool_call_id="call_1", content='{"row_count": 2}'),
            TextMessageStartEvent(message_id="msg_3", role="assistant"),
            TextMessageContentEvent(message_id="msg_3", delta="Two channels."),
            TextMessageEndEvent(message_id="msg_3"),
        ]

    async def _persist(self, principal: Principal, thread: str, message: str) -> None:
        call = ToolCall(id="call_1", name="nl2sql", arguments=ARGS)
        await self.store.append_messages(
            principal,
            thread,
            [
                ChatMessage(role="user", content=message),
                ChatMessage(role="assistant", tool_calls=(call,)),
                ChatMessage(role="tool", content='{"row_count": 2}', tool_call_id="call_1"),
                ChatMessage(role="assistant", content="Two channels."),
            ],
        )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteConversationStore]:
    s = SqliteConversationStore(tmp_path / "loom.db")
    yield s
    await s.close()


@pytest.fixture
def runner(store: SqliteConversationStore) -> FakeRunner:
    return FakeRunner(store)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, auth_mode="dev")


@pytest.fixture
async def client(
    settings: Settings, store: SqliteConversationStore, runner: FakeRunner
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, store=store, runner=runner)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    frames = [f for f in response.text.split("\n\n") if f.strip()]
    assert all(f.startswith("data: ") for f in frames), frames
    return [json.loads(f.removeprefix("data: ")) for f in frames]


async def chat(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/chat", json=body)


def error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    return dict(response.json()["error"])


# --- chat ----------------------------------------------------------------------------------------


async def test_chat_streams_the_runners_events_as_camel_case_sse(
    client: httpx.AsyncClient, runner: FakeRunner
) -> None:
    response = await chat(client, message="Number of orders per channel", sources=["sales"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    events = sse_events(response)
    assert [e["type"] for e in events] == [
        "RUN_STARTED",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    assert events[0]["threadId"]
    assert "thread_id" not in events[0]
    assert events[1]["toolCallName"] == "nl2sql"
    assert events[1]["parentMessageId"] == "msg_1"
    [(principal, request)] = runner.calls
    assert principal == DEV_PRINCIPAL
    assert request == TurnRequest(message="Number of orders per channel", sources=["sales"])


async def test_a_conversation_continues_and_is_read_back_with_tool_calls_and_results(
    client: httpx.AsyncClient,
) -> None:
    thread = sse_events(await chat(client, message="first"))[0]["threadId"]
    response = await chat(client, message="second", conversation_id=thread)
    assert sse_events(response)[0]["threadId"] == thread
    detail = (await client.get(f"/v1/conversations/{thread}")).json()
    assert detail["id"] == thread
    assert detail["title"] == "first"
    messages = detail["messages"]
    assert [m["seq"] for m in messages] == list(range(1, 9))
    assert [m["role"] for m in messages[:4]] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"] == [{"id": "call_1", "name": "nl2sql", "arguments": ARGS}]
    assert messages[2]["tool_call_id"] == "call_1"
    assert messages[2]["content"] == '{"row_count": 2}'
    assert messages[4]["content"] == "second"


async def test_malformed_json_is_422_with_a_readable_message(
    client: httpx.AsyncClient, runner: FakeRunner
) -> None:
    response = await client.post(
        "/v1/chat", content=b'{"message": "hi"', headers={"content-type": "application/json"}
    )
    body = error(response, 422)
    assert body["code"] == "invalid_json"
    assert "not valid JSON" in body["message"]
    assert runner.calls == []


async def test_a_body_that_is_not_utf8_is_the_same_422(client: httpx.AsyncClient, runner: FakeRunner) -> None:
    response = await client.post(
        "/v1/chat", content=b'{"message": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    body = error(response, 422)
    assert body["code"] == "invalid_json" and "UTF-8" in body["message"]
    assert runner.calls == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"message": ""}, "message: "),
        ({"message": "  \n"}, "must not be empty"),
        ({}, "message: Field required"),
    ],
)
async def test_an_empty_or_missing_message_is_422(
    client: httpx.AsyncClient, runner: FakeRunner, body: dict[str, Any], needle: str
) -> None:
    detail = error(await client.post("/v1/chat", json=body), 422)
    assert detail["code"] == "invalid_request"
    assert needle in detail["message"]
    assert runner.calls == []


async def test_a_body_that_is_not_an_object_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat", content=b"[1]", headers={"content-type": "application/json"})
    assert "must be a JSON object" in error(response, 422)["message"]


async def test_an_unknown_field_is_422(client: httpx.AsyncClient) -> None:
    detail = error(await chat(client, message="hi", conversationId="c1"), 422)
    assert "conversationId" in detail["message"]


async def test_many_unknown_fields_are_one_short_422(client: httpx.AsyncClient) -> None:
    # Probe 30 (R30-2): 24,000 unknown keys were 24,000 errors: a 925 KB 422, 0.12 s of the loop.
    body = {**{str(i): 1 for i in range(24_000)}, "message": "x"}
    response = await client.post("/v1/chat", json=body)
    assert response.status_code == 422 and len(response.content) < 1_000
    assert "unknown fields: '0', '1', '2' and more" in error(response, 422)["message"]


async def test_a_message_over_the_limit_is_413_naming_the_limit(
    client: httpx.AsyncClient, runner: FakeRunner
) -> None:
    detail = error(await chat(client, message="x" * (32 * 1024 + 1)), 413)
    assert detail["code"] == "message_too_large"
    assert "32768 bytes" in detail["message"]
    assert "32 KiB" in detail["message"]
    # The limit is in UTF-8 bytes: 16,385 two-byte characters are over it.
    assert error(await chat(client, message="é" * 16_385), 413)["code"] == "message_too_large"
    assert runner.calls == []
    assert (await chat(client, message="x" * (32 * 1024))).status_code == 200


async def test_the_limit_comes_from_settings(tmp_path: Path, store: SqliteConversationStore) -> None:
    app = create_app(Settings(home=tmp_path, max_message_bytes=10), store=store, runner=FakeRunner(store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        assert "limit is 10 bytes" in error(await chat(c, message="x" * 11), 413)["message"]


async def test_an_unknown_conversation_is_404_before_streaming(
    client: httpx.AsyncClient, runner: FakeRunner
) -> None:
    detail = error(await chat(client, message="hi", conversation_id="nope"), 404)
    assert detail["code"] == "conversation_not_found"
    assert runner.calls == []


async def test_an_unknown_source_is_422_before_streaming(
    client: httpx.AsyncClient, runner: FakeRunner
) -> None:
    response = await client.post("/v1/chat", json={"message": "hi", "sources": ["hr"]})
    detail = error(response, 422)
    assert detail["code"] == "unknown_source"
    assert "'hr'" in detail["message"]
    assert "sales" in detail["message"]
    assert runner.calls == []


async def test_a_broken_sources_file_is_503_naming_the_problem_before_streaming(
    client: httpx.AsyncClient, runner: FakeRunner, settings: Settings
) -> None:
    (settings.home / "sources.yaml").write_text("sources:\n  - name: hr\n    kind: oracle\n    location: x\n")
    detail = error(await client.post("/v1/chat", json={"message": "hi"}), 503)
    assert detail["code"] == "sources_file_invalid"
    assert "sources[0].kind" in detail["message"]
    assert str(settings.home) not in detail["message"]  # the file's server path is for the log
    assert runner.calls == []


async def test_a_runner_failing_mid_stream_ends_with_run_error(
    client: httpx.AsyncClient, runner: FakeRunner
) -> None:
    runner.fail_after = 3
    response = await chat(client, message="hi")
    assert response.status_code == 200
    events = sse_events(response)
    assert [e["type"] for e in events] == ["RUN_STARTED", "TOOL_CALL_START", "TOOL_CALL_ARGS", "RUN_ERROR"]
    assert events[-1]["code"] == "internal_error"
    assert "RuntimeError" in events[-1]["message"]
    assert "reference" in events[-1]["message"]
    assert "/secret" not in events[-1]["message"]  # internals stay in the server log


async def test_a_model_error_reaches_the_user_as_written(
    client: httpx.AsyncClient, runner: FakeRunner
) -> None:
    runner.fail_after, runner.failure = 1, ModelError("the model endpoint timed out after 3 retries")
    last = sse_events(await chat(client, message="hi"))[-1]
    assert last == {
        "type": "RUN_ERROR",
        "message": "the model endpoint timed out after 3 retries",
        "code": "model_error",
    }


def asgi_chat_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat",
        "raw_path": b"/v1/chat",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }


@pytest.mark.parametrize("stuck", ["turn", "client"])
async def test_a_client_disconnect_closes_the_turn(
    settings: Settings, store: SqliteConversationStore, stuck: str
) -> None:
    """The client leaves while the turn is busy (a slow model) or while a write to it is blocked."""
    runner = FakeRunner(store, hang=stuck == "turn")
    app = create_app(settings, store=store, runner=runner)
    first_chunk = asyncio.Event()
    sent: list[bytes] = []
    requests = iter([{"type": "http.request", "body": b'{"message": "slow question"}', "more_body": False}])

    async def receive() -> dict[str, Any]:
        request = next(requests, None)
        if request is not None:
            return request
        await first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append(message["body"])
            first_chunk.set()
            if stuck == "client":
                await asyncio.Event().wait()

    await asyncio.wait_for(app(asgi_chat_scope(), receive, send), timeout=5)
    assert runner.closed.is_set()  # closed by the time the request ends, not whenever GC gets to it
    assert len(sent) == 1
    assert b"RUN_STARTED" in sent[0]


# --- tenancy -------------------------------------------------------------------------------------


async def test_another_tenants_conversation_is_404_everywhere(
    tmp_path: Path, store: SqliteConversationStore, runner: FakeRunner
) -> None:
    issuer = Issuer()
    app = create_app(entra_settings(tmp_path), store=store, runner=runner, jwks=issuer)
    owner = {"Authorization": f"Bearer {issuer.token(TENANT)}"}
    other = {"Authorization": f"Bearer {issuer.token(PARTNER)}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        created = await c.post("/v1/chat", json={"message": "mine"}, headers=owner)
        thread = sse_events(created)[0]["threadId"]
        refused = await c.post("/v1/chat", json={"message": "x", "conversation_id": thread}, headers=other)
        assert error(refused, 404)["code"] == "conversation_not_found"
        assert error(await c.get(f"/v1/conversations/{thread}", headers=other), 404)
        assert error(await c.delete(f"/v1/conversations/{thread}", headers=other), 404)
        assert (await c.get("/v1/conversations", headers=other)).json() == {"conversations": []}
        assert (await c.get(f"/v1/conversations/{thread}", headers=owner)).status_code == 200
        assert error(await c.post("/v1/chat", json={"message": "x"}), 401)["code"] == "missing_token"
    assert [p.tenant_id for p, _ in runner.calls] == [TENANT]


# --- conversations -------------------------------------------------------------------------------


async def test_conversations_list_get_delete(client: httpx.AsyncClient) -> None:
    first = sse_events(await chat(client, message="first question"))[0]["threadId"]
    second = sse_events(await chat(client, message="second question"))[0]["threadId"]
    listed = (await client.get("/v1/conversations")).json()["conversations"]
    assert [(c["id"], c["title"]) for c in listed] == [(second, "second question"), (first, "first question")]
    assert len((await client.get("/v1/conversations", params={"limit": 1})).json()["conversations"]) == 1
    deleted = await client.delete(f"/v1/conversations/{first}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert error(await client.get(f"/v1/conversations/{first}"), 404)["code"] == "conversation_not_found"
    assert error(await client.delete(f"/v1/conversations/{first}"), 404)
    assert [c["id"] for c in (await client.get("/v1/conversations")).json()["conversations"]] == [second]


async def test_a_bad_limit_is_422_in_the_error_shape(client: httpx.AsyncClient) -> None:
    assert "limit" in error(await client.get("/v1/conversations", params={"limit": 0}), 422)["message"]


async def test_unknown_routes_and_methods_keep_the_error_shape(client: httpx.AsyncClient) -> None:
    assert error(await client.get("/v1/nothing"), 404)["code"] == "not_found"
    assert error(await client.get("/v1/chat"), 405)["code"] == "method_not_allowed"


# --- health and docs -----------------------------------------------------------------------------


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"store": "ok", "runner": "ok", "sources": "ok", "engines": "ok"},
    }


async def test_readyz_is_503_when_the_sources_file_is_broken_and_says_no_more(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    (settings.home / "sources.yaml").write_text("sources: [\n")
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    said = ready.json()["checks"]["sources"]
    assert said.startswith("failed:")
    assert "sources.yaml" not in said  # no paths to anonymous callers


async def test_readyz_is_503_when_the_store_is_unreachable(
    client: httpx.AsyncClient, store: SqliteConversationStore
) -> None:
    await store.close()
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert response.json()["checks"]["store"].startswith("failed")
    assert (await client.get("/healthz")).status_code == 200


async def test_readyz_probes_a_store_without_ping(
    tmp_path: Path, store: SqliteConversationStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def list_conversations(self, principal: Principal, limit: int = 50) -> list[Any]:
            raise OSError("database unreachable")

    app = create_app(Settings(home=tmp_path), store=Broken(), runner=FakeRunner(store))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        response = await c.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["store"] == "failed: OSError (see the server log)"
    assert "database unreachable" in caplog.text  # why, for the operator, not the anonymous caller


def test_the_lifespan_opens_and_closes_its_own_store(tmp_path: Path) -> None:
    home = tmp_path / "nested" / "home"
    app = create_app(Settings(home=home), runner=FakeRunner(store=None))  # type: ignore[arg-type]
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        assert (home / "loom.db").exists()
        store = app.state.store
        assert isinstance(store, SqliteConversationStore)
        assert c.get("/readyz").json()["checks"] == {
            "store": "ok",
            "runner": "ok",
            "sources": "ok",
            "engines": "ok",
        }
        assert c.get("/v1/conversations").json() == {"conversations": []}
    assert app.state.store is None
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(store.list_conversations(DEV_PRINCIPAL))


async def test_openapi_documents_the_models(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    chat_request = spec["components"]["schemas"]["ChatRequest"]
    assert "UTF-8 bytes" in chat_request["properties"]["message"]["description"]
    chat_op = spec["paths"]["/v1/chat"]["post"]
    assert "text/event-stream" in chat_op["responses"]["200"]["content"]
    assert {"404", "413", "422"} <= set(chat_op["responses"])
    assert "ConversationDetail" in spec["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200


# --- browsers on other origins -------------------------------------------------------------------

CONSOLE = "https://console.example.gov"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}


async def test_no_origin_may_call_from_a_browser_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Origin": CONSOLE})
    assert "access-control-allow-origin" not in response.headers


async def test_a_listed_origin_may_call_and_others_may_not(
    tmp_path: Path, store: SqliteConversationStore, runner: FakeRunner
) -> None:
    settings = Settings(home=tmp_path, auth_mode="dev", cors_origins=[CONSOLE])
    app = create_app(settings, store=store, runner=runner)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        preflight = await c.options("/v1/chat", headers={"Origin": CONSOLE, **PREFLIGHT})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == CONSOLE
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in preflight.headers  # tokens, not cookies

        streamed = await c.post("/v1/chat", json={"message": "hi"}, headers={"Origin": CONSOLE})
        assert streamed.headers["access-control-allow-origin"] == CONSOLE

        other = await c.options("/v1/chat", headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


def test_origins_come_from_the_environment_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_CORS_ORIGINS", f'["{CONSOLE}"]')
    assert Settings().cors_origins == [CONSOLE]


def test_readyz_says_when_an_engine_cannot_serve_and_clears_when_it_can(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    app = create_app(Settings(home=tmp_path / "home"), runner=None)
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        pool = app.state.engines
        engine = pool.engine(DuckDBSource(name="gone", location=str(lake)), "sql")
        with pytest.raises(QueryError):
            engine.execute("SELECT 1", max_rows=1, timeout_s=5)  # its data is not there
        broken = c.get("/readyz")
        assert broken.status_code == 503
        assert broken.json()["checks"]["engines"] == "failed: 1 engine cannot serve (see the server log)"
        lake.mkdir()  # the data comes back: the next query loads it
        engine.execute("SELECT 1", max_rows=1, timeout_s=5)
        assert c.get("/readyz").json()["checks"]["engines"] == "ok"


async def test_a_conversation_is_read_a_page_at_a_time(client: httpx.AsyncClient) -> None:
    # Probe 11 (R11-5): 30 turns were one 250 MB response, read while every other tenant waited.
    thread = sse_events(await chat(client, message="first"))[0]["threadId"]
    await chat(client, message="second", conversation_id=thread)
    page = (await client.get(f"/v1/conversations/{thread}", params={"limit": 3})).json()
    assert [m["seq"] for m in page["messages"]] == [6, 7, 8] and page["earlier"] == 6
    older = (await client.get(f"/v1/conversations/{thread}", params={"limit": 5, "before": 6})).json()
    assert [m["seq"] for m in older["messages"]] == [1, 2, 3, 4, 5] and older["earlier"] is None


async def test_a_full_conversation_is_409_before_streaming(
    tmp_path: Path, store: SqliteConversationStore, runner: FakeRunner
) -> None:
    app = create_app(Settings(home=tmp_path, max_conversation_messages=10), store=store, runner=runner)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        thread = sse_events(await chat(c, message="first"))[0]["threadId"]
        await chat(c, message="second", conversation_id=thread)  # 8 messages: still room
        await chat(c, message="third", conversation_id=thread)  # 12
        body = error(await chat(c, message="fourth", conversation_id=thread), 409)
    assert body["code"] == "conversation_full" and "start a new conversation" in body["message"]
    assert len(runner.calls) == 3


async def test_a_user_over_the_storage_quota_is_409_until_a_conversation_is_deleted(
    tmp_path: Path, store: SqliteConversationStore, runner: FakeRunner
) -> None:
    # Probe 20 (R20-3): one tenant stored 4 MiB/s with nothing to stop it, in a store all share.
    settings = Settings(home=tmp_path, max_user_store_bytes=2**20)
    app = create_app(settings, store=store, runner=runner)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        thread = sse_events(await chat(c, message="first"))[0]["threadId"]
        principal = runner.calls[0][0]
        conversation = await store.create_conversation(principal, "big")
        await store.append_messages(
            principal, conversation.id, [ChatMessage(role="user", content="x" * 2**20)]
        )
        body = error(await chat(c, message="second", conversation_id=thread), 409)
        assert body["code"] == "storage_quota_exceeded" and "delete some" in body["message"]
        assert (await c.delete(f"/v1/conversations/{conversation.id}")).status_code == 204
        assert sse_events(await chat(c, message="third", conversation_id=thread))
    assert len(runner.calls) == 2


async def test_a_before_past_any_seq_is_422_not_a_server_error(client: httpx.AsyncClient) -> None:
    # Probe 12 (R12-6): before=2**63 overflowed SQLite's integer and answered 500.
    thread = sse_events(await chat(client, message="first"))[0]["threadId"]
    response = await client.get(f"/v1/conversations/{thread}", params={"before": 2**63})
    assert error(response, 422)["code"]


async def test_a_page_holds_its_place_until_the_client_has_read_it() -> None:
    # Probe 14 (R14-1): the place was freed when the handler returned, so one user left 200 pages
    # of 3.7 MB unread in the server's socket buffers (752 MiB of the host's TCP memory).
    from loom.api.page_limits import page_readers
    from loom.api.routes.conversations import SEND_CHUNK, _sent
    from loom.identity import Principal

    readers = page_readers()
    body = b"x" * (3 * SEND_CHUNK + 5)
    pieces = _sent(body, readers.take(Principal(tenant_id="t1", user_id="alice")))
    assert len(await anext(pieces)) == SEND_CHUNK
    assert readers.reading[("t1",)] == 1  # sent in part: still held
    assert b"".join([b"x" * SEND_CHUNK] + [p async for p in pieces]) == body
    assert not readers.reading  # read to the end: freed
    left = _sent(body, readers.take(Principal(tenant_id="t1", user_id="alice")))
    await anext(left)
    await left.aclose()  # the client went away mid-page
    assert not readers.reading


async def test_a_page_written_from_the_stored_text_is_what_the_schema_would_write(
    store: SqliteConversationStore,
) -> None:
    # Probe 15 (R15-5): decoding and encoding a page's result tables again on every GET was the
    # interpreter time that slowed other tenants; the page is now written from the stored JSON.
    from loom.api.routes.conversations import _page
    from loom.api.schemas import ConversationDetail, ConversationOut, MessageOut

    principal = DEV_PRINCIPAL
    messages = [
        ChatMessage(role="user", content='Straße "quoted" \\ back\nslash ✓'),
        ChatMessage(role="assistant", tool_calls=(ToolCall(id="c1", name="nl2sql", arguments='{"q": "é"}'),)),
        ChatMessage(role="tool", content='{"rows": [[1, "x"]]}', tool_call_id="c1"),
        ChatMessage(role="assistant", content="done 🎉"),
    ]
    metadata: list[dict[str, Any]] = [
        {},
        {},
        {"table": {"rows": [[1, "ü", None, 2.5]], "when": dt.date(2024, 1, 2)}},
        {"source": "sales"},
    ]
    made = await store.create_conversation(principal, "t", messages=messages, metadata=metadata)
    body = await _page(store, principal, made.id, 100, None)
    conversation = await store.get_conversation(principal, made.id)
    assert conversation is not None
    stored = await store.messages(principal, made.id, limit=100)
    expected = ConversationDetail(
        **ConversationOut.of(conversation).model_dump(),
        messages=[MessageOut.of(m) for m in stored],
        earlier=None,
    )
    assert json.loads(body) == json.loads(expected.model_dump_json())
    older = json.loads(await _page(store, principal, made.id, 2, None))
    assert [m["seq"] for m in older["messages"]] == [3, 4] and older["earlier"] == 3
