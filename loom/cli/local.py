"""Running turns in this process (the CLI's `ask`, `chat`, `demo`), with the same agent as the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from rich.console import Console

from loom.access import OPEN
from loom.agent.build import build_agent
from loom.agent.loop import Agent
from loom.agent.sources import SourcesFileError, UnknownSourceError
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.store import ConversationFull, ConversationNotFound
from loom.agent.turns import TurnRequest
from loom.cli.render import TurnPrinter
from loom.identity import DEV_PRINCIPAL
from loom.settings import Settings


@dataclass
class LocalSession:
    agent: Agent
    console: Console
    conversation_id: str | None = None

    async def ask(self, message: str, sources: list[str] | None = None) -> TurnPrinter:
        """Runs one turn, printing the answer on the console and any error on stderr."""
        printer = TurnPrinter(self.console)
        request = TurnRequest(conversation_id=self.conversation_id, message=message, sources=sources)
        try:
            await printer.consume(self.agent.run_turn(DEV_PRINCIPAL, request))
        except ConversationNotFound as e:
            printer.fail(f"unknown conversation {e.conversation_id!r}")
            return printer
        except ConversationFull as e:
            printer.fail(str(e))
            return printer
        except (UnknownSourceError, SourcesFileError) as e:
            printer.fail(str(e))
            return printer
        self.conversation_id = printer.thread_id
        return printer


@asynccontextmanager
async def local_session(
    settings: Settings, console: Console, conversation_id: str | None = None
) -> AsyncIterator[LocalSession]:
    settings.ensure_home()
    store = SqliteConversationStore(settings.database_path)
    try:
        # The local user holds the data files and credentials already: every source is theirs.
        yield LocalSession(build_agent(settings, store, access=OPEN), console, conversation_id)
    finally:
        await store.close()
