"""What one turn did, read from its AG-UI events: the answer, each tool call with its result.

Events arrive as the chat stream's JSON (camelCase), whether the turn ran in this process or on a
server, so both ways of running a suite are scored from the same record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

RESULT_TABLE = "loom.result_table"


@dataclass
class CallRecord:
    id: str
    name: str
    arguments_text: str = ""
    result: dict[str, Any] | None = None  # what the model read (the tool's for_model JSON)
    table: dict[str, Any] | None = None  # the result table the user saw, with the executed query

    @property
    def arguments(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.arguments_text or "{}")
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @property
    def error(self) -> dict[str, Any] | None:
        if self.result is None:
            return {"code": "no_result", "message": "the call got no result"}
        error = self.result.get("error")
        return error if isinstance(error, dict) else None

    @property
    def query(self) -> str | None:
        """The query the call ran, when it ran one and it succeeded."""
        if self.error is not None or self.result is None:
            return None
        query = self.result.get("query")
        return query if isinstance(query, str) else None

    @property
    def repairs(self) -> list[str]:
        """The error codes of the queries the tool wrote before the one that stood, in order: what
        its repair loop fixed (a call that failed outright lists none; its error says why)."""
        attempts = (self.result or {}).get("attempts")
        if not isinstance(attempts, list):
            return []
        return [str((a.get("error") or {}).get("code")) for a in attempts if isinstance(a, dict)]

    @property
    def mends(self) -> int:
        """How many of those failed queries were mended without the model (the rest: by it)."""
        attempts = (self.result or {}).get("attempts")
        if not isinstance(attempts, list):
            return 0
        return sum(1 for a in attempts if isinstance(a, dict) and a.get("mended"))


@dataclass
class TurnRecord:
    question: str
    answer: str = ""
    calls: list[CallRecord] = field(default_factory=list)
    error: dict[str, str] | None = None  # RUN_ERROR's code and message, or the runner's own
    conversation_id: str | None = None
    latency_s: float = 0.0
    tokens: int | None = None  # None when not known (a turn run on a server)

    @property
    def queries(self) -> list[str]:
        """The queries that ran and succeeded, in order."""
        return [q for c in self.calls if (q := c.query) is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "calls": [
                {
                    "name": c.name,
                    "arguments": c.arguments,
                    "query": c.query,
                    "error": c.error,
                    "repairs": c.repairs,
                    "mends": c.mends,
                }
                for c in self.calls
            ],
            "error": self.error,
            "latency_s": round(self.latency_s, 3),
            "tokens": self.tokens,
        }


class TurnObserver:
    """Feed it the turn's events in order; `record` is the turn so far."""

    def __init__(self, question: str) -> None:
        self.record = TurnRecord(question=question)
        self._calls: dict[str, CallRecord] = {}

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        handler = _HANDLERS.get(str(kind))
        if handler is not None:
            handler(self, event)

    def _started(self, event: dict[str, Any]) -> None:
        self.record.conversation_id = event.get("threadId")

    def _text(self, event: dict[str, Any]) -> None:
        self.record.answer += str(event.get("delta", ""))

    def _call(self, event: dict[str, Any]) -> None:
        call = CallRecord(id=str(event.get("toolCallId")), name=str(event.get("toolCallName")))
        self._calls[call.id] = call
        self.record.calls.append(call)

    def _args(self, event: dict[str, Any]) -> None:
        call = self._calls.get(str(event.get("toolCallId")))
        if call is not None:
            call.arguments_text += str(event.get("delta", ""))

    def _result(self, event: dict[str, Any]) -> None:
        call = self._calls.get(str(event.get("toolCallId")))
        if call is None:
            return
        try:
            parsed = json.loads(str(event.get("content", "")))
        except json.JSONDecodeError:
            parsed = {"text": event.get("content")}
        call.result = parsed if isinstance(parsed, dict) else {"value": parsed}

    def _custom(self, event: dict[str, Any]) -> None:
        value = event.get("value")
        if event.get("name") == RESULT_TABLE and isinstance(value, dict):
            call = self._calls.get(str(value.get("tool_call_id")))
            if call is not None:
                call.table = value

    def _error(self, event: dict[str, Any]) -> None:
        self.record.error = {"code": str(event.get("code") or "error"), "message": str(event.get("message"))}


_HANDLERS = {
    "RUN_STARTED": TurnObserver._started,
    "TEXT_MESSAGE_CONTENT": TurnObserver._text,
    "TOOL_CALL_START": TurnObserver._call,
    "TOOL_CALL_ARGS": TurnObserver._args,
    "TOOL_CALL_RESULT": TurnObserver._result,
    "CUSTOM": TurnObserver._custom,
    "RUN_ERROR": TurnObserver._error,
}
