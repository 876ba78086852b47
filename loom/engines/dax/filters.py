"""The filter context: what restricts the model's rows, and how a filter reaches a table.

Three kinds of filter, each knowing the model columns it filters (what a later filter on the same
columns overwrites, what ALL removes) and how to restrict a table's row in SQL:

- `ColumnPredicate`: one column's values, by a predicate (`Product[Color] = "Red"`, the group a
  SUMMARIZECOLUMNS row stands for, FILTER(ALL(Date[Date]), …)).
- `TupleFilter`: a table of values for some columns (TREATAS, FILTER over VALUES, what is left of a
  filter when some of its columns are overwritten).
- `RowsFilter`: some rows of a model table, and so of its *expanded* table (the table and every
  table it looks up): `FILTER(Sales, …)` as a CALCULATE argument, and context transition.

A filter reaches a table when the table looks up (directly or through others) a table the filter
filters: filters flow from the "one" side of a relationship to the "many" side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from loom.engines.dax.model import SemanticModel
from loom.engines.dax.scope import Aliases, Col, Sources, TableScope, quote

Key = tuple[str, str]


class Filter(Protocol):
    def columns(self, model: SemanticModel) -> frozenset[Key]: ...

    def restrict(self, scope: TableScope) -> str | None:
        """A SQL predicate on the scope's row, or None when the filter does not reach its table."""
        ...

    def without(self, removed: frozenset[Key], model: SemanticModel) -> Filter | None:
        """What is left once `removed` columns are no longer filtered (None: nothing)."""
        ...


@dataclass(frozen=True)
class ColumnPredicate:
    col: Col
    predicate: Callable[[str], str]  # the column's SQL → a predicate
    # A test of each date against a range that depends on other rows (time intelligence): an
    # aggregation under it adds its rows up per date first (`aggregations.by_date`).
    ranged: bool = False

    def columns(self, model: SemanticModel) -> frozenset[Key]:
        return frozenset({self.col.key})

    def restrict(self, scope: TableScope) -> str | None:
        sql = scope.column(self.col)
        return None if sql is None else self.predicate(sql)

    def without(self, removed: frozenset[Key], model: SemanticModel) -> Filter | None:
        return None if self.col.key in removed else self


@dataclass(frozen=True)
class TupleFilter:
    """Rows whose values for `cols` are among those of `relation` (columns c0, c1, … in order)."""

    cols: tuple[Col, ...]
    relation: str
    aliases: Aliases = field(compare=False)

    def columns(self, model: SemanticModel) -> frozenset[Key]:
        return frozenset(c.key for c in self.cols)

    def restrict(self, scope: TableScope) -> str | None:
        reached = [(i, sql) for i, c in enumerate(self.cols) if (sql := scope.column(c)) is not None]
        if not reached:
            return None
        f = self.aliases.new("f")
        match = " AND ".join(f"{f}.c{i} IS NOT DISTINCT FROM {sql}" for i, sql in reached)
        return f"EXISTS (SELECT 1 FROM ({self.relation}) AS {f} WHERE {match})"

    def without(self, removed: frozenset[Key], model: SemanticModel) -> Filter | None:
        kept = [(i, c) for i, c in enumerate(self.cols) if c.key not in removed]
        if len(kept) == len(self.cols):
            return self
        if not kept:
            return None
        f = self.aliases.new("f")
        listing = ", ".join(f"{f}.c{i} AS c{k}" for k, (i, _) in enumerate(kept))
        relation = f"SELECT DISTINCT {listing} FROM ({self.relation}) AS {f}"
        return TupleFilter(tuple(c for _, c in kept), relation, self.aliases)


