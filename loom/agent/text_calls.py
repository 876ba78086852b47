"""Tool calls a model wrote as text instead of through the `tools` API.

Small open models often answer a tool-calling request with the call itself as JSON in their text —
bare, in a ```json block, or in the `<tool_call>…</tool_call>` tags of their chat template —
which the endpoint passes on as plain text. When the whole reply is such a call to a tool the
turn offered, it is read as that call; anything else stays text.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection

from loom.agent.model import ToolCall

TAG_OPEN, TAG_CLOSE = "<tool_call>", "</tool_call>"


def text_calls(text: str, offered: Collection[str]) -> tuple[ToolCall, ...]:
    """The calls `text` consists of, when it is nothing but calls of offered tools (else none)."""
    parts = _tagged(text.strip()) if TAG_OPEN in text else [_unfenced(text.strip())]
    calls: list[ToolCall] = []
    for part in parts:
        try:
            parsed = json.loads(part)
        except json.JSONDecodeError:
            return ()
        for item in parsed if isinstance(parsed, list) else [parsed]:
            call = _call(item, offered)
            if call is None:
                return ()
            calls.append(call)
    return tuple(calls)


def _tagged(text: str) -> list[str]:
    """The bodies of `<tool_call>` tags; any other text around them means this is not just calls."""
    parts, rest = [], text
    while rest:
        start = rest.find(TAG_OPEN)
        end = rest.find(TAG_CLOSE, start)
        if start != 0 or end < 0:
            return ["not only calls"]
        parts.append(rest[len(TAG_OPEN) : end].strip())
        rest = rest[end + len(TAG_CLOSE) :].strip()
    return parts


def _unfenced(text: str) -> str:
    """The body of a reply that is one fenced block (```json … ```), else the text itself."""
    if not (text.startswith("```") and text.endswith("```") and text.count("```") == 2):
        return text
    body = text[3:-3]
    first, _, rest = body.partition("\n")
    return rest if first.strip().lower() in {"", "json"} else body


def _call(item: object, offered: Collection[str]) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    function = item.get("function") if isinstance(item.get("function"), dict) else item
    assert isinstance(function, dict)
    name = function.get("name")
    arguments = function.get("arguments", function.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or name not in offered or not isinstance(arguments, dict):
        return None
    return ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=name, arguments=json.dumps(arguments))
