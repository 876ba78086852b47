"""Queries share the workers fairly: one tenant's slow queries cannot starve another's."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from loom.identity import Principal
from loom.tools.base import ToolError
from loom.tools.scheduler import QueryScheduler

BUSY = Principal(tenant_id="busy-tenant", user_id="analyst")
OTHER = Principal(tenant_id="other-tenant", user_id="clerk")


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def test_another_tenant_is_answered_while_one_tenant_queues_slow_queries() -> None:
    scheduler = QueryScheduler(workers=4, per_tenant=2, per_user=2, wait_s=30)
    try:
        flood = [asyncio.create_task(scheduler.run(BUSY, slow, 0.5)) for _ in range(12)]
        await asyncio.sleep(0.05)  # the flood holds its places
        started = time.perf_counter()
        assert await scheduler.run(OTHER, slow, 0.0) == 0.0
        waited = time.perf_counter() - started
        assert waited < 2.0  # not behind the flood (12 × 0.5 s on 2 places: 3 s); loose for a busy machine
        assert all(not t.done() for t in flood[4:])  # the flood is still queued, 2 at a time
        await asyncio.gather(*flood)
    finally:
        scheduler.close()


async def test_a_query_that_cannot_get_a_place_in_time_is_refused_as_busy() -> None:
    scheduler = QueryScheduler(workers=4, per_tenant=4, per_user=1, wait_s=0.2)
    try:
        held = asyncio.create_task(scheduler.run(BUSY, slow, 1.0))
        await asyncio.sleep(0.05)
        with pytest.raises(ToolError) as refused:
            await scheduler.run(BUSY, slow, 0.0)
        assert refused.value.code == "busy"
        assert await scheduler.run(OTHER, slow, 0.0) == 0.0  # others are not held up
        await held
        assert await scheduler.run(BUSY, slow, 0.0) == 0.0  # the place came back
    finally:
        scheduler.close()


class Running:
    """Counts the calls running at once (they run on worker threads); each runs until `go` is set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.go = threading.Event()
        self.now = 0
        self.most = 0

    def __call__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            self.go.wait(10)
        finally:
            with self._lock:
                self.now -= 1


async def test_the_places_of_users_and_tenants_are_dropped_once_nobody_holds_or_waits() -> None:
    scheduler = QueryScheduler(workers=8, per_tenant=3, per_user=1, wait_s=30)
    try:
        people = [Principal(tenant_id=f"t{n % 40}", user_id=f"u{n}") for n in range(400)]
        await asyncio.gather(*(scheduler.run(p, slow, 0.001) for p in people))
        assert scheduler._slots == {} and scheduler._tenants == {}  # not 440 kept for good
    finally:
        scheduler.close()


async def test_a_waiter_keeps_its_slot_and_the_limit_holds_across_drops() -> None:
    scheduler = QueryScheduler(workers=4, per_tenant=4, per_user=1, wait_s=30)
    running = Running()
    try:
        for _ in range(3):  # each wave empties the slots; the next one makes them again
            running.go.clear()
            wave = [asyncio.create_task(scheduler.run(BUSY, running)) for _ in range(4)]
            await asyncio.sleep(0.05)
            assert scheduler._slots[(BUSY.tenant_id, BUSY.user_id)].claims == 4  # 1 holds, 3 wait
            running.go.set()
            await asyncio.gather(*wave)
            assert scheduler._slots == {}
        assert running.most == 1  # one place per user, never two at once
    finally:
        scheduler.close()


async def test_refused_and_cancelled_waiters_leave_no_slot_behind() -> None:
    scheduler = QueryScheduler(workers=4, per_tenant=4, per_user=1, wait_s=0.2)
    running = Running()
    try:
        held = asyncio.create_task(scheduler.run(BUSY, running))
        await asyncio.sleep(0.05)
        gave_up = asyncio.create_task(scheduler.run(BUSY, slow, 0.0))
        await asyncio.sleep(0.05)
        gave_up.cancel()  # the client went away while it waited
        with pytest.raises(ToolError):
            await scheduler.run(BUSY, slow, 0.0)  # busy
        running.go.set()
        await held
        assert scheduler._slots == {}
        assert await scheduler.run(BUSY, slow, 0.0) == 0.0
        assert scheduler._slots == {}
    finally:
        scheduler.close()