@dataclass(frozen=True)
class RowsFilter:
    """Rows of model table `table` that meet `condition` (rendered on a scope over the table), as
    a filter on the expanded table. `own_only`: filter the table's own columns only (context
    transition), not the tables it looks up. `excluded`: columns overwritten since."""

    table: str
    condition: Callable[[TableScope], str]
    model: SemanticModel = field(compare=False)
    sources: Sources = field(compare=False)
    aliases: Aliases = field(compare=False)
    own_only: bool = False
    excluded: frozenset[Key] = frozenset()

    def columns(self, model: SemanticModel) -> frozenset[Key]:
        tables = [self.table.lower()] if self.own_only else list(model.expanded(self.table))
        every = {(t, c) for t in tables for c in model.tables[t].columns}
        return frozenset(every - self.excluded)

    def restrict(self, scope: TableScope) -> str | None:
        shared = self._shared(scope)
        if not shared:
            return None
        key = self.model.key_of(self.table)
        if scope.table.name.lower() == self.table.lower() and (
            not self.excluded or (key is not None and (self.table.lower(), key.lower()) not in self.excluded)
        ):
            return self.condition(scope)  # the row itself: no need to look for a matching one
        inner = TableScope(
            self.model, self.sources, self.aliases, self.model.table(self.table), self.aliases.new("r")
        )
        matches = [
            f"{inner_sql} IS NOT DISTINCT FROM {outer_sql}"
            for col in self._matching(shared)
            if (inner_sql := inner.column(col)) is not None and (outer_sql := scope.column(col)) is not None
        ]
        condition = self.condition(inner)
        where = " AND ".join([condition, *matches])
        return f"EXISTS (SELECT 1 FROM {inner.from_clause()} WHERE {where})"

    def without(self, removed: frozenset[Key], model: SemanticModel) -> Filter | None:
        if not (removed & self.columns(model)):
            return self
        left = RowsFilter(
            self.table,
            self.condition,
            self.model,
            self.sources,
            self.aliases,
            self.own_only,
            self.excluded | removed,
        )
        return left if left.columns(model) else None

    def _shared(self, scope: TableScope) -> list[str]:
        mine = [self.table.lower()] if self.own_only else list(self.model.expanded(self.table))
        theirs = self.model.expanded(scope.table.name)
        return [t for t in mine if t in theirs]

    def _matching(self, shared: list[str]) -> list[Col]:
        """Columns to match a row of the filter's table to the scope's row on: each shared table's
        key, or all its columns still filtered when it has none (or the key was overwritten)."""
        cols: list[Col] = []
        for t in shared:
            table = self.model.tables[t]
            key = self.model.key_of(table.name)
            if key is not None and (t, key.lower()) not in self.excluded:
                cols.append(Col(table.name, self.model.column(table.name, key).name))
            else:
                cols.extend(
                    Col(table.name, c.name) for k, c in table.columns.items() if (t, k) not in self.excluded
                )
        return cols


@dataclass(frozen=True)
class Context:
    """The filters in effect: a calculation sees the model's rows that all of them let through."""

    filters: tuple[Filter, ...] = ()

    def restrict(self, scope: TableScope, crossed: frozenset[int] = frozenset()) -> list[str]:
        reached = [(f, f.restrict(scope)) for f in self.filters]
        found = [p for _, p in reached if p is not None]
        if any(p is None for _, p in reached):
            found += self._cross_filters(scope, crossed)
        return found

    def _cross_filters(self, scope: TableScope, crossed: frozenset[int]) -> list[str]:
        """A relationship that filters both ways also filters its "one" side by the "many" side's
        rows: the scope's row (or the row it looks up) must have a row of the many side that the
        filters let through, when some filter reaches that side and not the scope."""
        model, found = scope.model, []
        mine = model.expanded(scope.table.name)
        for i, r in enumerate(model.relationships):
            if not (r.active and r.both_directions) or i in crossed:
                continue
            if r.to_table.lower() not in mine or r.from_table.lower() in mine:
                continue
            side = model.table(r.from_table)
            many = TableScope(model, scope.sources, scope.aliases, side, scope.aliases.new("x"))
            if all(f.restrict(many) is None or f.restrict(scope) is not None for f in self.filters):
                continue  # nothing filters the many side that does not filter the scope already
            predicates = self.restrict(many, crossed | {i})
            key = scope.column(Col(r.to_table, r.to_column))
            via = many.column(Col(r.from_table, r.from_column))
            found.append(f"{key} IN (SELECT {via} FROM {many.from_clause()}{where(predicates)})")
        return found

    def apply(self, new: Filter, model: SemanticModel, keep: bool = False) -> Context:
        """CALCULATE's rule: a filter replaces those on the same columns; with KEEPFILTERS it is
        added beside them (both must hold)."""
        base = self if keep else self.remove(new.columns(model), model)
        return Context((*base.filters, new))

    def remove(self, cols: frozenset[Key], model: SemanticModel) -> Context:
        kept = [f2 for f in self.filters if (f2 := f.without(cols, model)) is not None]
        return Context(tuple(kept))


def equal_to(value: str, blank: bool = True) -> Callable[[str], str]:
    """A column predicate: the column holds `value`. `blank`: the column may be BLANK, and BLANK
    must match BLANK; without it, a plain `=`, which DuckDB decorrelates four times faster (a
    grouped measure over 2 M rows: 37.7 → 9.6 ms)."""
    if not blank:
        return lambda sql: f"{sql} = {value}"
    return lambda sql: f"{sql} IS NOT DISTINCT FROM {value}"


def where(predicates: list[str]) -> str:
    return f" WHERE {' AND '.join(predicates)}" if predicates else ""


__all__ = ["ColumnPredicate", "Context", "Filter", "RowsFilter", "TupleFilter", "equal_to", "quote", "where"]
