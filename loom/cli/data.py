"""`loom data seed`: the sample sales lakehouse the zero-config agent answers from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loom.cli.query import query_settings

if TYPE_CHECKING:  # the seeder loads when a command runs, not for `--help`
    from loom.lakehouse.seed import SeedReport

data_app = typer.Typer(no_args_is_help=True, add_completion=False)


@data_app.callback()
def data_group() -> None:
    """Local data: build the sample sales lakehouse that the zero-config agent answers from."""


@data_app.command("seed")
def seed_command(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            metavar="PATH",
            help="State folder; the lakehouse goes in PATH/lakehouse. Default: $LOOM_HOME or ./.loom.",
        ),
    ] = None,
    orders: Annotated[
        int, typer.Option(min=1, metavar="N", help="How many orders to generate (about 1.8 lines each).")
    ] = 20000,
    seed: Annotated[
        int, typer.Option(metavar="N", help="Random seed: the same seed always gives the same tables.")
    ] = 7,
    force: Annotated[
        bool, typer.Option("--force", help="Seed again even if the lakehouse exists (replaces it).")
    ] = False,
) -> None:
    """Build the samples: the sales lakehouse (SQL), StormEvents (KQL) and a graph (Gremlin).

    bronze.orders: order lines as they arrive (all text, some of it messy).
    silver.orders: the same lines cleaned, typed and de-duplicated.
    gold: a star schema, fact_sales with dim_date, dim_customer, dim_product and dim_store.
    storms: StormEvents (5,000 severe-weather events of 2007, the table Microsoft's KQL docs query)
    and PopulationData.
    graph: the lakehouse's customers, products, stores and their relationships, and its lineage
    (asked in Gremlin as sales-graph). Generated locally and deterministically: nothing is downloaded.
    """
    from loom.lakehouse.graph import is_written as graph_written
    from loom.lakehouse.seed import is_seeded
    from loom.lakehouse.storms import is_written

    settings = query_settings(home)
    settings.ensure_home()
    root = settings.lakehouse_dir
    lakehouse, storms = force or not is_seeded(root), force or not is_written(settings.storms_dir)
    graph = lakehouse or not graph_written(settings.graph_dir)  # drawn from the lakehouse: with it
    if not lakehouse and not storms and not graph:
        typer.echo(
            f"The samples already exist in {settings.home}; nothing done (use --force to rebuild them)."
        )
        return
    if lakehouse:
        report = seed_with_progress(root, seed=seed, orders=orders)
        Console().print(_seed_table(report))
    if storms:
        typer.echo(f"StormEvents sample: {seed_storms(settings.storms_dir, seed)} (asked in KQL)")
    if graph:
        typer.echo(f"Sample graph: {seed_graph(root, settings.graph_dir)} (asked in Gremlin)")


def seed_graph(lakehouse: Path, folder: Path) -> Path:
    from loom.lakehouse.graph import write_graph

    return write_graph(lakehouse, folder)


def seed_storms(folder: Path, seed: int = 7) -> Path:
    from loom.lakehouse.storms import write_storms

    return write_storms(folder, seed=seed)


def seed_with_progress(root: Path, *, seed: int = 7, orders: int = 20000) -> SeedReport:
    """Seed the lakehouse with a progress bar on stderr (stdout stays the command's own output)."""
    from loom.lakehouse.seed import seed_lakehouse

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    stderr = Console(stderr=True)  # not a terminal (a log, a pipe): no bar, rather than a blank line
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as bar:
        task = bar.add_task("seeding", total=None)

        def advance(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        return seed_lakehouse(root, seed=seed, orders=orders, progress=advance)


def _seed_table(report: SeedReport) -> Table:
    what = f"seed {report.seed}, {report.orders} orders"
    table = Table(title=f"Seeded {report.root} ({what}) in {report.elapsed_s:.1f} s", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("path")
    for t in report.tables:
        table.add_row(f"{t.layer}.{t.name}", f"{t.rows:,}", str(t.path))
    return table
