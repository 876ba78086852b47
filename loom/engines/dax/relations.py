"""What the compiler builds: tables (`Rel`) and the rows iterated over them (`TableRow`, `RelRow`).

A `Rel` is a SQL SELECT whose columns are named c0, c1, …, each with its DAX name and, when it
comes straight from a model column, its lineage (what a filter with this table filters). A `Rel`
that is some rows of one model table keeps that table (`base`) and the condition on its rows, so it
can be iterated with lookups (RELATED) and used as a filter on the expanded table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from loom.engines.dax.filters import ColumnPredicate, Filter, RowsFilter, equal_to
from loom.engines.dax.model import ModelTable, SemanticModel
from loom.engines.dax.scope import Aliases, Col, Sources, TableScope
from loom.engines.dax.values import Expr, kind_of


@dataclass(frozen=True)
class RelColumn:
    name: str  # as DAX names it: `Table[Column]` for a model column, else the name given
    sql: str  # its name in the relation: c0, c1, …
    kind: str
    lineage: Col | None = None
    given: bool = False  # a name the query gave it (ADDCOLUMNS, SELECTCOLUMNS, ROW…), shown as `[name]`

    def answers(self, name: str) -> bool:
        """Whether `[name]` refers to this column."""
        wanted = name.lower()
        if self.given:
            return self.name.lower() == wanted
        return self.name.lower() == wanted or (
            self.lineage is not None and self.lineage.name.lower() == wanted
        )


@dataclass
class Rel:
    sql: str
    columns: list[RelColumn]
    base: ModelTable | None = None
    condition: Callable[[TableScope], str] | None = field(default=None, repr=False)
    # For a table of one model column's values chosen by a test of the value itself (time
    # intelligence: the dates from the year's start to the last visible one): the test, so that as a
    # filter it is a predicate on the column, not a lookup in the table (54x faster for a YTD by month).
    predicate: Callable[[str], str] | None = field(default=None, repr=False)

    def column(self, col: Col) -> RelColumn | None:
        return next((c for c in self.columns if c.lineage is not None and c.lineage.key == col.key), None)


class Row(Protocol):
    """A row context: the current row of a table being iterated."""

    def column(self, col: Col) -> Expr | None: ...

    def named(self, name: str) -> Expr | None: ...

    def transition(self) -> list[Filter]: ...


@dataclass
class TableRow:
    """The current row of a model table, read through a scope (so RELATED can join lookups)."""

    scope: TableScope
    model: SemanticModel
    sources: Sources
    aliases: Aliases
    lookups: bool = False  # inside RELATED: columns of looked-up tables may be read

    def column(self, col: Col) -> Expr | None:
        own = col.table.lower() == self.scope.table.name.lower()
        if not own and not self.lookups:
            return None
        sql = self.scope.column(col)
        if sql is None:
            return None
        return Expr(sql, kind_of(self.model.column(col.table, col.name).data_type))

    def named(self, name: str) -> Expr | None:
        column = self.scope.table.column(name)
        return None if column is None else self.column(Col(self.scope.table.name, column.name))

    def transition(self) -> list[Filter]:
        """The row as a filter on the table's own columns: by its key when the table has one (the
        key picks the row), else by every column."""
        table = self.scope.table
        key = self.model.key_of(table.name)
        names = [key] if key is not None else [c.name for c in table.columns.values()]
        outer = {n: self.scope.column(Col(table.name, n)) for n in names}

        def same_row(scope: TableScope) -> str:
            return " AND ".join(
                f"{scope.column(Col(table.name, n))} IS NOT DISTINCT FROM {outer[n]}" for n in names
            )

        return [RowsFilter(table.name, same_row, self.model, self.sources, self.aliases, own_only=True)]


@dataclass
class RelRow:
    """The current row of a query table, under `alias`."""

    rel: Rel
    alias: str
    sources: Sources | None = None  # which columns may be BLANK (None: any)

    def column(self, col: Col) -> Expr | None:
        found = self.rel.column(col)
        return None if found is None else Expr(f"{self.alias}.{found.sql}", found.kind)

    def named(self, name: str) -> Expr | None:
        found = next((c for c in self.rel.columns if c.answers(name)), None)
        return None if found is None else Expr(f"{self.alias}.{found.sql}", found.kind)

    def transition(self) -> list[Filter]:
        filters: list[Filter] = []
        for c in self.rel.columns:
            if c.lineage is not None:
                blank = self.sources is None or self.sources.may_be_blank(c.lineage.table, c.lineage.name)
                filters.append(ColumnPredicate(c.lineage, equal_to(f"{self.alias}.{c.sql}", blank)))
        return filters
