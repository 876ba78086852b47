"""MafChatModel over the real HTTP path: MAF -> openai SDK -> httpx2 -> a local OpenAI-compatible server.

Azure requests are checked at the transport (httpx2.MockTransport), never against a real host.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Sequence
from typing import Any

import httpx2
import pytest
from agent_framework.exceptions import ChatClientException
from azure.core.credentials import AccessToken
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loom.agent.model import (
    ChatMessage,
    ChatModel,
    ModelError,
    ModelEvent,
    ModelReply,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)
from loom.agent.model_maf import build_chat_model
from loom.settings import Settings
from tests.conftest import NetworkForbidden
from tests.support.openai_server import OpenAICompatServer

ASK = {
    "type": "function",
    "function": {
        "name": "ask_data",
        "description": "Answer a question from the data.",
        "parameters": {"type": "object", "properties": {"question": {"type": "string"}}},
    },
}
QUESTION = [ChatMessage("system", "You answer questions."), ChatMessage("user", "How many orders?")]
SECRET = "sk-test-secret-0123456789"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"model_provider": "openai", "model": "test-model", "model_max_retries": 2}
    return Settings(_env_file=None, **(values | overrides))


def model_for(server: OpenAICompatServer, **overrides: Any) -> ChatModel:
    model = build_chat_model(settings(openai_base_url=server.base_url, **overrides))
    assert model is not None
    return model


async def collect(model: ChatModel, messages: Sequence[ChatMessage], tools: Any = ()) -> list[ModelEvent]:
    return [event async for event in model.stream(messages, tools)]


# --- streaming and not ------------------------------------------------------------------------


async def test_streamed_text_arrives_in_deltas_then_one_reply(openai_server: OpenAICompatServer) -> None:
    openai_server.queue_text("There were 1,204 orders last quarter.")
    events = await collect(model_for(openai_server), QUESTION)

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) >= 3
    assert isinstance(events[-1], ModelReply)
    assert sum(isinstance(e, ModelReply) for e in events) == 1
    assert events[-1].text == "".join(d.text for d in deltas) == "There were 1,204 orders last quarter."
    assert events[-1].usage["total_tokens"] > 0
    assert openai_server.requests[0]["stream"] is True


async def test_streamed_tool_call_arrives_in_pieces_then_complete(openai_server: OpenAICompatServer) -> None:
    openai_server.queue_tool_call("ask_data", {"question": "orders by region"}, call_id="call_abc")
    events = await collect(model_for(openai_server), QUESTION, [ASK])

    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(pieces) >= 3
    assert {p.id for p in pieces} == {"call_abc"}
    assert pieces[0].name == "ask_data"
    assert all(p.name is None for p in pieces[1:])
    reply = events[-1]
    assert isinstance(reply, ModelReply)
    assert reply.text == ""
    assert reply.tool_calls == (ToolCall("call_abc", "ask_data", "".join(p.arguments for p in pieces)),)
    assert json.loads(reply.tool_calls[0].arguments) == {"question": "orders by region"}
    assert openai_server.requests[0]["tools"] == [ASK]


async def test_parallel_streamed_calls_keep_their_own_ids_and_names(
    openai_server: OpenAICompatServer,
) -> None:
    openai_server.queue_tool_calls(
        ("ask_data", {"question": "a"}, "c1"), ("ask_data", {"question": "b"}, "c2")
    )
    events = await collect(model_for(openai_server), QUESTION, [ASK])

    named = [e for e in events if isinstance(e, ToolCallDelta) and e.name]
    assert [(e.id, e.name) for e in named] == [("c1", "ask_data"), ("c2", "ask_data")]
    reply = events[-1]
    assert isinstance(reply, ModelReply)
    assert [(c.id, json.loads(c.arguments)) for c in reply.tool_calls] == [
        ("c1", {"question": "a"}),
        ("c2", {"question": "b"}),
    ]


async def test_complete_returns_text_and_usage(openai_server: OpenAICompatServer) -> None:
    openai_server.queue_text("Forty-two.")
    reply = await model_for(openai_server).complete(QUESTION)

    assert reply == ModelReply(text="Forty-two.", usage=reply.usage, finish="stop")
    assert set(reply.usage) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert openai_server.requests[0].get("stream") in (None, False)
    assert "tools" not in openai_server.requests[0]


async def test_every_call_bounds_its_output_and_sends_a_temperature_only_when_set(
    openai_server: OpenAICompatServer,
) -> None:
    openai_server.queue_text("a")
    openai_server.queue_text("b")
    await model_for(openai_server).complete(QUESTION)
    await collect(model_for(openai_server, model_temperature=0, model_max_output_tokens=64), QUESTION)
    default, pinned = openai_server.requests
    assert default["max_completion_tokens"] == 1024 and "temperature" not in default
    assert pinned["max_completion_tokens"] == 64 and pinned["temperature"] == 0


async def test_complete_returns_a_tool_call(openai_server: OpenAICompatServer) -> None:
    openai_server.queue_tool_call("ask_data", {"question": "x"}, call_id="call_1")
    reply = await model_for(openai_server).complete(QUESTION, [ASK])

    assert reply.text == ""
    assert reply.tool_calls == (ToolCall("call_1", "ask_data", json.dumps({"question": "x"})),)


async def test_a_tool_round_trip_reaches_the_server_in_openai_wire_format(
    openai_server: OpenAICompatServer,
) -> None:
    call = ToolCall("call_7", "ask_data", '{"question": "How many orders?"}')
    history = [
        *QUESTION,
        ChatMessage("assistant", "Let me look.", tool_calls=(call,)),
        ChatMessage("tool", '{"rows": [[1204]]}', tool_call_id="call_7"),
    ]
    reply = await model_for(openai_server).complete(history, [ASK])

    sent = openai_server.requests[0]["messages"]
    assert sent[0] == {"role": "system", "content": "You answer questions."}
    assert sent[2]["role"] == "assistant"
    assert sent[2]["tool_calls"] == [
        {"id": "call_7", "type": "function", "function": {"name": "ask_data", "arguments": call.arguments}}
    ]
    assert "Let me look." in json.dumps(sent[2].get("content"))
    assert sent[3] == {"role": "tool", "tool_call_id": "call_7", "content": '{"rows": [[1204]]}'}
    # The rule-based responder answers a tool result by quoting it.
    assert "1204" in reply.text


# --- retries and errors -------------------------------------------------------------------------


@pytest.mark.parametrize("header", [{"Retry-After": "0.3"}, {"retry-after-ms": "300"}])
async def test_a_429_is_retried_after_the_servers_retry_after(
    openai_server: OpenAICompatServer, header: dict[str, str]
) -> None:
    openai_server.queue_error(429, headers=header)
    openai_server.queue_text("ok")
    events = await collect(model_for(openai_server), QUESTION)

    assert isinstance(events[-1], ModelReply)
    assert events[-1].text == "ok"
    first, second = openai_server.recorded
    assert second.received_at - first.received_at >= 0.3
    assert second.headers["x-stainless-retry-count"] == "1"


async def test_a_persistent_500_ends_in_a_readable_model_error(openai_server: OpenAICompatServer) -> None:
    body = {"error": {"message": f"backend down (key {SECRET})", "type": "server_error"}}
    for _ in range(3):
        openai_server.queue_error(500, headers={"Retry-After": "0.05"}, body=body)
    model = model_for(openai_server, openai_api_key=SECRET)

    with pytest.raises(ModelError) as raised:
        await collect(model, QUESTION)

    assert len(openai_server.requests) == 3  # the first try and model_max_retries=2 retries
    message = str(raised.value)
    assert openai_server.base_url in message
    assert "500 Internal Server Error after 2 retries" in message
    assert "backend down" in message
    assert SECRET not in message


async def test_a_body_that_is_not_json_is_the_endpoints_error_not_ours(
    openai_server: OpenAICompatServer,
) -> None:
    # It was internal_error with a traceback in the log (probe 21: R21-3).
    openai_server.queue_raw(b"<html>502 from a proxy</html>")
    with pytest.raises(ModelError, match="is not JSON"):
        await model_for(openai_server).complete(QUESTION)
    openai_server.queue_raw(b"data: {not json\n\n", content_type="text/event-stream")
    with pytest.raises(ModelError, match="a part of its reply is not JSON"):
        await collect(model_for(openai_server), QUESTION)


async def test_a_response_past_its_byte_bound_is_stopped_and_not_retried(
    openai_server: OpenAICompatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not streamed, the SDK reads a body whole and parses it before anything counts its characters:
    # 30 MiB of `{},` held the loop 2.5 s and 800 MB (R24-4). The bound is what the reply bounds
    # allow, in JSON: here 6 x 2,000 characters and 512 bytes for each of 96 + 16 events.
    monkeypatch.setattr(  # reply bounds as small as Settings allow
        "loom.agent.reply_bounds.ReplyBounds.of", classmethod(lambda cls, s: cls(2_000, 5.0, 96, 16))
    )
    openai_server.queue_raw(
        b'{"choices": [{"message": {"content": "x"}}], "x": [', *[b"{}," * 1_000] * 64, b"{}]}"
    )
    with pytest.raises(ModelError, match="stopped reading its reply: its response passed 69,344 bytes"):
        await model_for(openai_server).complete(QUESTION)
    assert len(openai_server.requests) == 1


async def test_a_non_retryable_status_fails_at_once(openai_server: OpenAICompatServer) -> None:
    error = {"message": "Incorrect API key", "code": "invalid_api_key"}
    openai_server.queue_error(401, body={"error": error})
    with pytest.raises(ModelError, match="answered 401 Unauthorized: Incorrect API key — check the API key"):
        await model_for(openai_server).complete(QUESTION)
    assert len(openai_server.requests) == 1


async def test_an_unreachable_endpoint_is_a_model_error_after_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    model = build_chat_model(settings(openai_base_url=url, model_max_retries=1))
    assert model is not None

    with caplog.at_level(logging.INFO, logger="openai"), pytest.raises(ModelError) as raised:
        await model.complete(QUESTION)

    assert str(raised.value) == (
        f"The model endpoint {url} is unreachable (connection refused) after 1 retry — check OPENAI_BASE_URL."
    )
    # Without Retry-After the SDK backs off 0.5 s * 2**n, less up to 25 % jitter.
    [retry] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Retrying request in")]
    assert 0.375 <= float(retry.split()[3]) <= 0.5


def closed_port() -> int:
    # A port that was free a moment ago and has no listener: connecting is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_servers_default_responder_follows_the_conversation_shape(
    openai_server: OpenAICompatServer,
) -> None:
    model = model_for(openai_server)
    asked = await model.complete(QUESTION, [ASK])
    [call] = asked.tool_calls
    assert call.name == "ask_data"
    assert json.loads(call.arguments) == {"question": "How many orders?"}

    result = ChatMessage("tool", "x" * 300, tool_call_id=call.id)
    answered = await model.complete([*QUESTION, asked.as_message(), result], [ASK])
    assert answered.text.endswith("x" * 200)
    assert "x" * 201 not in answered.text

    openai_server.default_sql = "SELECT COUNT(*) FROM orders"
    assert (await model.complete(QUESTION)).text == "```sql\nSELECT COUNT(*) FROM orders\n```"


# --- construction ---------------------------------------------------------------------------------


def test_offline_has_no_model() -> None:
    assert build_chat_model(settings(model_provider="offline")) is None


async def test_an_openai_compatible_base_url_is_honoured_without_a_key(
    openai_server: OpenAICompatServer,
) -> None:
    await model_for(openai_server, model="qwen2.5").complete([ChatMessage("user", "hi")])

    [request] = openai_server.recorded
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "qwen2.5"
    assert request.headers["authorization"] == "Bearer not-needed"


class RecordingTransport:
    """An httpx2 transport that answers every request with a small chat completion."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []
        self.transport = httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        message = {"role": "assistant", "content": "hello"}
        return httpx2.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt-4o",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            },
        )


