"""`loom index build` (documents into a local search index) and `loom query search` (rank an
index's passages for a question), with the Query CLI's formats, batch mode and exit codes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from loom.cli.query import (
    OutputFormat,
    _fail,
    _print_result,
    _read_lines,
    _read_query,
    _run_batch,
    query_settings,
)
from loom.engines.contracts import Embedder, QueryError, ResultSet
from loom.engines.search.chunks import DEFAULT_OVERLAP, DEFAULT_SIZE

if TYPE_CHECKING:
    from loom.engines.search.build import BuildOptions
    from loom.settings import Settings

index_app = typer.Typer(no_args_is_help=True, add_completion=False)
DEFAULT_TOP = 10


@index_app.callback()
def index_group() -> None:
    """Local search indexes: `loom index build` makes or updates one from documents."""


@index_app.command("build")
def build(
    source: Annotated[
        Path,
        typer.Option(
            "--source",
            "-s",
            metavar="PATH",
            help="A folder of .txt, .md (YAML front matter becomes metadata), .html and .pdf files, "
            "or a JSONL file of {_id, title, text, …} lines (BEIR's form: each line one passage).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="The index folder (made or updated).")
    ],
    chunk_size: Annotated[
        int, typer.Option(min=100, metavar="CHARS", help="Passage size in characters (files only).")
    ] = DEFAULT_SIZE,
    overlap: Annotated[
        int, typer.Option(min=0, metavar="CHARS", help="Characters a passage repeats from the one before.")
    ] = DEFAULT_OVERLAP,
) -> None:
    """Build a search index, or update one: only changed documents are read again, and documents
    that are gone are removed. A file that cannot be read (a PDF without text) is skipped with a
    warning; the rest are indexed.

    Example:

      loom index build --source ./policies --out ./policies-index
    """
    from loom.agent.embeddings import build_embedder
    from loom.engines.search.build import build_index

    if overlap >= chunk_size // 2:
        raise typer.BadParameter("the overlap must be under half the chunk size", param_hint="--overlap")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        try:
            report = build_index(source, out, _options(chunk_size, overlap, build_embedder), progress)
        except FileNotFoundError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
    for skipped in report.skipped:
        typer.echo(f"warning: skipped {skipped}", err=True)
    how = "built" if report.rebuilt else "updated"
    if report.embedding_model:
        how += f" (with vectors from {report.embedding_model})"
    typer.echo(
        f"{how} {out}: {report.passages:,} passages; {report.added} added, {report.updated} updated, "
        f"{report.removed} removed, {report.unchanged} unchanged, {len(report.skipped)} skipped "
        f"({report.seconds:.1f} s)"
    )


def _options(size: int, overlap: int, embedder_for: Callable[[Settings], Embedder | None]) -> BuildOptions:
    """Chunking, and the configured embedding model when there is one (LOOM_EMBEDDING_MODEL): the
    passages get its vectors, and searches with the same model configured rank by both."""
    from loom.engines.search.build import BuildOptions

    settings = query_settings()
    embedder = embedder_for(settings)
    return BuildOptions(size, overlap, embedder, settings.embedding_model if embedder else None)


def search_command(
    query: Annotated[
        str | None, typer.Argument(metavar="QUERY", help="What to look for; omit it, or pass '-', for stdin.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source", "-s", metavar="SOURCE", help="An index folder, or a source name (kind index)."
        ),
    ] = None,
    filter: Annotated[
        str | None,
        typer.Option(metavar="ODATA", help="An OData filter on the index's fields: \"department eq 'hr'\"."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, max=1000, metavar="K", help="Passages to return.")] = DEFAULT_TOP,
    timeout: Annotated[float | None, typer.Option(min=0.001, metavar="S", help="Time limit.")] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table (for people), json (the ResultSet) or csv.")
    ] = OutputFormat.table,
    batch: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH", help='Run every {"id", "query"} line of this JSONL file; one JSON line out each.'
        ),
    ] = None,
) -> None:
    """Rank an index's passages for a question (BM25; hybrid when the index has vectors).

    Columns: id (the source document), chunk_id, title, text, score, then the index's metadata.
    Exit codes: 0 ok; 2 refused (an empty search, a filter that does not parse or names an
    unknown field, a missing index); 1 failed while running.

    Example:

      loom query search --source ./policies-index --filter "year ge 2024" "refund window"
    """
    from loom.agent.sources import resolve_source
    from loom.cloud import engine_pool
    from loom.engines.registry import open_retriever

    errors_as = OutputFormat.json if batch is not None else output
    settings = query_settings(output=errors_as)
    try:
        if source is None:
            raise QueryError("invalid_argument", "Name the index: --source FOLDER or a source of kind index.")
        retriever = open_retriever(resolve_source(source, settings, "search"), engine_pool(settings).access)
        limit = timeout or settings.query_timeout_s

        def run(text: str) -> ResultSet:
            return retriever.search(text, top=top, timeout_s=limit, filter=filter)

        if batch is not None:
            raise typer.Exit(_run_batch(run, _read_lines(batch)))
        result = run(_read_query(query))
    except QueryError as e:
        _fail(e, errors_as)
    _print_result(result, output, capped_by_default=False)
