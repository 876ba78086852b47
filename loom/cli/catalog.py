"""`loom catalog link`: which tables and columns schema linking would show the model, and why.

Mounted by the main CLI: `app.add_typer(catalog_app, name="catalog", help=...)`.
Exit codes: 0 ok; 2 the question is empty, or the source is unknown or cannot be opened (stdout has
{"error": {...}}).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from loom.agent.sources import resolve_source
from loom.cli.query import query_settings
from loom.engines.contracts import QueryError
from loom.engines.sources import Source
from loom.settings import Settings

if TYPE_CHECKING:  # the engines and linking load when a command runs, not for `--help`
    from loom.engines.sql.linking import LinkedSchema

EXIT_REFUSED = 2

catalog_app = typer.Typer(no_args_is_help=True, add_completion=False)


class LinkFormat(StrEnum):
    table = "table"
    json = "json"


@catalog_app.callback()
def catalog_group() -> None:
    """Look at a source's catalog the way the agent does."""


@catalog_app.command("link")
def link_command(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            "-s",
            metavar="SOURCE",
            help="A source name from the sources file, or a .duckdb/.sqlite file or folder.",
        ),
    ],
    question: Annotated[
        str, typer.Option("--question", "-q", metavar="QUESTION", help="The question to link.")
    ],
    evidence: Annotated[
        str, typer.Option(metavar="TEXT", help="Hints that name columns or values (BIRD-style evidence).")
    ] = "",
    output: Annotated[
        LinkFormat, typer.Option("--format", "-f", help="table (for people) or json.")
    ] = LinkFormat.table,
) -> None:
    """Print the tables and columns schema linking keeps for a question, with the reasons.

    Example: loom catalog link --source ./shop.sqlite --question "sales in Texas" --format json
    """
    try:
        if not question.strip():
            raise QueryError("invalid_argument", "The question is empty.")
        settings = query_settings()
        linked = _link(resolve_source(source, settings), question, evidence, settings)
    except QueryError as e:
        typer.echo(json.dumps(e.to_json(), ensure_ascii=False))
        raise typer.Exit(EXIT_REFUSED) from e
    if output is LinkFormat.json:
        typer.echo(json.dumps(to_json(linked), indent=2))
    else:
        Console().print(_table(linked))


def _link(source: Source, question: str, evidence: str, settings: Settings) -> LinkedSchema:
    from loom.cloud import engine_pool
    from loom.tools.sql_schema import link_question

    pool = engine_pool(settings)
    try:
        return link_question(source, pool.engine(source, "sql"), question, evidence=evidence)
    finally:
        pool.close()


def to_json(linked: LinkedSchema) -> dict[str, Any]:
    """`{"tables": [{"name", "score", "why", "columns": [{"name", "type", "score", "why"}]}],
    "foreign_keys": [...]}`."""
    return {
        "tables": [
            {
                "name": t.name,
                "score": round(linked.scores[t.name].score, 3),
                "why": linked.scores[t.name].reasons,
                "columns": [_column_json(linked, t.name, c.name, c.type) for c in t.columns],
            }
            for t in linked.tables
        ],
        "foreign_keys": [fk.model_dump(mode="json") for fk in linked.foreign_keys],
    }


def _column_json(linked: LinkedSchema, table: str, column: str, type_: str) -> dict[str, Any]:
    scored = linked.scores[table].columns[column]
    return {"name": column, "type": type_, "score": round(scored.score, 3), "why": scored.reasons}


def _table(linked: LinkedSchema) -> Table:
    view = Table("table", "column", "score", "why")
    for table in to_json(linked)["tables"]:
        view.add_row(table["name"], "", f"{table['score']:.2f}", "; ".join(table["why"]))
        for column in table["columns"]:
            view.add_row("", column["name"], f"{column['score']:.2f}", "; ".join(column["why"]))
    return view
