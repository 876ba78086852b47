"""`loom demo`: a scripted conversation over the sample lakehouse.

Offline, the questions below match the verified-query library (so each answer comes from a query
actually run on the lakehouse), and the last one shows what happens without a model. With a model
configured, the same questions go to the model.
"""

from __future__ import annotations

from rich.console import Console

from loom.cli.local import local_session
from loom.settings import Settings

QUESTIONS = (
    "What is the total revenue by year?",
    "Show me the top 5 products by revenue",
    "How many orders were placed per channel?",
    "Which is the best store in each region by revenue?",
    "Why did revenue dip in February?",
)


async def run_demo(settings: Settings, console: Console, questions: tuple[str, ...] = QUESTIONS) -> bool:
    """Runs the conversation; True when any turn ended in an error."""
    failed = False
    async with local_session(settings, console) as session:
        for question in questions:
            console.print()
            console.rule(f"[bold cyan]you:[/bold cyan] {question}", align="left", style="cyan")
            printer = await session.ask(question)
            failed = failed or printer.error is not None
    console.print()
    if session.conversation_id:  # none when every turn failed before it started
        stored = f"conversation {session.conversation_id} · stored in {settings.database_path}"
        console.print(f"[dim]{stored}[/dim]")
    return failed