async def test_when_every_worker_is_busy_the_next_goes_to_the_tenant_holding_fewest() -> None:
    # Two tenants fill both workers and queue more; a third tenant's query runs at the next free
    # worker, ahead of the queued floods (first come, first served would run it last).
    scheduler = QueryScheduler(workers=2, per_tenant=2, per_user=4, wait_s=30)
    first, second = Principal(tenant_id="a", user_id="u"), Principal(tenant_id="b", user_id="u")
    started: list[str] = []

    def work(who: str) -> None:
        started.append(who)
        time.sleep(0.1 if who != "other" else 0)

    try:
        floods = [asyncio.create_task(scheduler.run(p, work, p.tenant_id)) for p in (first, second) * 4]
        await asyncio.sleep(0.05)
        await scheduler.run(OTHER, work, "other")
        await asyncio.gather(*floods)
        assert started.index("other") <= 3  # with the next free workers, not after the 8 queued (8)
        assert scheduler._workers.free == 2 and not scheduler._workers.running
    finally:
        scheduler.close()


async def test_a_query_refused_while_waiting_for_a_worker_gives_nothing_away() -> None:
    scheduler = QueryScheduler(workers=1, per_tenant=4, per_user=4, wait_s=0.1)
    try:
        held = asyncio.create_task(scheduler.run(BUSY, slow, 0.4))
        await asyncio.sleep(0.02)
        with pytest.raises(ToolError) as refused:
            await scheduler.run(OTHER, slow, 0.0)
        assert refused.value.code == "busy"
        await held
        assert scheduler._workers.free == 1 and not scheduler._workers.waiting
        assert await scheduler.run(OTHER, slow, 0.0) == 0.0
    finally:
        scheduler.close()


async def test_a_tenant_whose_queries_hold_workers_long_waits_behind_one_asking_quick_ones() -> None:
    scheduler = QueryScheduler(workers=1, per_tenant=4, per_user=4, wait_s=30)
    heavy, light = Principal(tenant_id="heavy", user_id="u"), Principal(tenant_id="light", user_id="u")
    try:
        await scheduler.run(heavy, slow, 0.3)  # heavy has used 0.3 s of worker time
        await scheduler.run(light, slow, 0.01)
        blocker = asyncio.create_task(scheduler.run(OTHER, slow, 0.2))
        await asyncio.sleep(0.02)
        order: list[str] = []

        async def ask(who: Principal) -> None:
            await scheduler.run(who, slow, 0.0)
            order.append(who.tenant_id)

        # Both wait with nothing running; heavy asked first, light has used less.
        waiting = [asyncio.create_task(ask(heavy))]
        await asyncio.sleep(0.02)
        waiting.append(asyncio.create_task(ask(light)))
        await asyncio.gather(blocker, *waiting)
        assert order == ["light", "heavy"]
    finally:
        scheduler.close()


