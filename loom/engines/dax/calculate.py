"""CALCULATE and CALCULATETABLE: a new filter context, in DAX's order.

1. The filter arguments are evaluated in the calling context (row context included).
2. Context transition: the rows being iterated become filters.
3. Modifiers: ALL / REMOVEFILTERS / ALLEXCEPT remove filters.
4. The filter arguments are applied: each replaces the filters on its columns, or with KEEPFILTERS
   is added beside them.

A boolean argument (`Product[Color] = "Red"`) is a filter on the columns it names, all of one
table: FILTER(ALL(those columns), the condition). A table argument filters by its lineage: a model
table's rows filter its expanded table; other tables filter the model columns their columns come from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from loom.engines.contracts import QueryError
from loom.engines.dax import values as v
from loom.engines.dax.filters import (
    ColumnPredicate,
    Context,
    Filter,
    Key,
    RowsFilter,
    TupleFilter,
    equal_to,
)
from loom.engines.dax.model import SemanticModel
from loom.engines.dax.relations import Rel
from loom.engines.dax.scope import Col
from loom.engines.dax.syntax import Call, ColumnRef, Name, Node
from loom.engines.dax.values import Expr

if TYPE_CHECKING:
    from loom.engines.dax.compiler import Compiler, Env

_REMOVERS = ("ALL", "REMOVEFILTERS", "ALLEXCEPT", "ALLNOBLANKROW")


@dataclass(frozen=True)
class _Remove:
    cols: frozenset[Key]


@dataclass(frozen=True)
class _Apply:
    filter: Filter
    keep: bool = False


_Step = _Remove | _Apply


def calculate(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    if not args:
        raise QueryError("wrong_arguments", "CALCULATE takes an expression and filters.")
    with c.using(_with_relationships(c, args[1:])):
        return c.scalar(args[0], calculated_env(c, args[1:], env))


def calculatetable(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    if not args:
        raise QueryError("wrong_arguments", "CALCULATETABLE takes a table and filters.")
    with c.using(_with_relationships(c, args[1:])):
        return c.table(args[0], calculated_env(c, args[1:], env))


def _with_relationships(c: Compiler, filters: tuple[Node, ...]) -> SemanticModel:
    """The model with each USERELATIONSHIP's relationship active, and the one it replaces (between
    the same two tables) not."""
    model = c.model
    for node in filters:
        if isinstance(node, Call) and node.name == "USERELATIONSHIP":
            model = _activated(c, model, node)
    return model


def _activated(c: Compiler, model: SemanticModel, node: Call) -> SemanticModel:
    if len(node.args) != 2:
        raise QueryError("wrong_arguments", "USERELATIONSHIP takes the two columns of a relationship.")
    a, b = (_column(c, arg, "USERELATIONSHIP") for arg in node.args)
    ends = {a.key, b.key}
    chosen = next(
        (
            r
            for r in model.relationships
            if {(r.from_table.lower(), r.from_column.lower()), (r.to_table.lower(), r.to_column.lower())}
            == ends
        ),
        None,
    )
    if chosen is None:
        raise QueryError("unknown_relationship", f"No relationship joins {a.dax()} and {b.dax()}.")
    pair = {chosen.from_table.lower(), chosen.to_table.lower()}
    relationships = [
        replace(r, active=r == chosen or (r.active and {r.from_table.lower(), r.to_table.lower()} != pair))
        for r in model.relationships
    ]
    return replace(model, relationships=relationships)


def calculated_env(c: Compiler, filters: tuple[Node, ...], env: Env) -> Env:
    ctx = _filtered(c, filters, env, c.transition(env))
    return replace(env, ctx=ctx, transitioned=len(env.rows))


def apply_filters(c: Compiler, filters: tuple[Node, ...], env: Env) -> Env:
    """Filter arguments without context transition (SUMMARIZECOLUMNS' filter tables)."""
    return replace(env, ctx=_filtered(c, filters, env, env.ctx))


def _filtered(c: Compiler, filters: tuple[Node, ...], env: Env, ctx: Context) -> Context:
    """`ctx` with the filter arguments' removals first, then their filters (DAX's order)."""
    steps = [step for node in filters for step in filter_steps(c, node, env)]
    for step in steps:
        if isinstance(step, _Remove):
            ctx = ctx.remove(step.cols, c.model)
    for step in steps:
        if isinstance(step, _Apply):
            ctx = ctx.apply(step.filter, c.model, keep=step.keep)
    return ctx


def filter_steps(c: Compiler, node: Node, env: Env) -> list[_Step]:
    if isinstance(node, Call) and node.name in _REMOVERS:
        return [_Remove(removed_columns(c, node))]
    if isinstance(node, Call) and node.name == "KEEPFILTERS":
        if len(node.args) != 1:
            raise QueryError("wrong_arguments", "KEEPFILTERS takes one filter.")
        return [
            _Apply(f.filter, keep=True) for f in filter_steps(c, node.args[0], env) if isinstance(f, _Apply)
        ]
    if isinstance(node, Call) and node.name == "USERELATIONSHIP":
        return []  # the relationship is made active around the whole CALCULATE (`_with_relationships`)
    applied = table_filter(c, c.table(node, env)) if c.is_table(node, env) else boolean_filter(c, node, env)
    return [*_date_table_removal(c, applied), _Apply(applied)]


def _date_table_removal(c: Compiler, applied: Filter) -> list[_Step]:
    """A filter on a date table's date column (the table marked as one, or a dateTime column a
    relationship uses as its key) drops every other filter on that table, as DAX does: a year-to-date
    inside a month must not be cut to the month."""
    removals: list[_Step] = []
    for table, column in applied.columns(c.model):
        if _is_date_key(c, table, column):
            removals.append(_Remove(frozenset((table, col) for col in c.model.tables[table].columns)))
    return removals


def _is_date_key(c: Compiler, table: str, column: str) -> bool:
    found = c.model.tables[table].column(column)
    if found is None or found.data_type != "dateTime":
        return False
    if c.model.tables[table].is_date_table:
        return True
    return any(r.to_table.lower() == table and r.to_column.lower() == column for r in c.model.active())


def removed_columns(c: Compiler, node: Call) -> frozenset[Key]:
    """The columns ALL(…), REMOVEFILTERS(…) or ALLEXCEPT(…) stop filtering."""
    if not node.args:
        return frozenset((t, col) for t, table in c.model.tables.items() for col in table.columns)
    if node.name == "ALLEXCEPT":
        kept = {_column(c, a, node.name).key for a in node.args[1:]}
        return expanded_columns(c, _table_name(c, node.args[0], node.name)) - kept
    found: set[Key] = set()
    for arg in node.args:
        if isinstance(arg, ColumnRef):
            found.add(_column(c, arg, node.name).key)
        else:
            found |= expanded_columns(c, _table_name(c, arg, node.name))
    return frozenset(found)


def expanded_columns(c: Compiler, table: str) -> frozenset[Key]:
    return frozenset((t, col) for t in c.model.expanded(table) for col in c.model.tables[t].columns)


def table_filter(c: Compiler, rel: Rel) -> Filter:
    if rel.base is not None and rel.condition is not None:
        return RowsFilter(rel.base.name, rel.condition, c.model, c.sources, c.aliases)
    lineage_of_one = rel.columns[0].lineage if len(rel.columns) == 1 else None
    if rel.predicate is not None and lineage_of_one is not None:
        test = rel.predicate
        return ColumnPredicate(lineage_of_one, lambda sql: f"COALESCE({test(sql)}, FALSE)", ranged=True)
    lineage = [(i, col.lineage) for i, col in enumerate(rel.columns) if col.lineage is not None]
    if not lineage:
        raise QueryError(
            "filter_without_lineage",
            "This filter table's columns do not come from model columns, so it filters nothing: "
            "use TREATAS(<table>, 'Table'[Column]) to say which columns it filters.",
        )
    a = c.aliases.new("l")
    listing = ", ".join(f"{a}.{rel.columns[i].sql} AS c{k}" for k, (i, _) in enumerate(lineage))
    relation = f"SELECT DISTINCT {listing} FROM ({rel.sql}) AS {a}"
    return TupleFilter(tuple(col for _, col in lineage), relation, c.aliases)


def boolean_filter(c: Compiler, node: Node, env: Env) -> Filter:
    """`Table[Column] <op> …` (columns of one table): FILTER(ALL(the columns), the condition)."""
    from loom.engines.dax.references import walk
    from loom.engines.dax.relations import RelRow

    cols = _filter_columns(c, node, walk)
    tables = {col.table.lower() for col in cols}
    if len(tables) != 1:
        raise QueryError(
            "wrong_arguments",
            "A condition used as a CALCULATE filter names columns of exactly one table; "
            "for more, write FILTER(<table>, <condition>).",
        )
    if len(cols) == 1:
        col = cols[0]

        def predicate(sql: str) -> str:
            row = _ValueRow(col, Expr(sql, v.kind_of(c.model.column(col.table, col.name).data_type)))
            return v.condition(c.scalar(node, env.with_row(row)))

        return ColumnPredicate(col, predicate)
    values = _all_values(c, cols)
    alias = c.aliases.new("b")
    condition = v.condition(c.scalar(node, env.with_row(RelRow(values, alias))))
    listing = ", ".join(f"{alias}.c{i} AS c{i}" for i in range(len(cols)))
    relation = f"SELECT {listing} FROM ({values.sql}) AS {alias} WHERE {condition}"
    return TupleFilter(tuple(cols), relation, c.aliases)


def _filter_columns(c: Compiler, node: Node, walk) -> list[Col]:  # type: ignore[no-untyped-def]
    found: dict[tuple[str, str], Col] = {}
    for n in walk(node):
        if isinstance(n, ColumnRef) and n.table.lower() in c.model.tables:
            table = c.model.table(n.table)
            if table.column(n.column) is not None:
                col = Col(table.name, c.model.column(n.table, n.column).name)
                found.setdefault(col.key, col)
    if not found:
        raise QueryError(
            "wrong_arguments", "A CALCULATE filter must name a column ('Table'[Column] = …) or be a table."
        )
    return list(found.values())


def _all_values(c: Compiler, cols: list[Col]) -> Rel:
    from loom.engines.dax.relations import RelColumn

    scope = c.scope(cols[0].table)
    listing = ", ".join(f"{scope.column(col)} AS c{i}" for i, col in enumerate(cols))
    columns = [
        RelColumn(
            f"{col.table}[{col.name}]", f"c{i}", v.kind_of(c.model.column(col.table, col.name).data_type), col
        )
        for i, col in enumerate(cols)
    ]
    return Rel(f"SELECT DISTINCT {listing} FROM {scope.from_clause()}", columns)


@dataclass
class _ValueRow:
    """The one column a boolean filter tests, bound to the value being tested."""

    col: Col
    value: Expr

    def column(self, col: Col) -> Expr | None:
        return self.value if col.key == self.col.key else None

    def named(self, name: str) -> Expr | None:
        return self.value if name.lower() == self.col.name.lower() else None

    def transition(self) -> list[Filter]:
        return [ColumnPredicate(self.col, equal_to(self.value.sql))]


def _column(c: Compiler, node: Node, function: str) -> Col:
    from loom.engines.dax.aggregations import column_arg

    return column_arg(c, node, function)


def _table_name(c: Compiler, node: Node, function: str) -> str:
    if isinstance(node, Name) and node.name.lower() in c.model.tables:
        return c.model.table(node.name).name
    raise QueryError("type_mismatch", f"{function} takes a model table or its columns.")


__all__ = ["Context", "apply_filters", "calculate", "calculated_env", "calculatetable"]
