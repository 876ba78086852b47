"""Queries share the workers fairly: one tenant's slow queries cannot starve another's."""

from __future__ import annotations

import asyncio
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
        assert waited < 0.4  # not behind the flood (12 × 0.5 s on 2 places: 3 s)
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
