"""Where queries run: a bounded pool of worker threads, shared fairly between tenants and users.

Queries used to run on the event loop's default thread pool (six threads on two cores), so twelve
slow queries from one tenant delayed another tenant's verified answer from 0.08 s to 18 s. Here
each tenant, and each user within it, may hold only so many workers at once, and when every
worker is busy the next one to come free goes to the waiting tenant that holds the fewest, then
to the one that used the least worker time lately, then first come, first served: tenants
flooding the pool with slow queries wait behind a tenant asking quick ones. The last quarter of
the workers go only to tenants with nothing running, so two tenants at their limit cannot hold
them all. A tenant's own places are handed out the same way between its users: two users at their
limit held all four of a tenant's places with 30 s queries, and a colleague's quick question waited
28.75 s for one (probe 25: R25-3); now the last of them goes only to a user with nothing running.
A query that cannot
get a place within `wait_s`, all waits together, is refused (`busy`) rather than queued without
end. A query on a source may also need one of that source's places (`per_source`; by default as
many as workers, so no separate share), handed out the same fair way, by tenant (by user, an
attacker taking a new user id for each query always ranked first). About one per core keeps six
looping heavy queries from slowing a colleague's 0.9 s query past its 5 s limit, but makes everyone
on the source wait behind heavy queries instead: measured under `hardening_load`, 138 of 150 normal
turns were refused `busy`, so it is not the default. The limits are per process: several API
workers each have their own.

A tenant's or user's places exist only while someone holds or waits for one, so the scheduler does
not keep a semaphore for every user it has ever seen.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, ParamSpec, TypeVar

from loom.identity import Principal
from loom.tools.base import ToolError

T = TypeVar("T")
P = ParamSpec("P")

USE_HALF_LIFE_S = 60.0  # how long a tenant's past use weighs on its place in the queue
FORGOTTEN_BELOW_S = 0.05  # use below which an idle tenant is not remembered


@dataclass
class _Slot:
    """The places of one tenant or user, and how many callers hold or wait for one."""

    places: asyncio.Semaphore
    claims: int = 0


@dataclass
class _Waiter:
    arrival: int
    tenant: str
    ready: asyncio.Future[None]


class _Workers:
    """The worker places, handed out fairly: a free one goes to the waiting tenant that holds the
    fewest, then to the one that has used the least worker time lately (so a tenant whose queries
    each hold a worker for seconds waits behind one whose queries take milliseconds), then by
    arrival. The last `reserve` free ones go only to tenants with nothing running: without them
    two tenants at their limit held all 8 workers, and a third tenant's 0.9 s query waited 30-44 s
    for one of theirs to end (probe 6)."""

    def __init__(self, count: int) -> None:
        self.reserve = count // 4
        self.free = count
        self.running: Counter[str] = Counter()
        self.waiting: list[_Waiter] = []
        self.used: dict[str, tuple[float, float]] = {}  # tenant → (worker-seconds, as of when)
        self._ticks = itertools.count()

    async def acquire(self, tenant: str, timeout: float) -> float:
        """When the worker was given (time.monotonic()), for `release` to count its use."""
        if self._may_take(tenant) and not any(self._may_take(w.tenant) for w in self.waiting):
            self._give(tenant)
            return time.monotonic()
        waiter = _Waiter(next(self._ticks), tenant, asyncio.get_running_loop().create_future())
        self.waiting.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.ready), timeout)
        except BaseException:
            if waiter in self.waiting:
                self.waiting.remove(waiter)
                self._forget(tenant)
            elif waiter.ready.done():  # handed a worker just as the wait ended: pass it on
                self.release(tenant, time.monotonic())
            raise
        return time.monotonic()

    def release(self, tenant: str, given: float) -> None:
        now = time.monotonic()
        self.used[tenant] = (self.use(tenant, now) + (now - given), now)
        self.running[tenant] -= 1
        self.free += 1
        eligible = [w for w in self.waiting if self._may_take(w.tenant)]
        if eligible:
            chosen = min(eligible, key=self._rank)
            self.waiting.remove(chosen)
            self._give(chosen.tenant)
            chosen.ready.set_result(None)
        self._forget(tenant)

    @property
    def idle(self) -> bool:
        return not self.waiting and not any(self.running.values())

    def _may_take(self, tenant: str) -> bool:
        return self.free > (self.reserve if self.running[tenant] else 0)

    def use(self, tenant: str, now: float) -> float:
        """The tenant's worker-seconds, halved for every `USE_HALF_LIFE_S` since last counted."""
        seconds, at = self.used.get(tenant, (0.0, now))
        return seconds * 0.5 ** ((now - at) / USE_HALF_LIFE_S)

    def _rank(self, waiter: _Waiter) -> tuple[int, float, int]:
        now = time.monotonic()
        return (self.running[waiter.tenant], self.use(waiter.tenant, now), waiter.arrival)

    def _give(self, tenant: str) -> None:
        self.free -= 1
        self.running[tenant] += 1

    def _forget(self, tenant: str) -> None:
        """A tenant with nothing running or waiting, and little use lately, is not remembered."""
        if not self.running[tenant] and not any(w.tenant == tenant for w in self.waiting):
            self.running.pop(tenant, None)
            if self.use(tenant, time.monotonic()) < FORGOTTEN_BELOW_S:
                self.used.pop(tenant, None)


