"""`loom query sql` (and one command per registered language): a source queried directly, no model.

Each follows the Query CLI contract (DESIGN.md): the query is validated by parsing
(read-only), run with a row cap and a time limit, and printed as a table, JSON (the ResultSet) or
CSV. Exit codes: 0 ok; 2 refused or invalid (not read-only, parse error, unknown table or source);
1 the query failed while running (execution error, timeout); 3 a CSV export stopped at the default
row cap (the rows printed are not all the rows; pass --max-rows for more).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from loom.agent.sources import resolve_source
from loom.cli.tables import cell_text, result_view
from loom.engines.contracts import Engine, QueryError, ResultSet, unsupported_dialect
from loom.settings import Settings, SettingsError, settings_for

EXIT_FAILED = 1  # the query was accepted but failed while running
EXIT_REFUSED = 2  # the query (or the source, or the input) was refused before running
EXIT_TRUNCATED = 3  # a CSV export stopped at the default row cap: what it printed is not every row
# Accepted, then failed while running (exit 1); every other code is a refusal (exit 2).
FAILURE_CODES = frozenset(
    {"execution_error", "timeout", "engine_failed", "out_of_memory", "unrepresentable_value"}
)
MAX_ROWS_LIMIT = 1_000_000_000  # beyond it DuckDB's LIMIT overflows; no export needs more

query_app = typer.Typer(no_args_is_help=True, add_completion=False)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


@query_app.callback()
def query_group() -> None:
    """Run a query directly on a data source: no model involved, same limits and checks as the agent.

    Exit codes: 0 ok; 2 refused or invalid; 1 failed while running; 3 a CSV export stopped at the
    default row cap (pass --max-rows for more).
    On a refusal or failure, --format json or csv prints {"error": {"code": …, "message": …}} on
    stdout; the table format prints `error (code): message` on stderr.
    """


# --- loom query <language> ---------------------------------------------------------------------

# What each language's help adds; a language without an entry gets the general sentence.
LANGUAGE_NOTES = {
    "sql": "Only one SELECT / WITH … SELECT / UNION / VALUES statement may run. Writes, management "
    "commands and functions that reach files or the network are refused. The embedded engine takes "
    "--dialect duckdb, tsql, databricks, spark or sqlite (translated to DuckDB); Synapse and "
    "Databricks sources take their own dialect only.",
    "dax": "One DAX query (DEFINE … EVALUATE … ORDER BY) over a semantic model: a source of kind model, "
    "or a folder with a model.bim (TMSL), a TMDL definition/ folder or a PBIP project, its tables in "
    "tables/ beside it or in a lakehouse. Result columns are named as Power BI names them "
    "('Table[Column]', '[Measure]'); a function the embedded engine lacks is refused by name.",
    "kql": "One KQL query (let statements allowed) over a local source's tables, which answer to their "
    "bare name when unique or ['schema.table'], or over an adx source's database. Management commands "
    "(.show …), evaluate, externaldata, cluster()/database() and set statements are refused; operators "
    "the embedded engine lacks are refused by name. --now fixes the clock for ago() and now().",
    "gremlin": "One Gremlin traversal (g.V()… or g.E()…) over a graph: a source of kind graph, or a "
    "GraphSON file or a folder with a nodes and an edges CSV file in the air-routes form. Steps that "
    "write (addV, property, drop…), with(), io() and lambdas are refused by name; a terminal "
    "toList(), next() or hasNext() is done for you. One row per result, in a column named value.",
}
GENERAL_NOTE = "Only read-only queries run; anything else is refused before it reaches the engine."
EXAMPLES = {
    "sql": """Examples:

      loom query sql "SELECT * FROM gold.dim_store"

      loom query sql --dialect tsql --format json "SELECT TOP 3 name FROM gold.dim_product"

      loom query sql --source ./shop.sqlite --batch questions.jsonl""",
    "dax": """Examples:

      loom query dax --source ./models/sales 'EVALUATE SUMMARIZECOLUMNS(Product[Category], "R", [Revenue])'

      loom query dax --source sales-model --format json 'EVALUATE TOPN(3, VALUES(Store[Name]), [Revenue])'
""",
    "kql": """Examples:

      loom query kql "fact_sales | summarize revenue = sum(net_amount) by store_key | top 3 by revenue"

      loom query kql --now 2025-07-01T00:00:00 "dim_date | where ['date'] > ago(30d) | count"

      loom query kql "fact_sales | make-series lines = count() on date_key from 20250101 to 20250108 step 1"
""",
    "gremlin": """Examples:

      loom query gremlin --source ./air-routes "g.V().has('code','AUS').out('route').values('code')"

      loom query gremlin --source ./air-routes "g.V(3).repeat(out()).times(2).path().by('code').limit(5)"
