"""The one place where a tool call that is not read-only can pause the run for a person.

The server decides, never the model: the gate looks at the tool's declared effect. The
platform-actions work builds approval tokens and the resume flow on top of this seam.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from loom.agent.model import ToolCall
from loom.identity import Principal
from loom.tools.base import Effect, Tool


class Decision(StrEnum):
    RUN = "run"
    PAUSE = "pause"  # wait for a person's approval; the call has not run
    DENY = "deny"


class ApprovalGate(Protocol):
    async def decide(self, principal: Principal, tool: Tool, call: ToolCall) -> Decision: ...


class EffectGate:
    """Read-only tools run; anything that writes waits for approval."""

    async def decide(self, principal: Principal, tool: Tool, call: ToolCall) -> Decision:
        return Decision.RUN if tool.effect is Effect.READ else Decision.PAUSE
