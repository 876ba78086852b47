"""Checking one turn against its expectations: each check that fails says why, in a line.

Besides what a case asks for, every turn is held to the product's rule that an answer shows no
query that did not run (`grounded`): a model that writes a plausible query in prose and answers
from it, without calling a tool, fails whatever else it got right.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loom.agent.reply_guard import QUERY_FENCES, normal
from loom.evals.calls import calls_verdict
from loom.evals.figures import numbers_in, ungrounded_figures
from loom.evals.observe import TurnRecord
from loom.evals.scoring import Verdict
from loom.evals.suite import Expect
from loom.tools.fenced import blocks

# (source, gold query, the agent's query, expectations) → the verdict of executing both
GoldCheck = Callable[[str | None, str, str, Expect], Awaitable[Verdict]]


@dataclass(frozen=True)
class Failure:
    check: str
    reason: str


async def check_turn(
    turn: TurnRecord,
    expect: Expect,
    source: str | None,
    gold: GoldCheck,
    functions: Sequence[Mapping[str, Any]] = (),
) -> list[Failure]:
    failures = [f for f in (_error(turn), _grounded(turn)) if f is not None]
    if not functions:  # a function-calling case runs no tool: there is nothing to hold figures to
        failures += _figures(turn)
    failures += _tools(turn, expect) + _text(turn, expect) + _limits(turn, expect)
    if expect.refuse:
        failures += _refused(turn)
    if expect.gold is not None:
        failures += await _gold(turn, expect, source, gold)
    if expect.calls is not None and turn.error is None:
        failures += _calls(turn, expect, functions)
    return failures


def _calls(turn: TurnRecord, expect: Expect, functions: Sequence[Mapping[str, Any]]) -> list[Failure]:
    assert expect.calls is not None
    made = [(c.name, c.arguments_text) for c in turn.calls]
    reason = calls_verdict(expect.calls, made, functions)
    return [] if reason is None else [Failure("calls", reason)]


def _error(turn: TurnRecord) -> Failure | None:
    if turn.error is None:
        return None
    return Failure("error", f"{turn.error['code']}: {turn.error['message']}")


def _grounded(turn: TurnRecord) -> Failure | None:
    ran = {normal(q) for q in turn.queries}
    shown = [body for info, body in blocks(turn.answer) if info in QUERY_FENCES and body]
    unrun = [q for q in shown if normal(q) not in ran]
    if not unrun:
        return None
    return Failure("grounded", f"the answer shows a query that did not run: {unrun[0][:120]!r}")


def _figures(turn: TurnRecord) -> list[Failure]:
    unfounded = figures_without_source(turn)
    if not unfounded:
        return []
    return [Failure("figures", f"the answer states {unfounded[0]!r}, which no tool result shows")]


def figures_without_source(turn: TurnRecord) -> list[str]:
    """The figures the turn's answer states that neither its tool results nor the question show."""
    shown = [turn.question, *(json.dumps([c.arguments, c.result, c.table], default=str) for c in turn.calls)]
    return ungrounded_figures(turn.answer, shown)


def _tools(turn: TurnRecord, expect: Expect) -> list[Failure]:
    called = [c.name for c in turn.calls]
    failures: list[Failure] = []
    if expect.tools is not None and not expect.tools and called:
        failures.append(Failure("tools", f"expected no tool call; called {', '.join(called)}"))
    for name in expect.tools or ():
        if name not in called:
            failures.append(
                Failure("tools", f"expected a call of {name}; called {', '.join(called) or 'none'}")
            )
    for name, wanted in expect.tool_args.items():
        calls = [c.arguments for c in turn.calls if c.name == name]
        if not any(all(args.get(k) == v for k, v in wanted.items()) for args in calls):
            failures.append(Failure("tool_args", f"no call of {name} had {wanted}; got {calls or 'no call'}"))
    return failures


def _text(turn: TurnRecord, expect: Expect) -> list[Failure]:
    answer = turn.answer.casefold()
    failures = [
        Failure("contains", f"the answer does not contain {text!r}")
        for text in expect.contains
        if text.casefold() not in answer
    ]
    stated = numbers_in(turn.answer)
    for number in expect.numbers:
        if not any(_close(number, value, expect.tolerance) for value in stated):
            failures.append(Failure("numbers", f"the answer does not state {number:g}"))
    return failures


def _close(expected: float, value: float, tolerance: float) -> bool:
    return abs(expected - value) <= tolerance * max(abs(expected), 1e-9)


def _limits(turn: TurnRecord, expect: Expect) -> list[Failure]:
    failures = []
    if expect.max_latency_s is not None and turn.latency_s > expect.max_latency_s:
        failures.append(
            Failure("latency", f"took {turn.latency_s:.2f} s; the limit is {expect.max_latency_s:g} s")
        )
    if expect.max_tokens is not None and turn.tokens is not None and turn.tokens > expect.max_tokens:
        failures.append(Failure("tokens", f"used {turn.tokens} tokens; the limit is {expect.max_tokens}"))
    return failures


def _refused(turn: TurnRecord) -> list[Failure]:
    if turn.queries:
        return [Failure("refuse", f"expected a refusal; a query ran: {turn.queries[0][:120]!r}")]
    if not turn.answer.strip():
        return [Failure("refuse", "expected the agent to say it cannot; it said nothing")]
    return []


async def _gold(turn: TurnRecord, expect: Expect, source: str | None, gold: GoldCheck) -> list[Failure]:
    assert expect.gold is not None
    if not turn.queries:
        return [Failure("gold", "no query ran, so there is no result to compare with the gold query")]
    verdict = await gold(source, expect.gold, turn.queries[-1], expect)
    if not verdict.scoreable:  # the gold side failed: the case says nothing of the agent
        return [Failure("unscoreable", verdict.reason)]
    return [] if verdict.match else [Failure("gold", verdict.reason)]
