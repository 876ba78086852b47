"""One log line per turn, for the people who run the service: who, what it cost, how it ended.

It carries ids, counts and outcomes, never content: questions, answers, queries and rows can hold
the customer's data and stay in the conversation store, where access is checked. The line is
`key=value` pairs on the `loom.turns` logger at INFO, so it greps and parses without a schema.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from loom.identity import Principal

log = logging.getLogger("loom.turns")


@dataclass(frozen=True)
class TurnSummary:
    run_id: str
    conversation_id: str
    principal: Principal
    outcome: str  # finished | interrupted | disconnected | model_error | internal_error | store_error
    model_calls: int
    tool_calls: Sequence[str]  # "name:status", in the order they ran
    tokens: int
    elapsed_ms: float

    def line(self) -> str:
        fields = {
            "run": self.run_id,
            "conversation": self.conversation_id,
            "tenant": self.principal.tenant_id,
            "user": self.principal.user_id,
            "outcome": self.outcome,
            "model_calls": self.model_calls,
            "tools": ",".join(self.tool_calls) or "-",
            "tokens": self.tokens,
            "ms": f"{self.elapsed_ms:.0f}",
        }
        return "turn " + " ".join(f"{key}={value}" for key, value in fields.items())


def log_turn(summary: TurnSummary) -> None:
    if log.isEnabledFor(logging.INFO):  # building the line is skipped when nobody reads it
        log.info(summary.line())
