"""What the ways in (HTTP, CLI, Teams) call to run one turn: a stream of AG-UI events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from ag_ui.core import BaseEvent
from pydantic import BaseModel, Field

from loom.identity import Principal


class TurnRequest(BaseModel):
    conversation_id: str | None = None
    message: str = Field(min_length=1)
    sources: list[str] | None = None


class TurnRunner(Protocol):
    def run_turn(self, principal: Principal, request: TurnRequest) -> AsyncIterator[BaseEvent]:
        """Stream one turn: RUN_STARTED … RUN_FINISHED, or RUN_ERROR as the last event.

        The run's thread id is the conversation id (a new conversation when none is given).
        """
        ...