""",
}


@dataclass(frozen=True)
class QueryRun:
    """One `loom query <language>` invocation, as the options gave it."""

    language: str
    query: str | None
    source: str | None
    dialect: str | None
    max_rows: int | None
    timeout: float | None
    now: str | None
    output: OutputFormat
    batch: Path | None


def add_language(language: str) -> None:
    """`loom query <language>`: the same options, limits and exit codes for every language."""
    if any(c.name == language for c in query_app.registered_commands):
        return

    def command(
        query: Annotated[
            str | None,
            typer.Argument(
                metavar="QUERY", help="The query. Omit it, or pass '-', to read the query from stdin."
            ),
        ] = None,
        source: Annotated[
            str | None,
            typer.Option(
                "--source",
                "-s",
                metavar="SOURCE",
                help="A source name from the sources file, or a path: a .duckdb or "
                ".sqlite file, or a folder whose Delta folders, *.parquet and *.csv files become tables "
                "(subfolders such as bronze/silver/gold become schemas). Default: the configured "
                "default source (the sample lakehouse).",
            ),
        ] = None,
        dialect: Annotated[
            str | None,
            typer.Option(
                metavar="DIALECT",
                help="Dialect the query is written in, when the engine translates it. Default: the source's.",
            ),
        ] = None,
        max_rows: Annotated[
            int | None,
            typer.Option(
                "--max-rows",
                min=1,
                max=MAX_ROWS_LIMIT,
                metavar="N",
                help="Return at most N rows; more sets `truncated`. Default: LOOM_QUERY_MAX_ROWS (1000). "
                "A CSV export cut at that default exits 3; one cut at an explicit N says so on stderr "
                "and exits 0.",
            ),
        ] = None,
        timeout: Annotated[
            float | None,
            typer.Option(
                min=0.001,
                metavar="S",
                help="Stop the query after S seconds (exit 1, code `timeout`). "
                "Default: LOOM_QUERY_TIMEOUT_S.",
            ),
        ] = None,
        now: Annotated[
            str | None,
            typer.Option(
                metavar="TIME",
                help="Answer as of this ISO time: the clock functions return it (reproducible answers).",
            ),
        ] = None,
        output: Annotated[
            OutputFormat,
            typer.Option("--format", "-f", help="table (for people), json (the ResultSet) or csv."),
        ] = OutputFormat.table,
        batch: Annotated[
            Path | None,
            typer.Option(
                metavar="PATH",
                help='Run every {"id", "query"} line of this JSONL file (or - for stdin); writes one JSON '
                'line per input: {"id", "result"} or {"id", "error"}. Exit code: the worst line\'s.',
            ),
        ] = None,
    ) -> None:
        run_query(QueryRun(language, query, source, dialect, max_rows, timeout, now, output, batch))

    command.__doc__ = _help(language)
    query_app.command(language)(command)


def _help(language: str) -> str:
    name = language.upper()
    return f"""Run one read-only {name} query (or a --batch of them) and print the rows.

    {LANGUAGE_NOTES.get(language, GENERAL_NOTE)}

    Exit codes: 0 ok; exit 2 refused or invalid; exit 1 failed while running (error, timeout);
    exit 3 a CSV export stopped at the default row cap (stderr says so: pass --max-rows for more).

    On exit 1 or 2, with --format json or csv (and --batch) stdout has
    {{"error": {{"code": …, "message": …}}}}; the table format prints `error (code): message` on stderr.

    {EXAMPLES.get(language, "")}
    """


def add_languages() -> None:
    """A `loom query` command for each language some kind of source answers."""
    from loom.engines.registry import OPENERS

    for language in dict.fromkeys(language for _, language in OPENERS):
        add_language(language)


def run_query(run: QueryRun) -> None:
    from loom.cloud import engine_pool

    errors_as = OutputFormat.json if run.batch is not None else run.output  # a batch writes JSON lines
    settings = query_settings(output=errors_as)
    pool = engine_pool(settings)
    try:
        source = resolve_source(run.source or settings.default_source, settings, run.language)
        engine = pool.engine(source, run.language)
        query = Query(engine, _dialect(run, engine), _parse_now(run.now), *_limits(run, settings))
        if run.batch is not None:
            raise typer.Exit(_run_batch(query.execute, _read_lines(run.batch)))
        result = query.execute(_read_query(run.query))
    except QueryError as e:
        _fail(e, errors_as)
    finally:
        pool.close()
    _print_result(result, run.output, capped_by_default=run.max_rows is None)


def _limits(run: QueryRun, settings: Settings) -> tuple[int, int, float]:
    rows = run.max_rows or settings.query_max_rows
    return rows, settings.query_max_bytes, run.timeout or settings.query_timeout_s


def _dialect(run: QueryRun, engine: Engine) -> str | None:
    """The dialect asked for, refused up front when the engine cannot take it (exit 2)."""
    if run.dialect is not None and run.dialect not in engine.dialects:
        raise unsupported_dialect(engine, run.dialect)
    return run.dialect


@dataclass(frozen=True)
class Query:
    """An engine with this invocation's dialect, clock and limits."""

    engine: Engine
    dialect: str | None
    now: dt.datetime | None
    max_rows: int
    max_bytes: int
    timeout_s: float

    def execute(self, text: str) -> ResultSet:
        return self.engine.execute(
            text,
            max_rows=self.max_rows,
            max_bytes=self.max_bytes,
            timeout_s=self.timeout_s,
            now=self.now,
            dialect=self.dialect,
        )


