"""Showing a turn's AG-UI events in a terminal: streamed text, the query, a table, a spinner.

The CLI's `ask`, `chat` and `demo` all print through this one renderer; its tables are
`loom.cli.tables.result_view`, as `loom query sql`'s are. Errors go to stderr, the answer to stdout.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ag_ui.core import BaseEvent, EventType
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.syntax import Syntax

from loom.agent.events import APPROVAL_REQUIRED, RESULT_TABLE
from loom.cli.tables import result_view

TABLE_ROWS = 20


@dataclass
class TurnPrinter:
    console: Console
    errors: Console = field(default_factory=lambda: Console(stderr=True))
    show_tables: bool = True
    thread_id: str | None = None
    error: str | None = None
    _status: Status | None = None
    _args: dict[str, str] = field(default_factory=dict)

    def _wait(self, message: str) -> None:
        self._stop()
        self._status = self.console.status(message, spinner="dots")
        self._status.start()

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    async def consume(self, events: AsyncIterator[BaseEvent]) -> None:
        try:
            async for event in events:
                self.show(event)
        finally:
            self._stop()

    def show(self, event: BaseEvent) -> None:  # noqa: C901 - one branch per event type reads best
        kind = event.type
        if kind == EventType.RUN_STARTED:
            self.thread_id = event.thread_id  # type: ignore[attr-defined]
            self._wait("thinking…")
        elif kind == EventType.TEXT_MESSAGE_START:
            self._stop()
        elif kind == EventType.TEXT_MESSAGE_CONTENT:
            self.console.print(event.delta, end="", markup=False, highlight=False)  # type: ignore[attr-defined]
        elif kind == EventType.TEXT_MESSAGE_END:
            self.console.print()
        elif kind == EventType.TOOL_CALL_START:
            self._stop()
            self._args[event.tool_call_id] = ""  # type: ignore[attr-defined]
            self.console.print(f"[dim]→ calling {event.tool_call_name}[/dim]")  # type: ignore[attr-defined]
        elif kind == EventType.TOOL_CALL_ARGS:
            self._args[event.tool_call_id] += event.delta  # type: ignore[attr-defined]
        elif kind == EventType.TOOL_CALL_END:
            self._show_args(self._args.get(event.tool_call_id, ""))  # type: ignore[attr-defined]
            self._wait("running the query…")
        elif kind == EventType.TOOL_CALL_RESULT:
            self._stop()
            self._show_tool_error(event.content)  # type: ignore[attr-defined]
            self._wait("thinking…")
        elif kind == EventType.CUSTOM:
            self._custom(event.name, event.value)  # type: ignore[attr-defined]
        elif kind == EventType.RUN_ERROR:
            self._stop()
            self.fail(event.message)  # type: ignore[attr-defined]
        elif kind == EventType.RUN_FINISHED:
            self._stop()

    def fail(self, message: str) -> None:
        self.error = message
        self.errors.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)

    def _show_args(self, arguments: str) -> None:
        try:
            parsed = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            parsed = {"arguments": arguments}
        shown = ", ".join(f"{k}={v!r}" for k, v in parsed.items() if v is not None)
        self.console.print(f"[dim]  {shown}[/dim]")

    def _show_tool_error(self, content: str) -> None:
        try:
            error = json.loads(content).get("error")
        except (json.JSONDecodeError, AttributeError):
            return
        if error:
            self.console.print(f"[yellow]  tool error ({error.get('code')}): {error.get('message')}[/yellow]")

    def _custom(self, name: str, value: dict[str, Any]) -> None:
        if name == RESULT_TABLE:
            self._stop()
            self.console.print(Syntax(value["query"], "sql", word_wrap=True, background_color="default"))
            if self.show_tables:
                self.console.print(result_view(value, limit=TABLE_ROWS))
        elif name == APPROVAL_REQUIRED:
            self.console.print(f"[bold yellow]approval required[/bold yellow] for {value['tool']}")
