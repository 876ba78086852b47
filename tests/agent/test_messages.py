"""What the model reads of the conversation so far: whole turns, newest first, within a budget."""

from __future__ import annotations

import datetime as dt
import itertools

from loom.agent.messages import HISTORY_MESSAGES, OLD_RESULT_CHARS, SHORTENED, build_messages
from loom.agent.model import ChatMessage, ToolCall
from loom.agent.store import StoredMessage
from loom.engines.sources import DuckDBSource
from loom.settings import DEFAULTS
from loom.tools.registry import TOOLS

CHARS = DEFAULTS.history_max_chars

SOURCES = [DuckDBSource(name="sales", location="/nowhere", description="Retail sales")]
_seq = itertools.count(1)


def stored(message: ChatMessage) -> StoredMessage:
    calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    return StoredMessage(
        id=f"m{next(_seq)}",
        conversation_id="c",
        seq=next(_seq),
        role=message.role,
        content=message.content,
        tool_calls=calls,
        tool_call_id=message.tool_call_id,
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )


def turn(n: int, result_chars: int = 100) -> list[ChatMessage]:
    call = ToolCall(id=f"call_{n}", name="nl2sql", arguments=f'{{"question": "q{n}"}}')
    return [
        ChatMessage("user", f"question {n}"),
        ChatMessage("assistant", "", (call,)),
        ChatMessage("tool", "r" * result_chars, tool_call_id=call.id),
        ChatMessage("assistant", f"answer {n}"),
    ]


def history(*turns: list[ChatMessage]) -> list[StoredMessage]:
    return [stored(m) for t in turns for m in t]


def read(messages: list[ChatMessage]) -> list[ChatMessage]:
    assert messages[0].role == "system"
    return messages[1:]


def test_a_short_conversation_is_read_whole() -> None:
    turns = [turn(1), turn(2)]
    assert read(build_messages(SOURCES, TOOLS, history(*turns), CHARS)) == turns[0] + turns[1]


def test_older_turns_go_first_and_whole_when_over_budget() -> None:
    turns = [turn(n, result_chars=1_000) for n in range(10)]
    kept = read(build_messages(SOURCES, TOOLS, history(*turns), max_chars=4_000))

    assert kept[0] == ChatMessage("user", "question 7")  # three ~1,035-char turns fit; cut at a turn
    assert kept[-4:] == turns[-1]  # the newest turn as it was
    assert sum(len(m.content) for m in kept) <= 4_000
    calls = {c.id for m in kept for c in m.tool_calls}
    assert {m.tool_call_id for m in kept if m.role == "tool"} == calls  # every result has its call


def test_earlier_tool_results_are_shortened_and_the_newest_is_not() -> None:
    turns = [turn(1, result_chars=10_000), turn(2, result_chars=10_000)]
    first, second = read(build_messages(SOURCES, TOOLS, history(*turns), max_chars=30_000))[2::4][:2]

    assert first.content == "r" * OLD_RESULT_CHARS + SHORTENED
    assert second.content == "r" * 10_000


def test_a_newest_turn_over_the_budget_alone_is_kept_shortened() -> None:
    kept = read(
        build_messages(SOURCES, TOOLS, history(turn(1), turn(2, result_chars=50_000)), max_chars=1_000)
    )
    assert [m.content for m in kept if m.role == "user"] == ["question 2"]
    assert kept[2].content.endswith(SHORTENED)


def test_the_message_cap_still_holds() -> None:
    turns = [turn(n, result_chars=1) for n in range(30)]
    kept = read(build_messages(SOURCES, TOOLS, history(*turns), CHARS))
    assert len(kept) <= HISTORY_MESSAGES
    assert kept[0].role == "user"
    assert kept[-4:] == turns[-1]


def test_messages_before_the_first_user_message_are_dropped() -> None:
    orphan = ChatMessage("tool", "a result without its call", tool_call_id="lost")
    assert read(build_messages(SOURCES, TOOLS, history([orphan], turn(1)), CHARS)) == turn(1)
