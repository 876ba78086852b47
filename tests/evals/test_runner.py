"""The runner's own promises: a case that hangs is stopped at its timeout, keeps what it did, and
the run goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from loom.evals.checks import Verdict
from loom.evals.drivers import Driver
from loom.evals.runner import RunOptions, run_cases
from loom.evals.suite import Case


class HangsAfterACall:
    """Starts a tool call, then never finishes the turn (a model that stopped answering)."""

    async def turn(
        self, conversation_id: str | None, message: str, sources: list[str] | None
    ) -> AsyncIterator[Any]:
        yield {"type": "RUN_STARTED", "threadId": "c1"}
        yield {"type": "TOOL_CALL_START", "toolCallId": "t1", "toolCallName": "nl2sql"}
        await asyncio.sleep(3600)


class Answers:
    async def turn(
        self, conversation_id: str | None, message: str, sources: list[str] | None
    ) -> AsyncIterator[Any]:
        yield {"type": "TEXT_MESSAGE_CONTENT", "delta": "hello"}


async def no_gold(*_: Any) -> Verdict:
    raise AssertionError("no case here has a gold query")


async def test_a_hung_case_is_stopped_at_its_timeout_with_its_partial_turn_and_the_run_goes_on() -> None:
    hung, fine = Case(id="hung", question="Orders in 2024?"), Case(id="fine", question="Hi")
    drivers: dict[str, Driver] = {"hung": HangsAfterACall(), "fine": Answers()}
    results = await run_cases(
        [hung, fine], lambda c: drivers[c.id], no_gold, RunOptions(timeout_s=0.3, retries=0)
    )
    stopped, answered = results
    assert stopped.status == "timeout" and answered.status == "passed"
    [turn] = stopped.turns  # what it did before the timeout is kept, not an empty case
    assert [c.name for c in turn.calls] == ["nl2sql"] and turn.conversation_id == "c1"
    assert 0.25 < stopped.latency_s < 5
