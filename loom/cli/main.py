"""`loom`: the command line. Its help is part of the docs; keep it true to the code."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from loom.settings import Provider, Settings, SettingsError, settings_for

app = typer.Typer(
    name="loom",
    help="Loom Data Agents: ask questions about your data; runs with zero configuration on embedded "
    "engines, or on Azure OpenAI / any OpenAI-compatible endpoint when configured.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


def _mount_subcommands() -> None:
    from loom.cli.catalog import catalog_app
    from loom.cli.data import data_app
    from loom.cli.query import query_app

    if any(group.typer_instance is query_app for group in app.registered_groups):
        return  # mounted already (main() after a test mounted them)

    app.add_typer(query_app, name="query", help="Run a query directly on a source (no model).")
    app.add_typer(data_app, name="data", help="Sample data: `loom data seed` builds the sales lakehouse.")
    app.add_typer(
        catalog_app,
        name="catalog",
        help="Inspect a catalog: `loom catalog link` shows what schema linking keeps for a question.",
    )


def _ensure_seeded(settings: Settings) -> None:
    from loom.lakehouse.seed import is_seeded, seed_lakehouse

    if is_seeded(settings.lakehouse_dir):
        return
    with console.status("seeding the sample lakehouse (first run only)…"):
        seed_lakehouse(settings.lakehouse_dir)


def _describe_model(settings: Settings) -> str:
    if settings.provider is Provider.OFFLINE:
        return "offline (no model configured: verified answers only)"
    return f"{settings.provider.value} model {settings.model_name!r}"


HomeOption = Annotated[
    Path | None, typer.Option("--home", help="State folder (default: $LOOM_HOME or ./.loom).")
]
SourceOption = Annotated[
    list[str] | None, typer.Option("--source", "-s", help="Source name(s) to use (default: all).")
]


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in plain language.")],
    conversation: Annotated[
        str | None, typer.Option("--conversation", "-c", help="Continue this conversation id.")
    ] = None,
    source: SourceOption = None,
    home: HomeOption = None,
) -> None:
    """Ask one question; prints the streamed answer, the query that produced it and its rows."""
    from loom.cli.local import local_session

    if not question.strip():
        err.print("[red]error:[/red] the question is empty")
        raise typer.Exit(2)
    settings = settings_for(home)
    _ensure_seeded(settings)

    async def run() -> str | None:
        async with local_session(settings, console, conversation) as session:
            printer = await session.ask(question, source)
            console.print(f"[dim]conversation {printer.thread_id}[/dim]")
            return printer.error

    if asyncio.run(run()):
        raise typer.Exit(1)


@app.command()
def chat(source: SourceOption = None, home: HomeOption = None) -> None:
    """An interactive conversation (a REPL). Empty line, `exit` or Ctrl-D ends it."""
    from loom.cli.local import local_session

    settings = settings_for(home)
    _ensure_seeded(settings)
    console.print(f"[bold]Loom[/bold] · {_describe_model(settings)} · empty line or Ctrl-D to quit")

    async def run() -> None:
        async with local_session(settings, console) as session:
            while True:
                try:
                    line = await asyncio.to_thread(console.input, "[bold cyan]you>[/bold cyan] ")
                except (EOFError, KeyboardInterrupt):
                    break
                if line.strip().lower() in {"", "exit", "quit"}:
                    break
                await session.ask(line, source)

    asyncio.run(run())


@app.command()
def demo(home: HomeOption = None) -> None:
    """A scripted conversation over the sample lakehouse (seeded on first run)."""
    from loom.cli.demo import run_demo

    settings = settings_for(home)
    _ensure_seeded(settings)
    console.rule(f"[bold]Loom Data Agents demo[/bold] · {_describe_model(settings)}")
    if asyncio.run(run_demo(settings, console)):
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    home: HomeOption = None,
) -> None:
    """Serve the HTTP API: POST /v1/chat (AG-UI over SSE), conversations, health; docs at /docs."""
    import uvicorn

    from loom.agent.sources import load_sources
    from loom.api.app import create_app
    from loom.api.auth import AuthConfigError, check_bind

    settings = settings_for(home)
    bind_host, bind_port = host or settings.host, port or settings.port
    load_sources(settings)  # a broken sources file stops here, with what to fix, not at startup
    try:
        check_bind(settings, bind_host)
        app = create_app(settings)
    except AuthConfigError as e:
        err.print(f"[red]refusing to start:[/red] {e}")
        raise typer.Exit(2) from e
    _ensure_seeded(settings)
    model, auth = _describe_model(settings), settings.auth_mode
    err.print(f"Loom API on http://{bind_host}:{bind_port} · {model} · auth {auth} · docs at /docs")
    _log_to_stderr(settings.log_level)
    uvicorn.run(app, host=bind_host, port=bind_port, log_level=settings.log_level)


def _log_to_stderr(level: str) -> None:
    """Loom's own loggers (the per-turn line among them) to stderr; uvicorn configures its own.

    Only `loom.*`: at INFO, the HTTP and Azure SDK loggers would add a line per request (azure.core
    with its headers), which is theirs to turn on.
    """
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loom_log = logging.getLogger("loom")
    loom_log.addHandler(handler)
    loom_log.setLevel(level.upper())
    loom_log.propagate = False


def main() -> None:
    from loom.agent.sources import SourcesFileError

    _mount_subcommands()
    try:
        app()
    except (SettingsError, SourcesFileError) as e:  # a configuration mistake, not a crash: say what to fix
        err.print(f"[red]error:[/red] {e}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
