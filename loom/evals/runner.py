"""Running a suite: each case's turns through a driver, checked, with a timeout and retries.

Cases run concurrently up to a limit; one that hangs is stopped at its timeout and recorded as
such, and the run goes on. A case whose turn ended in a transient model error (the endpoint
failing after its own retries) is run again from the start, up to `retries` times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from loom.evals.cassettes import CASE, Cassette
from loom.evals.checks import Failure, GoldCheck, check_turn
from loom.evals.drivers import Driver, count_tokens
from loom.evals.observe import TurnObserver, TurnRecord
from loom.evals.suite import Case, Turn

Status = Literal["passed", "failed", "timeout", "replay_miss"]
TRANSIENT = {"model_error"}  # what a second try may not see again


@dataclass
class CaseResult:
    case: Case
    status: Status
    turns: list[TurnRecord] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    attempts: int = 1

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def latency_s(self) -> float:
        return sum(t.latency_s for t in self.turns)

    @property
    def tokens(self) -> int | None:
        counted = [t.tokens for t in self.turns if t.tokens is not None]
        return sum(counted) if counted else None

    def failed(self, check: str) -> bool:
        return any(f.check == check for f in self.failures)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "tags": list(self.case.tags),
            "source": self.case.source,
            "status": self.status,
            "failures": [{"check": f.check, "reason": f.reason} for f in self.failures],
            "gold": None if not self.has_gold else not self.failed("gold"),
            "attempts": self.attempts,
            "latency_s": round(self.latency_s, 3),
            "tokens": self.tokens,
            "turns": [t.to_json() for t in self.turns],
        }

    @property
    def has_gold(self) -> bool:
        return any(t.expect.gold is not None for t in self.case.all_turns)


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 1
    timeout_s: float = 180.0
    retries: int = 1


Progress = Callable[[CaseResult], None]
Drivers = Callable[[Case], Driver]  # where each case's turns run


async def run_cases(
    cases: list[Case],
    drivers: Drivers,
    gold: GoldCheck,
    options: RunOptions,
    *,
    cassette: Cassette | None = None,
    progress: Progress | None = None,
) -> list[CaseResult]:
    """Every case's result, in the cases' order."""
    places = asyncio.Semaphore(options.concurrency)

    async def one(case: Case) -> CaseResult:
        async with places:
            result = await _with_retries(case, drivers(case), gold, options, cassette)
        if progress is not None:
            progress(result)
        return result

    return list(await asyncio.gather(*(one(c) for c in cases)))


async def _with_retries(
    case: Case, driver: Driver, gold: GoldCheck, options: RunOptions, cassette: Cassette | None
) -> CaseResult:
    for attempt in range(1, options.retries + 2):
        result = await asyncio.create_task(_timed(case, driver, gold, options.timeout_s, cassette))
        result.attempts = attempt
        if not _transient(result):
            break
    return result


def _transient(result: CaseResult) -> bool:
    return result.status == "failed" and any(
        t.error is not None and t.error["code"] in TRANSIENT for t in result.turns
    )


async def _timed(
    case: Case, driver: Driver, gold: GoldCheck, timeout_s: float, cassette: Cassette | None
) -> CaseResult:
    """One attempt at the case, in a task of its own so its cassette and token counters are its own."""
    CASE.set(case.id)
    result = CaseResult(case, "passed")
    try:
        await asyncio.wait_for(_play(case, driver, gold, result), timeout_s)
    except TimeoutError:
        result.status = "timeout"
        result.failures.append(Failure("timeout", f"the case did not finish within {timeout_s:g} s"))
    if cassette is not None and cassette.missed(case.id):
        result.status = "replay_miss"
        missed = ", ".join(cassette.missed(case.id))
        result.failures.insert(0, Failure("replay", f"no recorded model answer for request {missed}"))
    elif result.failures and result.status == "passed":
        result.status = "failed"
    return result


async def _play(case: Case, driver: Driver, gold: GoldCheck, result: CaseResult) -> None:
    conversation: str | None = None
    sources = [case.source] if case.source else None
    for turn in case.all_turns:
        observer = TurnObserver(turn.question)
        result.turns.append(observer.record)  # kept as far as it got when the case times out
        record = await _turn(driver, observer, turn, case, conversation, sources)
        conversation = record.conversation_id or conversation
        result.failures += await check_turn(record, turn.expect, case.source, gold, case.functions)


async def _turn(
    driver: Driver,
    observer: TurnObserver,
    turn: Turn,
    case: Case,
    conversation: str | None,
    sources: list[str] | None,
) -> TurnRecord:
    message = turn.question if not case.evidence else f"{turn.question}\n\nHint: {case.evidence}"
    tokens = count_tokens()
    started = time.perf_counter()
    try:
        async for event in driver.turn(conversation, message, sources):
            observer.add(event)
    finally:
        observer.record.latency_s = time.perf_counter() - started
        observer.record.tokens = tokens[0] if tokens[0] else None
    return observer.record