async def test_a_source_runs_only_its_share_at_once_and_the_next_place_goes_to_the_lighter_tenant() -> None:
    # A source with a single place: a tenant that has held it long waits behind one that has not,
    # whichever user ids it asks under, and another source is not held up at all.
    scheduler = QueryScheduler(workers=4, per_tenant=8, per_user=4, wait_s=30, per_source=1)
    heavy, light = Principal(tenant_id="heavy", user_id="u1"), Principal(tenant_id="light", user_id="u")
    order: list[str] = []

    async def ask(who: Principal, source: str, seconds: float) -> None:
        await scheduler.run_on(source, who, slow, seconds)
        order.append(f"{who.tenant_id}@{source}")

    try:
        await scheduler.run_on("s", heavy, slow, 0.3)  # heavy has used the source's place 0.3 s
        blocker = asyncio.create_task(ask(heavy, "s", 0.3))
        await asyncio.sleep(0.05)
        fresh_id = Principal(tenant_id="heavy", user_id="u2")  # a new user id earns no new rank
        waiting = [asyncio.create_task(ask(fresh_id, "s", 0.0))]
        await asyncio.sleep(0.02)
        waiting.append(asyncio.create_task(ask(light, "s", 0.0)))
        await ask(light, "elsewhere", 0.0)  # another source's place is free: no wait
        assert order == ["light@elsewhere"]
        await asyncio.gather(blocker, *waiting)
        assert order[1:] == ["heavy@s", "light@s", "heavy@s"]  # light, though it asked later
    finally:
        scheduler.close()


async def test_the_last_free_workers_are_kept_for_tenants_with_nothing_running() -> None:
    scheduler = QueryScheduler(workers=8, per_tenant=8, per_user=8, wait_s=30)
    running = Running()
    try:
        flood = [asyncio.create_task(scheduler.run(BUSY, running)) for _ in range(8)]
        await asyncio.sleep(0.1)
        assert running.now == 6  # two of eight kept back
        started = time.perf_counter()
        answered = await asyncio.wait_for(scheduler.run(OTHER, slow, 0.0), 2)
        assert answered == 0.0 and time.perf_counter() - started < 1  # not behind the flood
        running.go.set()
        await asyncio.gather(*flood)
        assert scheduler._workers.free == 8 and not scheduler._workers.waiting
    finally:
        scheduler.close()


async def test_a_query_whose_caller_left_holds_its_places_until_it_ends() -> None:
    # Probe 16 (R16-1): a client that left freed the places at once while the query's thread ran
    # on to its time limit; one user's five abandoned turns filled all eight workers.
    scheduler = QueryScheduler(workers=4, per_tenant=4, per_user=1, wait_s=0.3)
    running = Running()
    try:
        left = asyncio.create_task(scheduler.run(BUSY, running))
        await asyncio.sleep(0.05)
        left.cancel()  # the client leaves; the thread cannot be stopped
        with pytest.raises(asyncio.CancelledError):
            await left
        with pytest.raises(ToolError, match="waited"):  # its place is still held: the user's one
            await scheduler.run(BUSY, slow, 0.0)
        assert scheduler._workers.free == 3
        running.go.set()  # the abandoned query ends
        for _ in range(100):
            if scheduler._workers.free == 4 and not scheduler._slots:
                break
            await asyncio.sleep(0.01)
        assert scheduler._workers.free == 4 and scheduler._slots == {}
        assert await scheduler.run(BUSY, slow, 0.0) == 0.0  # and the user has it back
    finally:
        scheduler.close()


async def test_the_last_of_a_tenants_places_is_kept_for_a_user_with_nothing_running() -> None:
    # Probe 25 (R25-3): two users at their limit held all four of the tenant's places with 30 s
    # queries, and a colleague's quick question waited 28.75 s for one of them to end.
    scheduler = QueryScheduler(workers=8, per_tenant=4, per_user=2, wait_s=30)
    running = Running()
    first, second = (Principal(tenant_id="t", user_id=u) for u in ("first", "second"))
    try:
        heavy = [asyncio.create_task(scheduler.run(p, running)) for p in (first, second) * 2]
        await asyncio.sleep(0.1)
        assert running.now == 3  # the second user's second query waits for a place
        colleague = Principal(tenant_id="t", user_id="colleague")
        answered = await asyncio.wait_for(scheduler.run(colleague, slow, 0.0), 2)
        assert answered == 0.0  # at once, not behind the heavy queries
        running.go.set()
        await asyncio.gather(*heavy)
        assert running.most == 3 and scheduler._tenants == {}
    finally:
        scheduler.close()
