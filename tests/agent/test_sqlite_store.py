"""SqliteConversationStore: isolation by tenant and user, atomic appends, order, deletion, concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loom.agent.model import ChatMessage, ToolCall
from loom.agent.sqlite_store import ConversationIdConflict, ConversationNotFound, SqliteConversationStore
from loom.identity import Principal

ALICE = Principal(tenant_id="t1", user_id="alice", roles=("Loom.User",))
BOB = Principal(tenant_id="t1", user_id="bob")
ALICE_ELSEWHERE = Principal(tenant_id="t2", user_id="alice")  # same user id, other tenant


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "loom.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[SqliteConversationStore]:
    db_path.parent.mkdir(parents=True)
    store = SqliteConversationStore(db_path)
    yield store
    await store.close()


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_a_conversation_is_invisible_to_other_users_and_tenants(db: SqliteConversationStore) -> None:
    conv = await db.create_conversation(ALICE, "sales by channel")
    await db.append_messages(ALICE, conv.id, [user("orders per channel?")])
    for other in (BOB, ALICE_ELSEWHERE):
        assert await db.get_conversation(other, conv.id) is None
        assert await db.messages(other, conv.id) == []
        assert await db.list_conversations(other) == []
        assert await db.delete_conversation(other, conv.id) is False
        with pytest.raises(ConversationNotFound):
            await db.append_messages(other, conv.id, [user("injected")])
    assert [m.content for m in await db.messages(ALICE, conv.id)] == ["orders per channel?"]
    assert (await db.get_conversation(ALICE, conv.id)) is not None


async def test_a_taken_id_is_neither_reused_nor_shown(db: SqliteConversationStore) -> None:
    mine = await db.create_conversation(ALICE, "mine", conversation_id="fixed-id")
    with pytest.raises(ConversationIdConflict, match="already in use"):
        await db.create_conversation(ALICE_ELSEWHERE, "theirs", conversation_id="fixed-id")
    with pytest.raises(ConversationIdConflict):
        await db.create_conversation(BOB, "theirs", conversation_id="fixed-id")
    again = await db.create_conversation(ALICE, "ignored title", conversation_id="fixed-id")
    assert again == mine
    assert again.title == "mine"


async def test_a_conversation_is_created_with_its_first_messages_in_one_transaction(
    db: SqliteConversationStore, db_path: Path
) -> None:
    conv = await db.create_conversation(ALICE, "t", "c1", [user("q1"), user("q2")], [{}, {"k": 2}])
    assert [(m.seq, m.content) for m in await db.messages(ALICE, conv.id)] == [(1, "q1"), (2, "q2")]
    assert (await db.messages(ALICE, conv.id))[1].metadata == {"k": 2}
    # the caller's own id again: the messages go after the ones already there
    await db.create_conversation(ALICE, "t", "c1", [user("q3")])
    assert [m.seq for m in await db.messages(ALICE, conv.id)] == [1, 2, 3]
    # another principal's id: neither the conversation nor the messages are written
    with pytest.raises(ConversationIdConflict):
        await db.create_conversation(BOB, "t", "c1", [user("injected")])
    with raw(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 3
    with pytest.raises(ValueError, match="2 messages but 1 metadata"):
        await db.create_conversation(ALICE, "t", "c2", [user("a"), user("b")], [{}])
    assert await db.get_conversation(ALICE, "c2") is None


async def test_messages_round_trip_in_seq_order(db: SqliteConversationStore) -> None:
    conv = await db.create_conversation(ALICE, "t")
    call = ToolCall(id="call_1", name="nl2sql", arguments='{"question": "orders"}')
    first = await db.append_messages(
        ALICE,
        conv.id,
        [user("q1"), ChatMessage(role="assistant", content="", tool_calls=(call,))],
        metadata=[{}, {"model": "fake"}],
    )
    second = await db.append_messages(
        ALICE, conv.id, [ChatMessage(role="tool", content='{"rows": []}', tool_call_id="call_1"), user("q2")]
    )
    assert [m.seq for m in first + second] == [1, 2, 3, 4]
    stored = await db.messages(ALICE, conv.id)
    assert [(m.seq, m.role) for m in stored] == [(1, "user"), (2, "assistant"), (3, "tool"), (4, "user")]
    assert stored[1].to_chat().tool_calls == (call,)
    assert stored[1].metadata == {"model": "fake"}
    assert stored[2].tool_call_id == "call_1"


async def test_a_failure_mid_append_writes_nothing(db: SqliteConversationStore, db_path: Path) -> None:
    conv = await db.create_conversation(ALICE, "t")
    with raw(db_path) as con:  # the database refuses the second row, after the first was inserted
        con.execute(
            "CREATE TRIGGER fail_on_boom BEFORE INSERT ON messages WHEN NEW.content = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
        )
    before = (await db.get_conversation(ALICE, conv.id)).updated_at  # type: ignore[union-attr]
    with pytest.raises(sqlite3.IntegrityError, match="simulated"):
        await db.append_messages(ALICE, conv.id, [user("fine"), user("boom"), user("never")])
    assert await db.messages(ALICE, conv.id) == []
    assert (await db.get_conversation(ALICE, conv.id)).updated_at == before  # type: ignore[union-attr]
    [ok] = await db.append_messages(ALICE, conv.id, [user("fine")])
    assert ok.seq == 1


async def test_metadata_must_match_the_messages(db: SqliteConversationStore) -> None:
    conv = await db.create_conversation(ALICE, "t")
    with pytest.raises(ValueError, match="2 messages but 1 metadata"):
        await db.append_messages(ALICE, conv.id, [user("a"), user("b")], metadata=[{}])
    assert await db.messages(ALICE, conv.id) == []


async def test_delete_removes_the_messages_too(db: SqliteConversationStore, db_path: Path) -> None:
    conv = await db.create_conversation(ALICE, "t")
    await db.append_messages(ALICE, conv.id, [user("a"), user("b")])
    assert await db.delete_conversation(ALICE, conv.id) is True
    assert await db.get_conversation(ALICE, conv.id) is None
    assert await db.delete_conversation(ALICE, conv.id) is False
    with raw(db_path) as con:
        assert con.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


async def test_list_is_newest_activity_first_and_limited(db: SqliteConversationStore) -> None:
    a = await db.create_conversation(ALICE, "a")
    b = await db.create_conversation(ALICE, "b")
    await db.create_conversation(BOB, "bob's")
    assert [c.id for c in await db.list_conversations(ALICE)] == [b.id, a.id]
    await db.append_messages(ALICE, a.id, [user("bump")])
    assert [c.id for c in await db.list_conversations(ALICE)] == [a.id, b.id]
    assert [c.id for c in await db.list_conversations(ALICE, limit=1)] == [a.id]


async def test_concurrent_appends_keep_each_batch_whole_and_seq_unique(db: SqliteConversationStore) -> None:
    conv = await db.create_conversation(ALICE, "busy")

    async def turn(i: int) -> None:
        answer = ChatMessage(role="assistant", content=f"{i}-a")
        await db.append_messages(ALICE, conv.id, [user(f"{i}-q"), answer])

    await asyncio.gather(*(turn(i) for i in range(50)))
    stored = await db.messages(ALICE, conv.id)
    assert [m.seq for m in stored] == list(range(1, 101))
    for question, answer in zip(stored[::2], stored[1::2], strict=True):
        assert answer.content == question.content.replace("-q", "-a")  # a batch is never interleaved


async def test_concurrent_turns_on_many_conversations(db: SqliteConversationStore) -> None:
    async def turn(i: int) -> str:
        principal = Principal(tenant_id=f"t{i % 3}", user_id=f"u{i}")
        conv = await db.create_conversation(principal, f"c{i}")
        await db.append_messages(principal, conv.id, [user(str(i))])
        return conv.id

    ids = await asyncio.gather(*(turn(i) for i in range(50)))
    assert len(set(ids)) == 50
    assert [m.content for m in await db.messages(Principal(tenant_id="t1", user_id="u7"), ids[7])] == ["7"]


async def test_the_database_is_in_wal_mode_with_a_schema_version(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    store = SqliteConversationStore(db_path)
    conv = await store.create_conversation(ALICE, "kept")
    await store.append_messages(ALICE, conv.id, [user("remember me")])
    await store.close()
    with raw(db_path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
        indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"conversations_owner", "messages_order"} <= indexes
    reopened = SqliteConversationStore(db_path)  # reopening neither re-versions nor loses data
    assert [m.content for m in await reopened.messages(ALICE, conv.id)] == ["remember me"]
    await reopened.close()
    with raw(db_path) as con:
        assert con.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


async def test_a_closed_store_refuses_work(db: SqliteConversationStore) -> None:
    await db.close()
    with pytest.raises(RuntimeError, match="closed"):
        await db.list_conversations(ALICE)


async def test_the_database_is_the_owners_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = SqliteConversationStore(home / "loom.db")
    try:
        await store.create_conversation(ALICE, "t", messages=[ChatMessage(role="user", content="x")])
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for name in ("loom.db", "loom.db-wal", "loom.db-shm"):
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    finally:
        await store.close()


async def test_a_page_is_the_newest_messages_before_a_seq_bounded_in_count_and_bytes(
    db: SqliteConversationStore,
) -> None:
    # Probe 11 (R11-5): a conversation was read whole, 250 MB, by every turn and every GET.
    conv = await db.create_conversation(ALICE, "t")
    await db.append_messages(ALICE, conv.id, [user(f"q{i}") for i in range(1, 11)])
    newest = await db.messages(ALICE, conv.id, limit=3)
    assert [m.content for m in newest] == ["q8", "q9", "q10"]
    before = await db.messages(ALICE, conv.id, before=newest[0].seq, limit=3)
    assert [m.content for m in before] == ["q5", "q6", "q7"]
    await db.append_messages(ALICE, conv.id, [user("x" * 1000), user("y" * 1000)])
    assert [m.content[0] for m in await db.messages(ALICE, conv.id, max_bytes=1500)] == ["y"]
    assert [m.content[0] for m in await db.messages(ALICE, conv.id, max_bytes=10)] == ["y"]  # one always
    assert await db.last_seq(ALICE, conv.id) == 12 and await db.last_seq(BOB, conv.id) == 0


async def test_a_history_page_keeps_only_the_source_of_a_results_metadata(
    db: SqliteConversationStore,
) -> None:
    conv = await db.create_conversation(ALICE, "t")
    table = {"result": {"source": "sales", "rows": [[1]] * 1000}, "model": "m"}
    await db.append_messages(ALICE, conv.id, [user("q")], metadata=[table])
    [full] = await db.messages(ALICE, conv.id)
    [light] = await db.messages(ALICE, conv.id, with_metadata=False)
    assert full.metadata == table
    assert light.metadata == {"result": {"source": "sales"}}


async def test_a_big_conversation_is_deleted_a_batch_at_a_time_letting_other_writes_in(
    db: SqliteConversationStore,
) -> None:
    # Probe 12 (R12-10): one DELETE of 2 x 320 MiB held every tenant's writes 3.5 s.
    from loom.agent import sqlite_store

    big = await db.create_conversation(ALICE, "big")
    await db.append_messages(ALICE, big.id, [user(f"q{i}") for i in range(sqlite_store.DELETE_BATCH * 3 + 7)])
    other = await db.create_conversation(BOB, "other")
    deleting = asyncio.create_task(db.delete_conversation(ALICE, big.id))
    await asyncio.sleep(0)  # the first batch is queued on the writer
    await db.append_messages(BOB, other.id, [user("meanwhile")])  # a write between batches
    assert await deleting
    assert await db.messages(ALICE, big.id) == [] and await db.get_conversation(ALICE, big.id) is None
    assert [m.content for m in await db.messages(BOB, other.id)] == ["meanwhile"]
    assert not await db.delete_conversation(BOB, big.id) and not await db.delete_conversation(ALICE, big.id)


async def test_usage_counts_what_each_user_holds_and_deleting_frees_it(db: SqliteConversationStore) -> None:
    # Probe 20 (R20-3): nothing bounded what a tenant stored, ~0.5 MiB for a 150-byte question.
    conv = await db.create_conversation(ALICE, "title")  # 5 bytes of title
    await db.append_messages(ALICE, conv.id, [user("é" * 100)], [{"rows": [1, 2]}])
    other = await db.create_conversation(BOB, "b")
    await db.append_messages(BOB, other.id, [user("x" * 1000)])
    alice = await db.usage(ALICE)
    message_bytes = 200 + len("[]") + len('{"rows": [1, 2]}')  # é is 2 bytes
    assert alice.user_bytes == 5 + message_bytes
    assert alice.tenant_bytes == alice.user_bytes + 1 + 1000 + 2 + 2
    assert (await db.usage(ALICE_ELSEWHERE)).tenant_bytes == 0
    for _ in range(60):  # more than one delete batch
        await db.append_messages(ALICE, conv.id, [user("y" * 100)])
    assert await db.delete_conversation(ALICE, conv.id)
    assert (await db.usage(ALICE)).user_bytes == 0


async def test_a_database_from_before_usage_was_kept_is_counted_when_opened(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    store = SqliteConversationStore(db_path)
    conv = await store.create_conversation(ALICE, "abc")
    await store.append_messages(ALICE, conv.id, [user("hello")])
    expected = (await store.usage(ALICE)).user_bytes
    await store.close()
    with raw(db_path) as con:  # as version 1 left it
        con.execute("DROP TABLE usage")
        con.execute("UPDATE schema_version SET version = 1")
    reopened = SqliteConversationStore(db_path)
    assert (await reopened.usage(ALICE)).user_bytes == expected == 3 + 5 + 2 + 2
    await reopened.close()
