"""`loom demo`: a scripted conversation over the sample lakehouse.

Offline, the questions below match the verified-query library (so each answer comes from a query
actually run on the lakehouse: SQL, DAX on the lakehouse's semantic model and Gremlin on its graph
when the question names them), and the last one shows what happens without a model. With a model
configured, the same questions go to the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from loom.agent.sources import GRAPH_SOURCE, MODEL_SOURCE
from loom.cli.local import local_session
from loom.settings import Settings


@dataclass(frozen=True)
class Ask:
    question: str
    source: str | None = None  # one the conversation asks by name (the semantic model is not offered else)


QUESTIONS = (
    Ask("What is the total revenue by year?"),
    Ask("Show me the top 5 products by revenue"),
    Ask("How many orders were placed per channel?"),
    Ask("Which is the best store in each region by revenue?"),
    Ask("What is the revenue by store channel?", MODEL_SOURCE),  # the same data, in DAX
    Ask("Which tables does bronze.orders feed, directly or not?", GRAPH_SOURCE),  # lineage, in Gremlin
    Ask("Why did revenue dip in February?"),
)


async def run_demo(settings: Settings, console: Console, questions: tuple[Ask, ...] = QUESTIONS) -> bool:
    """Runs the conversation; True when any turn ended in an error."""
    failed = False
    async with local_session(settings, console) as session:
        for ask in questions:
            console.print()
            asked = ask.question + (f" [dim](source {ask.source})[/dim]" if ask.source else "")
            console.rule(f"[bold cyan]you:[/bold cyan] {asked}", align="left", style="cyan")
            printer = await session.ask(ask.question, [ask.source] if ask.source else None)
            failed = failed or printer.error is not None
    console.print()
    if session.conversation_id:  # none when every turn failed before it started
        stored = f"conversation {session.conversation_id} · stored in {settings.database_path}"
        console.print(f"[dim]{stored}[/dim]")
    return failed
