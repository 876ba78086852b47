"""Per-turn limits on model calls and tool rounds, shared by the loop and the tools' inner calls,
and what the turn spent against them (calls, rounds, tokens)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loom.agent.model import ChatMessage, ChatModel

MOST_TOKENS_A_CALL = 10_000_000  # past any model's context and output together


class BudgetExhausted(Exception):
    pass


@dataclass
class TurnBudget:
    max_model_calls: int
    max_tool_rounds: int
    model_calls: int = 0
    tool_rounds: int = 0
    tokens: int = 0

    def spent(self, usage: Mapping[str, Any]) -> None:
        """Count a reply's tokens (endpoints that report no usage add nothing)."""
        total = usage.get("total_tokens")
        # As the endpoint says, within reason: 10^40 and -10^12 reached the turn log (R22-4).
        if isinstance(total, int) and 0 <= total <= MOST_TOKENS_A_CALL:
            self.tokens += total

    def take_model_call(self) -> None:
        if self.model_calls >= self.max_model_calls:
            raise BudgetExhausted(f"this turn reached its limit of {self.max_model_calls} model calls")
        self.model_calls += 1

    @property
    def tools_allowed(self) -> bool:
        return self.tool_rounds < self.max_tool_rounds


@dataclass
class InnerModel:
    """What a tool gets for its own generation call: the turn's model, counted against the budget."""

    model: ChatModel
    budget: TurnBudget

    async def complete_text(self, system: str, user: str) -> str:
        self.budget.take_model_call()
        messages: Sequence[ChatMessage] = (
            ChatMessage(role="system", content=system),
            ChatMessage(role="user", content=user),
        )
        reply = await self.model.complete(messages)
        self.budget.spent(reply.usage)
        return reply.text
