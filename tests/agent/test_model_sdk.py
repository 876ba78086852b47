"""The SDK clients that send messages and tools as built: the body is the plain SDK's, for every
kind of message and parameter a turn sends, streamed or not, to OpenAI and to Azure OpenAI."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest

from loom.agent.model_sdk import AsBuiltAzureOpenAI, AsBuiltOpenAI

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "nl2sql",
            "description": "Look up figures.",
            "parameters": {
                "type": "object",
                "properties": {
                    "question": {"type": "string"},
                    "source": {"type": "string", "enum": ["sales"]},
                },
                "required": ["question"],
            },
        },
    }
]
MESSAGES = [
    {"role": "system", "content": "You are Loom. ✓ ünïcode"},
    {"role": "user", "content": "How many orders?"},
    {
        "role": "assistant",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "nl2sql", "arguments": '{"question": "q"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"rows": [[1]]}'},
]
REPLY = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "1"}, "finish_reason": "stop"}],
}


def recording() -> tuple[httpx2.AsyncClient, list[httpx2.Request]]:
    seen: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=REPLY)

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handle)), seen


def clients(azure: bool, http: httpx2.AsyncClient) -> tuple[Any, Any]:
    if azure:
        common: dict[str, Any] = {
            "azure_endpoint": "https://x.openai.azure.us",
            "azure_deployment": "gpt",
            "api_version": "2024-10-21",
            "api_key": "k",
            "http_client": http,
        }
        return openai.AsyncAzureOpenAI(**common), AsBuiltAzureOpenAI(**common)
    common = {"base_url": "http://model.invalid/v1", "api_key": "k", "http_client": http}
    return openai.AsyncOpenAI(**common), AsBuiltOpenAI(**common)


@pytest.mark.parametrize("azure", [False, True])
@pytest.mark.parametrize(
    "params",
    [
        {"messages": MESSAGES, "tools": TOOLS, "tool_choice": "auto", "temperature": 0.0},
        {"messages": MESSAGES, "max_completion_tokens": 64},  # no tools offered
        {"messages": tuple(MESSAGES), "tools": tuple(TOOLS), "extra_body": {"top_k": 5}},
        {"messages": MESSAGES, "tools": openai.omit, "stream_options": {"include_usage": True}},
    ],
)
async def test_the_body_sent_is_the_sdks_own(azure: bool, params: dict[str, Any]) -> None:
    http, seen = recording()
    plain, as_built = clients(azure, http)
    for client in (plain, as_built):
        # Iterables are read once: each client gets its own.
        fresh = {
            k: iter(list(v)) if k in ("messages", "tools") and not isinstance(v, list | openai.Omit) else v
            for k, v in params.items()
        }
        await client.chat.completions.create(model="gpt", **fresh)
    first, second = seen
    assert first.url == second.url and first.headers["content-type"] == second.headers["content-type"]
    assert json.loads(second.content) == json.loads(first.content)
    assert json.loads(second.content)["messages"] == MESSAGES