class QueryScheduler:
    def __init__(
        self, workers: int, per_tenant: int, per_user: int, wait_s: float, per_source: int | None = None
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loom-query")
        self._workers = _Workers(workers)
        self._per_tenant, self._per_user, self._wait_s = per_tenant, per_user, wait_s
        self._per_source = per_source or workers
        self._slots: dict[tuple[str, ...], _Slot] = {}
        self._tenants: dict[str, _Workers] = {}  # each tenant's places, shared between its users
        self._sources: dict[str, _Workers] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def run(
        self, principal: Principal, work: Callable[..., T], /, *args: object, **kwargs: object
    ) -> T:
        """`work(*args, **kwargs)` on a worker, once the caller's tenant and user have a place."""
        return await self.run_on(None, principal, work, *args, **kwargs)

    async def run_on(
        self,
        source: str | None,
        principal: Principal,
        work: Callable[..., T],
        /,
        *args: object,
        **kwargs: object,
    ) -> T:
        """The same, holding one of `source`'s places too (None: no source's).

        The places are held until the work has ended, not only while someone awaits it: a caller
        that leaves (a client disconnecting) cannot stop a thread, and freeing its places at once
        let one user's five abandoned turns fill all eight workers while their queries ran on to
        their time limit (probe 16: R16-1)."""
        held = AsyncExitStack()
        await held.enter_async_context(self._place(principal, source))
        running = self._executor.submit(partial(work, *args, **kwargs))
        try:
            return await asyncio.wrap_future(running)
        finally:
            if running.done():
                await held.aclose()
            else:
                self._free_when_done(running, held)

    def _free_when_done(self, running: Future[Any], held: AsyncExitStack) -> None:
        loop = asyncio.get_running_loop()

        def done(_: Future[Any]) -> None:
            try:
                loop.call_soon_threadsafe(self._close_later, held)
            except RuntimeError:  # the loop has closed: nothing is left to free
                pass

        running.add_done_callback(done)

    def _close_later(self, held: AsyncExitStack) -> None:
        task = asyncio.get_running_loop().create_task(held.aclose())
        self._closing.add(task)  # a reference, so the task is not collected before it runs
        task.add_done_callback(self._closing.discard)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @asynccontextmanager
    async def _place(self, principal: Principal, source: str | None = None) -> AsyncIterator[None]:
        user = (principal.tenant_id, principal.user_id)
        deadline = time.monotonic() + self._wait_s
        async with AsyncExitStack() as held:
            await held.enter_async_context(self._claim(user, self._per_user, deadline))
            await held.enter_async_context(self._tenant_place(principal, deadline))
            if source is not None:
                places = self._source(source)
                given_here = await self._take(places, principal.tenant_id, deadline)
                held.callback(places.release, principal.tenant_id, given_here)
            given = await self._take(self._workers, principal.tenant_id, deadline)
            held.callback(self._workers.release, principal.tenant_id, given)
            yield

    @asynccontextmanager
    async def _tenant_place(self, principal: Principal, deadline: float) -> AsyncIterator[None]:
        """One of the tenant's places, handed out fairly between its users; the tenant's places
        are dropped when no one holds or waits for one (so not kept for every tenant ever seen).
        Safe without a lock for the reason `_claim` gives."""
        tenant = principal.tenant_id
        places = self._tenants.get(tenant)
        if places is None:
            places = self._tenants[tenant] = _Workers(self._per_tenant)
        try:
            given = await self._take(places, principal.user_id, deadline)
            try:
                yield
            finally:
                places.release(principal.user_id, given)
        finally:
            if places.idle and self._tenants.get(tenant) is places:
                del self._tenants[tenant]

    def _source(self, name: str) -> _Workers:
        places = self._sources.get(name)
        if places is None:
            places = self._sources[name] = _Workers(self._per_source)
        return places

    async def _take(self, places: _Workers, who: str, deadline: float) -> float:
        try:
            return await places.acquire(who, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise _busy(self._wait_s) from None

    @asynccontextmanager
    async def _claim(self, key: tuple[str, ...], limit: int, deadline: float) -> AsyncIterator[None]:
        """One place of `key`'s; the slot is dropped when its last holder or waiter leaves.

        Safe without a lock because it all runs on one event loop: a caller counts itself in before
        its first await and out after its last, so a slot with anyone waiting on it is never
        dropped, and whoever comes after a drop gets a new slot with every place free.
        """
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(asyncio.Semaphore(limit))
        slot.claims += 1
        try:
            try:
                await asyncio.wait_for(slot.places.acquire(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _busy(self._wait_s) from None
            try:
                yield
            finally:
                slot.places.release()
        finally:
            slot.claims -= 1
            if slot.claims == 0 and self._slots.get(key) is slot:
                del self._slots[key]


def _busy(wait_s: float) -> ToolError:
    return ToolError(
        "busy",
        f"Too many queries are running; this one waited {wait_s:g} s for a place and did not run. "
        "Try again when the others have finished.",
    )
