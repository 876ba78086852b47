"""The room query results may hold: per turn, per tenant and per process (probe 13: R13-7)."""

from __future__ import annotations

import pytest

from loom.tools.result_room import MIN_ROOM, ResultRoom, RoomSpent

KIB = 1024


def test_a_query_gets_half_of_what_is_left_at_most_its_own_bound() -> None:
    room = ResultRoom(per_turn=1024 * KIB, per_tenant=10_000 * KIB, total=10_000 * KIB)
    turn = room.for_turn("t1")
    assert turn.take(512 * KIB) == 512 * KIB  # a fresh turn: its whole bound
    assert turn.take(512 * KIB) == 256 * KIB  # in flight together: half of what is left
    assert turn.take(512 * KIB) == 128 * KIB
    assert room.held("t1") == room.held() == 896 * KIB


def test_unused_room_comes_back_with_the_result_and_the_rest_with_the_turn() -> None:
    room = ResultRoom(per_turn=1024 * KIB, per_tenant=10_000 * KIB, total=10_000 * KIB)
    turn = room.for_turn("t1")
    taken = turn.take(512 * KIB)
    turn.settle(taken, 10 * KIB)  # a small result keeps only what it holds
    assert room.held() == 10 * KIB
    failed = turn.take(512 * KIB)
    turn.settle(failed, 0)  # a query that failed holds nothing
    unknown = turn.take(512 * KIB)
    turn.settle(unknown, None)  # an engine that does not count keeps what it was given
    assert room.held() == 10 * KIB + unknown
    turn.release()
    assert room.held() == room.held("t1") == 0


def test_a_spent_turn_is_refused_saying_so_and_others_go_on() -> None:
    room = ResultRoom(per_turn=256 * KIB, per_tenant=10_000 * KIB, total=10_000 * KIB)
    turn = room.for_turn("t1")
    turn.take(128 * KIB)
    turn.take(128 * KIB)  # 64 KiB: half of the 128 left
    with pytest.raises(RoomSpent, match="this turn's query results have reached 256 KiB"):
        turn.take(128 * KIB)
    assert room.for_turn("t1").take(128 * KIB) == 128 * KIB  # the next turn has its own


def test_a_tenant_and_the_process_are_bounded_whatever_the_number_of_turns() -> None:
    room = ResultRoom(per_turn=1024 * KIB, per_tenant=1024 * KIB, total=1536 * KIB)
    given = []
    with pytest.raises(RoomSpent, match="your organisation's room"):
        while True:
            given.append(room.for_turn("big").take(512 * KIB))
    assert sum(given) <= 1024 * KIB and room.held("big") == sum(given)
    other = room.for_turn("small")
    assert other.take(512 * KIB) >= MIN_ROOM  # another tenant still gets room
    with pytest.raises(RoomSpent, match="the server's room"):
        while True:
            room.for_turn(f"t{len(given)}").take(512 * KIB)
            given.append(0)
    assert room.held() <= 1536 * KIB