class FakeCredential:
    """A TokenCredential that records the scopes it was asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("fake-entra-token", 4_102_444_800)


def azure_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_provider": "azure",
        "azure_openai_endpoint": "https://loom-test.openai.azure.us",
        "azure_openai_deployment": "gpt-4o-prod",
        "azure_openai_api_version": "2024-10-21",
    }
    return settings(**(values | overrides))


async def call_azure(config: Settings, credential: object | None = None) -> httpx2.Request:
    recorder = RecordingTransport()
    async with httpx2.AsyncClient(transport=recorder.transport) as http:
        model = build_chat_model(config, http_client=http, credential=credential)
        assert model is not None
        assert (await model.complete([ChatMessage("user", "hi")])).text == "hello"
    [request] = recorder.requests
    assert request.url.path == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert request.url.params["api-version"] == "2024-10-21"
    return request


async def test_azure_with_a_key_sends_it_as_the_api_key_header() -> None:
    request = await call_azure(azure_settings(azure_openai_api_key="azure-key"))
    assert request.headers["api-key"] == "azure-key"
    assert "authorization" not in request.headers


@pytest.mark.parametrize(
    ("cloud", "scope"),
    [
        ("AzureCloud", "https://cognitiveservices.azure.com/.default"),
        ("AzureUSGovernment", "https://cognitiveservices.azure.us/.default"),
    ],
)
async def test_azure_without_a_key_uses_an_entra_token_for_the_clouds_scope(cloud: str, scope: str) -> None:
    credential = FakeCredential()
    request = await call_azure(azure_settings(azure_cloud=cloud), credential)

    assert credential.scopes == [(scope,)]
    assert request.headers["authorization"] == "Bearer fake-entra-token"
    assert "api-key" not in request.headers


async def test_a_real_host_cannot_be_reached_from_tests() -> None:
    model = build_chat_model(settings(openai_api_key=SECRET, model_max_retries=0))
    assert model is not None
    # Not a ModelError: the guard's failure is a test bug and must not pass as an endpoint outage.
    with pytest.raises(ChatClientException) as raised:
        await model.complete(QUESTION)
    assert isinstance(raised.value.__cause__, NetworkForbidden)


# --- tracing ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The process's tracer provider, recording in memory (OpenTelemetry allows setting it once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.mark.parametrize("tracing", [True, False])
async def test_model_calls_are_traced_only_when_tracing_is_on(
    openai_server: OpenAICompatServer, spans: InMemorySpanExporter, tracing: bool
) -> None:
    spans.clear()
    openai_server.queue_text("traced")
    openai_server.queue_text("traced too")
    model = model_for(openai_server, model_tracing=tracing)

    await collect(model, QUESTION)
    await model.complete(QUESTION)

    chat_spans = [s for s in spans.get_finished_spans() if s.name == "chat test-model"]
    assert len(chat_spans) == (2 if tracing else 0)
    if tracing:
        models = [dict(s.attributes or {}).get("gen_ai.request.model") for s in chat_spans]
        assert models == ["test-model"] * len(chat_spans)


def chunk(delta: dict[str, Any] | None, choices: Any = ..., finish: str | None = None) -> bytes:
    body: dict[str, Any] = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}] if choices is ... else choices
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def test_updates_that_carry_no_delta_count_towards_the_bound(openai_server: OpenAICompatServer) -> None:
    # R22-2: `"choices": []` chunks became no event and were never counted: 200,000 took 21 s.
    openai_server.queue_raw(
        *[chunk(None, choices=[])] * 3_000, b"data: [DONE]\n\n", content_type="text/event-stream"
    )
    model = model_for(openai_server, model_max_output_tokens=512)
    with pytest.raises(ModelError, match="its stream passed 1,104 events"):
        await collect(model, QUESTION)


async def test_a_stream_labelled_otherwise_is_counted_all_the_same(openai_server: OpenAICompatServer) -> None:
    # R23-1: the SDK reads a streamed reply as SSE whatever its content type; as text/plain,
    # 200,000 empty events went uncounted (17 s).
    openai_server.queue_raw(
        *[chunk(None, choices=[])] * 3_000, b"data: [DONE]\n\n", content_type="text/plain"
    )
    with pytest.raises(ModelError, match="its stream passed"):
        await collect(model_for(openai_server, model_max_output_tokens=512), QUESTION)


async def test_replies_are_asked_uncompressed_and_a_compressed_one_is_refused_unread(
    openai_server: OpenAICompatServer,
) -> None:
    # R23-1, R23-4: httpx inflates after the count: 0.5 MB of gzip became 512 MiB read whole.
    import gzip

    bomb = gzip.compress(b'{"choices": [{"message": {"content": "x"}}]' + b" " * 2**22 + b"}")
    openai_server.queue_raw(bomb, content_type="application/json", headers={"Content-Encoding": "gzip"})
    with pytest.raises(ModelError, match="gzip-compressed reply, though asked for none"):
        await model_for(openai_server).complete(QUESTION)
    assert openai_server.recorded[-1].headers["accept-encoding"] == "identity"
    assert len(openai_server.requests) == 1  # not retried


async def test_a_reply_of_the_wrong_shape_is_the_endpoints_error(openai_server: OpenAICompatServer) -> None:
    # R22-3: `"choices": null` was internal_error (TypeError inside MAF) with a traceback.
    openai_server.queue_raw(chunk(None, choices=None), b"data: [DONE]\n\n", content_type="text/event-stream")
    with pytest.raises(ModelError, match="could not be read"):
        await collect(model_for(openai_server), QUESTION)


async def test_a_lone_surrogate_from_the_model_is_replaced_not_passed_on(
    openai_server: OpenAICompatServer,
) -> None:
    # R22-3: valid JSON, but no UTF-8 encoder takes it: the stream's encoder failed mid-turn.
    openai_server.queue_raw(
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"a\\ud800b"},"finish_reason":"length"}]}\n\n',
        b"data: [DONE]\n\n",
        content_type="text/event-stream",
    )
    events = await collect(model_for(openai_server), QUESTION)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "a\ufffdb"
    text.encode("utf-8")
    assert isinstance(events[-1], ModelReply) and events[-1].finish == "length"


class _Chunks(httpx2.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> Any:
        for chunk in self.chunks:
            yield chunk


@pytest.mark.parametrize(
    "chunks",
    [
        [b"da", b"ta: {}\n\n"] * 200,  # each event's `data:` split between two reads
        [b": keep-alive\n"] * 1_000,  # comment lines: no event, but a line each for the SDK's decoder
        [b"\r" * 1_000],  # lines ended by a lone CR, as the SDK splits them (R24-1: 19 s for 8 MiB)
    ],
)
async def test_a_streams_events_are_counted_however_they_arrive(chunks: list[bytes]) -> None:
    from loom.agent.model_http import ResponseTooLarge, _CappedBody

    capped = _CappedBody(_Chunks(chunks), 2**20, max_events=100)
    with pytest.raises(ResponseTooLarge, match="passed 100 events"):
        async for _ in capped:
            pass
