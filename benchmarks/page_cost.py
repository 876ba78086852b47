"""What one conversation page costs the server's interpreter: written from the stored JSON text
(`GET /v1/conversations/{id}` now) against decoding the stored messages into the response schema
and encoding it again (before probe 15), in one run.

Probe 15 (R15-5): eight users of one tenant looping page GETs slowed another tenant's turns from
p50 0.23 s to 2.27 s. Pages are built on one reader thread, but building one holds the
interpreter, and each GET decoded and re-encoded megabytes of stored result tables. This
measures the CPU time of both ways on the same page (four answers with 8,000-row tables, ~3.6 MB)
and checks that they write the same JSON.

Run: `python -m benchmarks.page_cost [--rounds 15]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from loom.agent.model import ChatMessage, ToolCall
from loom.agent.sqlite_store import SqliteConversationStore
from loom.api.routes.conversations import PAGE_BYTES, _page
from loom.api.schemas import ConversationDetail, ConversationOut, MessageOut
from loom.identity import DEV_PRINCIPAL as PRINCIPAL
from loom.identity import Principal

ROWS = [[f"value-{i}-" + "x" * 80, i, i * 1.5] for i in range(8000)]


async def conversation(store: SqliteConversationStore, principal: Principal = PRINCIPAL) -> str:
    """A conversation of `principal`'s: four answers, each with an 8,000-row table (~3.6 MB page)."""
    made = await store.create_conversation(principal, "page cost")
    columns = [
        {"name": "s", "type": "VARCHAR"},
        {"name": "i", "type": "BIGINT"},
        {"name": "f", "type": "DOUBLE"},
    ]
    for turn in range(4):
        call = ToolCall(id=f"c{turn}", name="nl2sql", arguments='{"question": "rows"}')
        messages = [
            ChatMessage(role="user", content="rows please"),
            ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(
                role="tool", content=json.dumps({"result": {"rows": ROWS[:50]}}), tool_call_id=call.id
            ),
            ChatMessage(role="assistant", content="Here they are."),
        ]
        metadata = [{}, {}, {"table": {"columns": columns, "rows": ROWS}}, {}]
        await store.append_messages(principal, made.id, messages, metadata)
    return made.id


async def schema_round_trip(store: SqliteConversationStore, conversation_id: str) -> bytes:
    """The page as it was written before: stored messages decoded, then the schema encoded."""
    found = await store.get_conversation(PRINCIPAL, conversation_id)
    assert found is not None
    messages = await store.messages(PRINCIPAL, conversation_id, limit=100, max_bytes=PAGE_BYTES)
    detail = ConversationDetail(
        **ConversationOut.of(found).model_dump(), messages=[MessageOut.of(m) for m in messages], earlier=None
    )
    return detail.model_dump_json().encode()


async def from_text(store: SqliteConversationStore, conversation_id: str) -> bytes:
    return await _page(store, PRINCIPAL, conversation_id, 100, None)


async def cpu_s(build: Callable[[], Awaitable[bytes]], rounds: int) -> tuple[float, bytes]:
    """The median CPU seconds (this process, every thread) of one page, and the page."""
    times, body = [], b""
    for _ in range(rounds):
        started = time.process_time()
        body = await build()
        times.append(time.process_time() - started)
    return statistics.median(times), body


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteConversationStore(Path(folder) / "loom.db")
        try:
            conversation_id = await conversation(store)
            before, old = await cpu_s(lambda: schema_round_trip(store, conversation_id), rounds)
            now, new = await cpu_s(lambda: from_text(store, conversation_id), rounds)
        finally:
            await store.close()
    assert json.loads(old) == json.loads(new), "the two ways wrote different pages"
    print(f"page of {len(new) / 2**20:.2f} MiB, median CPU of {rounds} rounds each")
    print(f"  decoded and encoded again (before): {before * 1000:7.1f} ms")
    print(f"  written from the stored text (now): {now * 1000:7.1f} ms")
    print(f"  ratio before / now: {before / now:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    asyncio.run(main(parser.parse_args().rounds))
