"""SUMMARIZE and RELATEDTABLE.

SUMMARIZE(table, group columns…, "Name", expression…): the combinations of the group columns among
the table's rows (columns of tables it looks up allowed); each added expression is evaluated with
the group's rows of the table as its filter (as DAX does: the rows, so their expanded table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loom.engines.contracts import QueryError
from loom.engines.dax.aggregations import column_arg, over
from loom.engines.dax.calculate import calculatetable
from loom.engines.dax.filters import RowsFilter
from loom.engines.dax.relations import Rel, RelColumn, TableRow
from loom.engines.dax.scope import Col, TableScope
from loom.engines.dax.syntax import Name, Node, Text
from loom.engines.dax.values import kind_of

if TYPE_CHECKING:
    from loom.engines.dax.compiler import Compiler, Env


def summarize(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    if not args:
        raise QueryError(
            "wrong_arguments", "SUMMARIZE takes a table, group-by columns, then name/expression pairs."
        )
    rel = c.table(args[0], env)
    groups, named = _parts(c, args[1:])
    if rel.base is None or rel.condition is None:
        if named:
            raise QueryError(
                "unsupported",
                "SUMMARIZE adds columns only over a model table here; use ADDCOLUMNS(SUMMARIZE(…), …).",
            )
        return _distinct_of(c, rel, groups)
    grouped = _grouped(c, rel, groups, env)
    if not named:
        return grouped
    return _extended(c, rel, grouped, groups, named, env)


def _parts(c: Compiler, args: tuple[Node, ...]) -> tuple[list[Col], list[tuple[str, Node]]]:
    groups: list[Col] = []
    named: list[tuple[str, Node]] = []
    i = 0
    while i < len(args):
        if isinstance(args[i], Text):
            if i + 1 >= len(args):
                raise QueryError("wrong_arguments", "A SUMMARIZE column name has no expression after it.")
            named.append((args[i].value, args[i + 1]))  # type: ignore[attr-defined]
            i += 2
            continue
        if named:
            raise QueryError(
                "wrong_arguments", "SUMMARIZE's group-by columns come before the name/expression pairs."
            )
        groups.append(column_arg(c, args[i], "SUMMARIZE"))
        i += 1
    if not groups:
        raise QueryError("wrong_arguments", "SUMMARIZE needs at least one group-by column.")
    return groups, named


def _grouped(c: Compiler, rel: Rel, groups: list[Col], env: Env) -> Rel:
    def select(row_env: Env) -> str:
        row = row_env.rows[-1]
        assert isinstance(row, TableRow)
        looking = TableRow(row.scope, row.model, row.sources, row.aliases, lookups=True)
        parts = []
        for i, col in enumerate(groups):
            found = looking.column(col)
            if found is None:
                raise QueryError(
                    "wrong_arguments",
                    f"SUMMARIZE groups by {col.dax()}, which '{row.scope.table.name}' does not look up.",
                )
            parts.append(f"{found.sql} AS c{i}")
        return "DISTINCT " + ", ".join(parts)

    sql = over(c, rel, env, select)
    return Rel(sql, [_column(c, col, i) for i, col in enumerate(groups)])


def _distinct_of(c: Compiler, rel: Rel, groups: list[Col]) -> Rel:
    alias = c.aliases.new("s")
    parts = []
    for i, col in enumerate(groups):
        found = rel.column(col)
        if found is None:
            raise QueryError(
                "wrong_arguments", f"SUMMARIZE groups by {col.dax()}, which the table does not have."
            )
        parts.append(f"{alias}.{found.sql} AS c{i}")
    sql = f"SELECT DISTINCT {', '.join(parts)} FROM ({rel.sql}) AS {alias}"
    return Rel(sql, [_column(c, col, i) for i, col in enumerate(groups)])


def _extended(
    c: Compiler, rel: Rel, grouped: Rel, groups: list[Col], named: list[tuple[str, Node]], env: Env
) -> Rel:
    """Each added column in the context of its group's rows of the table (a filter on them)."""
    assert rel.base is not None and rel.condition is not None
    g = c.aliases.new("g")
    inner = rel.condition

    def group_rows(scope: TableScope) -> str:
        same = [f"{scope.column(col)} IS NOT DISTINCT FROM {g}.c{i}" for i, col in enumerate(groups)]
        return " AND ".join([f"({inner(scope)})", *same])

    rows = RowsFilter(rel.base.name, group_rows, c.model, c.sources, c.aliases)
    group_env = type(env)(env.ctx.apply(rows, c.model), (), env.vars)
    columns = list(grouped.columns)
    selects = [f"{g}.c{i} AS c{i}" for i in range(len(groups))]
    for name, expr in named:
        value = c.scalar(expr, group_env)
        k = len(columns)
        columns.append(RelColumn(name, f"c{k}", value.kind, given=True))
        selects.append(f"{value.sql} AS c{k}")
    return Rel(f"SELECT {', '.join(selects)} FROM ({grouped.sql}) AS {g}", columns)


def _column(c: Compiler, col: Col, i: int) -> RelColumn:
    return RelColumn(
        f"{col.table}[{col.name}]", f"c{i}", kind_of(c.model.column(col.table, col.name).data_type), col
    )


def relatedtable(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    """RELATEDTABLE(T): the rows of T related to the current row, CALCULATETABLE(T) by context transition."""
    if len(args) != 1 or not isinstance(args[0], Name):
        raise QueryError("wrong_arguments", "RELATEDTABLE takes a model table.")
    return calculatetable(c, args, env)


FUNCTIONS = {"SUMMARIZE": summarize, "RELATEDTABLE": relatedtable}