def query_settings(home: Path | None = None, output: OutputFormat = OutputFormat.json) -> Settings:
    """The settings, or the query contract's answer to bad ones: exit 2 with the error (see `_fail`)."""
    try:
        return settings_for(home)
    except SettingsError as e:
        _fail(QueryError("invalid_configuration", str(e)), output)


def _parse_now(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError as e:
        raise QueryError("invalid_argument", f"--now {value!r} is not an ISO date or time: {e}") from e


def _read_query(query: str | None) -> str:
    text = sys.stdin.read() if query in (None, "-") else query
    if not text or not text.strip():
        raise QueryError("invalid_argument", "No query given: pass it as an argument or on stdin.")
    return text


def _exit_code(error: QueryError) -> int:
    return EXIT_FAILED if error.code in FAILURE_CODES else EXIT_REFUSED


def _fail(error: QueryError, output: OutputFormat = OutputFormat.json) -> NoReturn:
    """The machine contract, `{"error": {...}}` on stdout, for json and csv; a line on stderr for people."""
    if output is OutputFormat.table:
        typer.echo(f"error ({error.code}): {error.message}", err=True)
    else:
        typer.echo(_json(error.to_json()))
    raise typer.Exit(_exit_code(error))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- batch ------------------------------------------------------------------------------------


def _read_lines(batch: Path) -> Iterator[str]:
    if str(batch) == "-":
        yield from sys.stdin
        return
    try:
        with batch.open(encoding="utf-8") as lines:
            yield from lines
    except OSError as e:
        raise QueryError("invalid_argument", f"Cannot read the batch file {batch}: {e}") from e


def _run_batch(execute: Callable[[str], ResultSet], lines: Iterable[str]) -> int:
    """One JSON line out per line in; returns the worst exit code among the lines."""
    worst = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item_id: Any = number
        try:
            item_id, text = _batch_item(line, number)
            out = {"id": item_id, "result": execute(text).model_dump()}
        except QueryError as e:
            out = {"id": item_id, **e.to_json()}
            worst = max(worst, _exit_code(e))
        typer.echo(_json(out))
    return worst


def _batch_item(line: str, number: int) -> tuple[Any, str]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as e:
        raise QueryError("invalid_batch_line", f"line {number} is not JSON: {e}") from e
    if not isinstance(item, dict) or not isinstance(item.get("query"), str):
        raise QueryError("invalid_batch_line", f'line {number} needs a string "query" field')
    return item.get("id", number), item["query"]


# --- output -----------------------------------------------------------------------------------


def _print_result(result: ResultSet, output: OutputFormat, *, capped_by_default: bool) -> None:
    """Print the rows; when they stopped at a limit, say so where the format can (see EXIT_TRUNCATED)."""
    reason = _truncation_reason(result, capped_by_default)
    capped_by_default = capped_by_default or result.truncated_by == "bytes"
    if output is OutputFormat.json:
        typer.echo(result.model_dump_json())  # `truncated` says it
    elif output is OutputFormat.table:
        Console().print(result_view(result, show_types=True, truncated_note=f"stopped at {reason}"))
    else:
        _print_csv(result)
        for note in result.notes:
            typer.echo(f"note: {note}", err=True)
        if result.truncated:
            typer.echo(f"warning: the output stopped at {result.row_count} rows, {reason}", err=True)
            if capped_by_default:
                raise typer.Exit(EXIT_TRUNCATED)


def _truncation_reason(result: ResultSet, capped_by_default: bool) -> str:
    if result.truncated_by == "bytes":
        return "the size limit (LOOM_QUERY_MAX_BYTES); select fewer or shorter columns"
    if capped_by_default:
        return "the default row cap; pass --max-rows N for more"
    return "the --max-rows limit; there are more rows"


def _print_csv(result: ResultSet) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([c.name for c in result.columns])
    writer.writerows([[cell_text(v) for v in row] for row in result.rows])
