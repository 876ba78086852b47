"""`loom eval`: replay a suite through the agent, score it, compare runs, load benchmark suites."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from loom.evals.harness import RunSpec
    from loom.evals.runner import CaseResult
    from loom.settings import Settings

eval_app = typer.Typer(no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True)


@eval_app.callback()
def eval_group() -> None:
    """Evaluation suites: run a suite through the agent and score each answer, compare two runs
    (and gate a change on them), and turn Spider or BIRD into suites.

    Exit codes: 0 done; 1 the gate failed, or the pass rate is under --fail-under;
    2 the suite, the model or the options cannot be used (nothing was run).
    """


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


@eval_app.command("run")
def run_command(
    suite: Annotated[Path, typer.Argument(metavar="SUITE", help="A suite file (.yaml or .jsonl).")],
    out_dir: Annotated[Path, typer.Option("--out", metavar="DIR", help="Where the run's folder goes.")],
    record: Annotated[
        bool, typer.Option("--record", help="Call the configured model and keep its answers in the cassette.")
    ] = False,
    replay: Annotated[
        bool, typer.Option("--replay", help="Answer from the cassette only (default when it exists).")
    ] = False,
    live: Annotated[
        bool, typer.Option("--live", help="Call the configured model and keep nothing (default without one).")
    ] = False,
    cassette: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="The cassette (default: cassettes/<suite name>.jsonl beside it)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, metavar="N", help="Cases run at once.")] = 1,
    timeout: Annotated[float, typer.Option(min=1, metavar="S", help="Seconds a case may take.")] = 180.0,
    retries: Annotated[
        int, typer.Option(min=0, metavar="N", help="Runs again of a case that met a model error.")
    ] = 1,
    baseline: Annotated[
        str | None,
        typer.Option(
            metavar="plain", help="Also score the plain one-shot prompt on cases with a gold query."
        ),
    ] = None,
    direct: Annotated[
        bool,
        typer.Option(
            "--direct", help="Ask each question of its source's data tool directly (no chat model deciding)."
        ),
    ] = False,
    url: Annotated[
        str | None, typer.Option(metavar="URL", help="Send the turns to this running Loom server instead.")
    ] = None,
    token: Annotated[str | None, typer.Option(metavar="TOKEN", help="Bearer token for --url.")] = None,
    temperature: Annotated[
        float | None,
        typer.Option(min=0, max=2, metavar="T", help="The model's temperature (default 0: runs repeat)."),
    ] = 0.0,
    fail_under: Annotated[
        float | None, typer.Option(metavar="RATE", help="Exit 1 when the pass rate is under RATE (0–1).")
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", metavar="PATH", help="State folder (default: $LOOM_HOME or ./.loom)."),
    ] = None,
) -> None:
    """Run SUITE through the agent (the API's path, in this process) and score every case.

    Writes DIR/<suite>-<time>/ with config.json, cases.jsonl, summary.json and report.html.
    """
    from loom.evals.harness import EvalError, RunSpec
    from loom.evals.runner import RunOptions
    from loom.evals.suite import SuiteError, load_suite
    from loom.settings import settings_for

    modes = [m for m, on in (("record", record), ("replay", replay), ("live", live)) if on]
    if len(modes) > 1:
        raise _fail(f"choose one of --record, --replay and --live (got {', '.join('--' + m for m in modes)})")
    if baseline not in (None, "plain"):
        raise _fail(f"--baseline takes `plain` (got {baseline!r})")
    try:
        parsed = load_suite(suite)
    except SuiteError as e:
        raise _fail(str(e)) from None
    settings = settings_for(home).model_copy(update={"model_temperature": temperature})
    if not parsed.sources and url is None:
        from loom.cli.main import _seed_if_sample

        _seed_if_sample(settings)
    run_dir = _new_folder(out_dir, f"{parsed.name}-{_stamp()}")
    spec = RunSpec(
        suite=parsed,
        suite_path=suite,
        out=run_dir,
        mode=modes[0] if modes else None,  # type: ignore[arg-type]
        cassette=cassette,
        options=RunOptions(concurrency=concurrency, timeout_s=timeout, retries=retries),
        baseline=baseline == "plain",
        url=url,
        token=token,
        direct=direct,
    )
    try:
        summary = _with_progress(spec, settings, len(parsed.cases))
    except EvalError as e:
        raise _fail(str(e)) from None
    _print_summary(summary, run_dir)
    if fail_under is not None and (summary["pass_rate"] or 0) < fail_under:
        raise typer.Exit(1)


def _new_folder(parent: Path, name: str) -> Path:
    """`parent/name`, or `name-2`, `name-3`… when a run in the same second took it."""
    candidate, n = parent / name, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{name}-{n}"
    return candidate


def _stamp() -> str:
    import datetime as dt

    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _with_progress(spec: RunSpec, settings: Settings, total: int) -> dict[str, Any]:
    """Run the suite showing its progress on stderr: a bar on a terminal, else a line per case
    (a live run redirected to a log said nothing for its 50 minutes)."""
    from loom.evals.harness import run_suite

    if not err.is_terminal:
        return asyncio.run(run_suite(spec, settings, _case_lines(total)))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(spec.suite.name, total=total, failed=0)
        failed = 0

        def advance(result: CaseResult) -> None:
            nonlocal failed
            failed += not result.passed
            bar.update(task, advance=1, failed=failed)

        return asyncio.run(run_suite(spec, settings, advance))


def _case_lines(total: int) -> Callable[[CaseResult], None]:
    done = failed = 0

    def line(result: CaseResult) -> None:
        nonlocal done, failed
        done, failed = done + 1, failed + (not result.passed)
        took = f"{result.latency_s:.1f} s"
        err.print(
            f"[{done}/{total}] {result.case.id} {result.status} in {took} ({failed} failed so far)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    return line


def _print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    table = Table(show_header=False, box=None)
    rows = [
        ("cases", f"{summary['passed']} of {summary['cases']} passed ({_pct(summary['pass_rate'])})"),
        ("execution accuracy", f"{_pct(summary['execution_accuracy'])} of {summary['scored_by_execution']}"),
        ("answered from a query", _pct(summary["answered_from_a_query"])),
        ("answers showing unrun queries", str(summary["answers_showing_unrun_queries"])),
        ("passed after a repair", _repaired(summary["repairs"])),
        ("latency p50 / p95", f"{summary['latency_s']['p50']} / {summary['latency_s']['p95']} s"),
        ("tokens", str(summary["tokens"]["total"])),
        ("statuses", ", ".join(f"{k} {v}" for k, v in summary["statuses"].items())),
    ]
    if "baseline" in summary:
        plain = summary["baseline"]
        accuracy = _pct(plain["execution_accuracy"])
        rows.append(("plain baseline", f"{plain['passed']} of {plain['cases']} ({accuracy})"))
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    out.print(f"[dim]{run_dir}[/dim]")


def _repaired(repairs: dict[str, Any]) -> str:
    mended = repairs.get("passed_after_a_mend_alone", 0)
    alone = f" ({mended} by a mend without the model)" if mended else ""
    return f"{repairs['passed_after_repair']} of {repairs['gold_cases_repaired']} gold cases repaired{alone}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


@eval_app.command("compare")
def compare_command(
    before: Annotated[Path, typer.Argument(metavar="RUN_A", help="The earlier run's folder.")],
    after: Annotated[Path, typer.Argument(metavar="RUN_B", help="The later run's folder.")],
    gate: Annotated[
        bool, typer.Option("--gate", help="Exit 1 when a score drops or p95 latency rises.")
    ] = False,
    max_drop: Annotated[
        float, typer.Option(metavar="POINTS", help="Largest score drop the gate allows (0.02: two points).")
    ] = 0.02,
    max_latency_rise: Annotated[
        float, typer.Option(metavar="SHARE", help="Largest p95 latency rise the gate allows (0.10: 10 %).")
    ] = 0.10,
) -> None:
    """List the cases that regressed and improved from RUN_A to RUN_B, and the scores of both."""
    from loom.evals.compare import Run, compare

    try:
        result = compare(Run.read(before), Run.read(after))
    except ValueError as e:
        raise _fail(str(e)) from None
    for name, (a, b) in result.scores.items():
        out.print(f"{name}: {_pct(a)} → {_pct(b)}")
    out.print(f"latency p95: {result.p95[0]} → {result.p95[1]} s")
    for case, _, now in result.regressions:
        out.print(f"[red]regressed[/red] {escape(case)}: passed → {escape(now)}", soft_wrap=True)
    for case, was, _ in result.improvements:
        out.print(f"[green]improved[/green] {escape(case)}: {escape(was)} → passed", soft_wrap=True)
    out.print(f"{len(result.regressions)} regressed, {len(result.improvements)} improved")
    reasons = result.gate(max_drop, max_latency_rise) if gate else []
    for reason in reasons:
        err.print(f"[red]gate:[/red] {escape(reason)}", soft_wrap=True)
    if reasons:
        raise typer.Exit(1)


@eval_app.command("load")
def load_command(
    benchmark: Annotated[
        str, typer.Argument(metavar="spider|bird|nl2kql|bfcl", help="Which benchmark to read.")
    ],
    data: Annotated[
        Path,
        typer.Option("--data", metavar="DIR", help="Its folder (e.g. ../shared/data/nl2sql_spider_dev)."),
    ],
    out_file: Annotated[
        Path, typer.Option("--out", metavar="SUITE", help="The suite to write (.yaml or .jsonl).")
    ],
    sample: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Take N questions at random (default: all).")
    ] = None,
    seed: Annotated[int, typer.Option(metavar="S", help="The sample's random seed.")] = 0,
    category: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="bfcl: a category to load (repeat; default: every single-turn one)."
        ),
    ] = None,
    examples_from_rest: Annotated[
        bool,
        typer.Option(
            "--examples-from-rest",
            help="spider/bird with --sample: the questions not drawn become their database's verified "
            "queries (to measure what verified examples add on questions they do not contain).",
        ),
    ] = False,
) -> None:
    """Turn Spider dev or BIRD mini-dev into a suite: one case per question, scored by executing
    its gold query on its database (only questions whose database file is present). NL2KQL
    (Microsoft's Defender and Sentinel pairs, which ship no rows): the same, over rows generated for
    its gold queries, written beside the suite (SUITE's name + .data/). Or BFCL's single-turn
    categories: the question's own functions offered, its calls scored."""
    from loom.evals.bfcl import CATEGORIES, load_bfcl
    from loom.evals.loaders import BenchmarkDataError, load_bird, load_spider, write_suite
    from loom.evals.nl2kql import load_nl2kql

    loaders = {"spider": load_spider, "bird": load_bird}
    if benchmark not in (*loaders, "nl2kql", "bfcl"):
        raise _fail(f"the benchmark must be spider, bird, nl2kql or bfcl (got {benchmark!r})")
    if category and benchmark != "bfcl":
        raise _fail("--category is for bfcl only")
    if examples_from_rest and (benchmark not in loaders or sample is None):
        raise _fail("--examples-from-rest is for spider or bird, with --sample (the rest are the examples)")
    try:
        if benchmark == "bfcl":
            suite = load_bfcl(data, categories=tuple(category or CATEGORIES), sample=sample, seed=seed)
        elif benchmark == "nl2kql":
            err.print("generating rows for the gold queries and running them (about 30 s)…")
            suite = load_nl2kql(data, out_file.with_suffix(".data"), sample=sample, seed=seed)
        else:
            suite = loaders[benchmark](data, sample=sample, seed=seed, examples_from_rest=examples_from_rest)
    except (BenchmarkDataError, ValueError) as e:
        raise _fail(str(e)) from None
    written = write_suite(suite, out_file)
    databases = len(suite.sources)
    over = f" over {databases} database{'s' if databases != 1 else ''}" if databases else ""
    out.print(f"{len(suite.cases)} cases{over} → {written}")
