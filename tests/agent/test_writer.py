"""The background writer: order kept, writes coalesced, a failure stops what follows."""

import asyncio
from pathlib import Path
from typing import Any

from loom.agent.model import ChatMessage
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.writer import OrderedWriter
from loom.identity import DEV_PRINCIPAL


def said(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


class SlowStore(SqliteConversationStore):
    """Counts writes and holds each one briefly, as a remote database would."""

    def __init__(self, path: Path, fail_on: str | None = None) -> None:
        super().__init__(path)
        self.appends: list[list[str]] = []  # the messages of each write, the creating one included
        self.fail_on = fail_on

    async def _hold(self, messages: Any) -> None:
        self.appends.append([m.content for m in messages])
        await asyncio.sleep(0.01)
        if self.fail_on in self.appends[-1]:
            raise OSError("disk full")

    async def create_conversation(
        self,
        principal: Any,
        title: str,
        conversation_id: Any = None,
        messages: Any = (),
        metadata: Any = None,
    ) -> Any:
        await self._hold(messages)
        return await super().create_conversation(principal, title, conversation_id, messages, metadata)

    async def append_messages(
        self, principal: Any, conversation_id: str, messages: Any, metadata: Any = None
    ) -> Any:
        await self._hold(messages)
        return await super().append_messages(principal, conversation_id, messages, metadata)


async def test_messages_queued_during_a_write_are_written_together_in_order(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "db")
    writer = OrderedWriter(store, DEV_PRINCIPAL, "c1")
    writer.create("title")
    writer.append([said("one")])
    await asyncio.sleep(0)  # the first write starts
    writer.append([said("two")])
    writer.append([said("three")], [{"k": 3}])
    assert await writer.drain() is None
    stored = await store.messages(DEV_PRINCIPAL, "c1")
    assert [m.content for m in stored] == ["one", "two", "three"]
    assert stored[2].metadata == {"k": 3}
    assert store.appends[0] == ["one"]  # created together with the first message
    assert len(store.appends) <= 2  # "two" and "three" shared a transaction
    await store.close()


async def test_a_failed_write_stops_later_writes_and_is_reported(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "db", fail_on="bad")
    writer = OrderedWriter(store, DEV_PRINCIPAL, "c2")
    writer.create("title")
    writer.append([said("ok")])
    await asyncio.sleep(0)  # the creating write starts
    writer.append([said("bad")])
    while ["bad"] not in store.appends:  # wait until "bad" is in flight (a fixed sleep is not enough
        await asyncio.sleep(0.001)  # on a loaded machine: "bad" and "after" would be written together)
    writer.append([said("after")])
    error = await writer.drain()
    assert isinstance(error, OSError)
    assert store.appends == [["ok"], ["bad"]]  # nothing was attempted after the failure
    stored = await store.messages(DEV_PRINCIPAL, "c2")
    assert [m.content for m in stored] == ["ok"]  # no hole-y history: nothing after it
    await store.close()


async def test_drain_with_nothing_queued_returns_at_once(tmp_path: Path) -> None:
    store = SqliteConversationStore(tmp_path / "db")
    assert await OrderedWriter(store, DEV_PRINCIPAL, "c3").drain() is None
    await store.close()
