"""`loom`: the command line. Its help is part of the docs; keep it true to the code."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from loom.cli.usage import use_metavars
from loom.settings import Provider, Settings, SettingsError, settings_for

use_metavars()  # help names values (QUESTION, --home PATH), not Python types; see loom/cli/usage.py

app = typer.Typer(
    name="loom",
    help="Loom Data Agents: ask questions about your data; runs with zero configuration on embedded "
    "engines, or on Azure OpenAI / any OpenAI-compatible endpoint when configured.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


def mount_subcommands() -> None:
    from loom.cli.catalog import catalog_app
    from loom.cli.data import data_app
    from loom.cli.eval import eval_app
    from loom.cli.query import add_languages, query_app
    from loom.cli.search import index_app, search_command

    add_languages()  # a language registered since the last call gets its command
    if not any(c.name == "search" for c in query_app.registered_commands):
        query_app.command("search")(search_command)
    if any(group.typer_instance is query_app for group in app.registered_groups):
        return  # mounted already (main() after a test mounted them)

    app.add_typer(query_app, name="query")  # its help, exit codes included, is query_group's docstring
    app.add_typer(data_app, name="data", help="Sample data: `loom data seed` builds the sales lakehouse.")
    app.add_typer(eval_app, name="eval")  # its help is eval_group's docstring
    app.add_typer(index_app, name="index")  # its help is index_group's docstring
    app.add_typer(
        catalog_app,
        name="catalog",
        help="Inspect a catalog: `loom catalog link` shows what schema linking keeps for a question.",
    )


def _error(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)


def _check_sources(settings: Settings, names: list[str] | None = None) -> None:
    """Before any slow work or any state written: a broken sources file raises SourcesFileError (main()
    says what to fix, exit 2); an unknown --source name exits 1."""
    from loom.agent.sources import UnknownSourceError, load_sources, pick_sources

    try:
        pick_sources(load_sources(settings), names)
    except UnknownSourceError as e:
        _error(str(e))
        raise typer.Exit(1) from None


def _seed_if_sample(settings: Settings) -> None:
    """Seed the samples on first use, when they are the sources in use (there is no sources file)."""
    from loom.cli.data import seed_graph, seed_storms, seed_with_progress
    from loom.lakehouse.graph import is_written
    from loom.lakehouse.seed import is_seeded

    settings.ensure_home()  # before the seeder makes it with the default mode
    if settings.resolved_sources_file.exists():
        return
    if not is_seeded(settings.lakehouse_dir):
        err.print(
            f"seeding the sample lakehouse in {settings.lakehouse_dir} (first run only)…", soft_wrap=True
        )
        seed_with_progress(settings.lakehouse_dir)
        seed_storms(settings.storms_dir)
    if not is_written(settings.graph_dir):  # a home seeded before the graph sample gets it now
        seed_graph(settings.lakehouse_dir, settings.graph_dir)


def _describe_model(settings: Settings) -> str:
    if settings.provider is Provider.OFFLINE:
        return "offline (no model configured: verified answers only)"
    return f"{settings.provider.value} model {settings.model_name!r}"


HomeOption = Annotated[
    Path | None,
    typer.Option("--home", metavar="PATH", help="State folder (default: $LOOM_HOME or ./.loom)."),
]
SourceOption = Annotated[
    list[str] | None,
    typer.Option("--source", "-s", metavar="NAME", help="Source name(s) to use (default: all)."),
]


@app.command()
def ask(
    question: Annotated[str, typer.Argument(metavar="QUESTION", help="The question, in plain language.")],
    conversation: Annotated[
        str | None, typer.Option("--conversation", "-c", metavar="ID", help="Continue this conversation id.")
    ] = None,
    source: SourceOption = None,
    home: HomeOption = None,
) -> None:
    """Ask one question; prints the streamed answer, the query that produced it and its rows.

    Errors go to stderr; exit 1 when the turn failed (or the source or conversation is unknown).
    """
    from loom.cli.local import local_session

    if not question.strip():
        _error("the question is empty")
        raise typer.Exit(2)
    settings = settings_for(home)
    _check_sources(settings, source)
    _seed_if_sample(settings)

    async def run() -> str | None:
        async with local_session(settings, console, conversation) as session:
            printer = await session.ask(question, source)
            if printer.thread_id:
                console.print(f"[dim]conversation {printer.thread_id}[/dim]")
            return printer.error

    if asyncio.run(run()):
        raise typer.Exit(1)


@app.command()
def chat(source: SourceOption = None, home: HomeOption = None) -> None:
    """An interactive conversation (a REPL). Empty line, `exit` or Ctrl-D ends it."""
    from loom.cli.local import local_session

    settings = settings_for(home)
    _check_sources(settings, source)
    _seed_if_sample(settings)
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
    _check_sources(settings)
    _seed_if_sample(settings)
    console.rule(f"[bold]Loom Data Agents demo[/bold] · {_describe_model(settings)}")
    if asyncio.run(run_demo(settings, console)):
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(metavar="HOST", help="Address to bind (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, metavar="PORT", help="Port (default 8000).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Serve the HTTP API: POST /v1/chat (AG-UI over SSE), conversations, health; docs at /docs.

    Exit 2 when it cannot start: bad configuration, or the address cannot be bound (port in use).
    """
    import uvicorn

    from loom.api.app import create_app
    from loom.api.auth import AuthConfigError, check_bind
    from loom.api.server import server_config

    settings = settings_for(home)
    bind_host, bind_port = host or settings.host, port or settings.port
    _check_sources(settings)  # a broken sources file stops here, with what to fix, not at startup
    try:
        check_bind(settings, bind_host)
        app = create_app(settings)
    except AuthConfigError as e:
        err.print(f"[red]refusing to start:[/red] {escape(str(e))}")
        raise typer.Exit(2) from e
    sock = _bind(bind_host, bind_port)  # before seeding: a busy port fails at once
    _seed_if_sample(settings)
    sock.listen(2048)  # from the banner on, a client waits for the server instead of being refused
    model, auth = _describe_model(settings), settings.auth_mode
    err.print(f"Loom API on {_url(sock)} · {model} · auth {auth} · docs at /docs", soft_wrap=True)
    _log_to_stderr(settings.log_level)
    server = uvicorn.Server(server_config(app, settings))  # configures its loggers
    _bound_uvicorn_logs()
    server.run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound here so that the banner names the real address and a port in use
    (or an address that is not this machine's) is one line, exit 2, rather than uvicorn's traceback."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as e:  # OverflowError: a port out of range from LOOM_PORT
        sock.close()
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        _error(f"cannot listen on {host}:{port}: {reason}")
        raise typer.Exit(2) from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


def _bound_uvicorn_logs() -> None:
    """uvicorn's access and error logs keep their formatters; their records are bounded too."""
    import logging

    from loom.engines.errors import BoundedArguments

    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(BoundedArguments())


def _log_to_stderr(level: str) -> None:
    """Loom's own loggers (the per-turn line among them) to stderr; uvicorn configures its own.

    Only `loom.*`: at INFO, the HTTP and Azure SDK loggers would add a line per request (azure.core
    with its headers), which is theirs to turn on.
    """
    import logging

    handler = logging.StreamHandler()
    from loom.engines.errors import BoundedFormatter

    handler.setFormatter(BoundedFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loom_log = logging.getLogger("loom")
    loom_log.addHandler(handler)
    loom_log.setLevel(level.upper())
    loom_log.propagate = False


def main() -> None:
    from loom.agent.sources import SourcesFileError

    mount_subcommands()
    try:
        app()
    except (SettingsError, SourcesFileError) as e:  # a configuration mistake, not a crash: say what to fix
        _error(str(e))
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
