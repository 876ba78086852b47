"""The room query results may hold: per turn, per tenant and per process (probe 13: R13-7)."""

from __future__ import annotations

import pytest

from loom.tools.result_room import MIN_ROOM, ResultRoom, RoomSpent

KIB = 1024


def test_a_query_may_return_what_is_left_at_most_its_own_bound() -> None:
    room = ResultRoom(per_turn=1024 * KIB, per_tenant=10_000 * KIB, total=10_000 * KIB)
    turn = room.for_turn("t1")
    assert turn.take(512 * KIB) == 512 * KIB
    assert room.held() == 0  # nothing is held while queries run: only what results hold
    turn.settle(512 * KIB, 700 * KIB)
    assert turn.take(512 * KIB) == 324 * KIB  # what is left of the turn's room
    assert room.held("t1") == room.held() == 700 * KIB


def test_results_hold_their_size_until_the_turn_ends() -> None:
    room = ResultRoom(per_turn=1024 * KIB, per_tenant=10_000 * KIB, total=10_000 * KIB)
    turn = room.for_turn("t1")
    turn.settle(turn.take(512 * KIB), 10 * KIB)  # a small result holds what it is
    turn.settle(turn.take(512 * KIB), 0)  # a query that failed holds nothing
    unknown = turn.take(512 * KIB)
    turn.settle(unknown, None)  # an engine that does not count: all it was allowed
    assert room.held() == 10 * KIB + unknown
    turn.release()
    assert room.held() == room.held("t1") == 0


def test_a_spent_turn_is_refused_saying_so_and_others_go_on() -> None:
    room = ResultRoom(per_turn=256 * KIB, per_tenant=10_000 * KIB, total=10_000 * KIB)
    turn = room.for_turn("t1")
    turn.settle(turn.take(256 * KIB), 256 * KIB - MIN_ROOM + 1)
    with pytest.raises(RoomSpent, match="this turn's query results have reached 256 KiB"):
        turn.take(128 * KIB)
    assert room.for_turn("t1").take(128 * KIB) == 128 * KIB  # the next turn has its own


def test_a_tenant_and_the_process_are_bounded_whatever_the_number_of_turns() -> None:
    room = ResultRoom(per_turn=1024 * KIB, per_tenant=1024 * KIB, total=1536 * KIB)
    with pytest.raises(RoomSpent, match="your organisation's room"):
        while True:
            turn = room.for_turn("big")
            turn.settle(turn.take(512 * KIB), 512 * KIB)
    assert room.held("big") == 1024 * KIB
    other = room.for_turn("small")
    other.settle(other.take(512 * KIB), 512 * KIB)  # another tenant still gets room
    with pytest.raises(RoomSpent, match="the server's room"):
        room.for_turn("third").take(512 * KIB)
    assert room.held() == 1536 * KIB


def test_a_result_that_arrives_after_its_turn_ended_is_not_counted_and_the_turn_runs_no_more() -> None:
    # Probe 15 (R15-1): a query still running when the client left settled after the release.
    room = ResultRoom(per_turn=1024 * KIB, per_tenant=1024 * KIB, total=2048 * KIB)
    turn = room.for_turn("t1")
    taken = turn.take(512 * KIB)
    turn.settle(taken, 100 * KIB)
    turn.release()
    turn.settle(taken, 400 * KIB)  # the late one
    assert room.held() == room.held("t1") == 0
    with pytest.raises(RoomSpent, match="this turn has ended"):
        turn.take(512 * KIB)
    turn.release()  # twice is harmless
    assert room.for_turn("t1").take(1024 * KIB) == 1024 * KIB


def test_the_last_quarter_of_a_tenants_room_is_kept_for_users_holding_little() -> None:
    # Probe 29 (R29-1): one user's four turns of 8 MiB results filled the tenant's 64 MiB, and a
    # colleague's one-row question was refused result_budget.
    room = ResultRoom(per_turn=1024 * KIB, per_tenant=4096 * KIB, total=100_000 * KIB)
    taken = []
    with pytest.raises(RoomSpent, match="your other questions' query results hold most"):
        for _ in range(8):  # one user's turns, one big result each
            turn = room.for_turn("t1", "mallory")
            taken.append(turn.take(1024 * KIB))
            turn.settle(taken[-1], taken[-1])
    assert room.held("t1") == 3072 * KIB  # up to the quarter kept
    colleague = room.for_turn("t1", "alice")
    assert colleague.take(1024 * KIB) == 1024 * KIB  # all her turn's room, at once
    colleague.settle(1024 * KIB, 10 * KIB)
    assert colleague.take(1024 * KIB) == 1014 * KIB  # a small result does not shut her out


def test_the_last_quarter_of_the_servers_room_is_kept_for_tenants_holding_little() -> None:
    room = ResultRoom(per_turn=1024 * KIB, per_tenant=1024 * KIB, total=2048 * KIB)
    for user in ("a", "b"):  # two tenants' users each fill their tenant's room
        turn = room.for_turn(f"big-{user}", user)
        turn.settle(turn.take(1024 * KIB), 1024 * KIB - 2 * MIN_ROOM)
    assert room.for_turn("quiet", "c").take(1024 * KIB) == 4 * MIN_ROOM  # what is left, all hers
    later = room.for_turn("big-a", "a2")  # a tenant already holding results: not the last quarter
    with pytest.raises(RoomSpent, match="the server's"):
        later.take(1024 * KIB)
