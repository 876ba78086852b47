"""A semantic model as the DAX engine reads it: tables, columns, measures, relationships.

Names are compared without regard to case, as DAX compares them. Filters travel along active
relationships from the "one" side to the "many" side (and back when the cross-filter direction is
both); a table's *expanded* table is itself and every table it reaches going to "one" sides, which
is what a filter on the table as a whole restricts (see `expanded`). The model is checked when it
is built (`check`): a relationship between unknown columns, two active paths between the same
tables, a measure that refers to itself are model errors, reported before any query runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from loom.engines.contracts import Problem, QueryError

DataType = Literal["int64", "double", "decimal", "string", "boolean", "dateTime"]


class ModelError(Exception):
    """The model itself is wrong (not a query): reported when it is loaded."""


@dataclass
class ModelColumn:
    name: str
    data_type: DataType = "string"
    source: str = ""  # the column in the data the table is read from (default: the name)
    hidden: bool = False
    description: str = ""
    sort_by: str | None = None
    expression: str | None = None  # a calculated column's DAX, computed when the model loads
    format_string: str = ""

    @property
    def source_name(self) -> str:
        return self.source or self.name


@dataclass
class Measure:
    name: str
    table: str
    expression: str
    description: str = ""
    format_string: str = ""
    hidden: bool = False


@dataclass(frozen=True)
class Relationship:
    """`from_table[from_column]` (the "many" side) → `to_table[to_column]` (the "one" side)."""

    from_table: str
    from_column: str
    to_table: str
    to_column: str
    active: bool = True
    both_directions: bool = False
    one_to_one: bool = False

    def describe(self) -> str:
        return f"'{self.from_table}'[{self.from_column}] → '{self.to_table}'[{self.to_column}]"


@dataclass
class ModelTable:
    name: str
    columns: dict[str, ModelColumn] = field(default_factory=dict)  # lower-case name → column
    description: str = ""
    hidden: bool = False
    data: str = ""  # where its rows come from: a file beside the model, or `schema.table` of a lakehouse
    is_date_table: bool = False

    def column(self, name: str) -> ModelColumn | None:
        return self.columns.get(name.lower())

    def add(self, column: ModelColumn) -> None:
        self.columns[column.name.lower()] = column


@dataclass
class SemanticModel:
    name: str
    tables: dict[str, ModelTable] = field(default_factory=dict)  # lower-case name → table
    measures: dict[str, Measure] = field(default_factory=dict)  # lower-case name → measure
    relationships: list[Relationship] = field(default_factory=list)
    description: str = ""

    # --- lookups ---------------------------------------------------------------------------------

    def table(self, name: str) -> ModelTable:
        found = self.tables.get(name.lower())
        if found is None:
            raise unknown("table", f"'{name}'", name, [t.name for t in self.tables.values()])
        return found

    def column(self, table: str, name: str) -> ModelColumn:
        owner = self.table(table)
        found = owner.column(name)
        if found is None:
            elsewhere = [t.name for t in self.tables.values() if t.column(name) is not None]
            hint = f" [{name}] is a column of {', '.join(repr(t) for t in elsewhere)}." if elsewhere else ""
            if self.measure(name) is not None:
                hint = f" [{name}] is a measure: write [{name}] alone (a measure is not summed or iterated)."
            raise unknown(
                "column",
                f"'{owner.name}'[{name}]",
                name,
                [c.name for c in owner.columns.values()],
                hint,
            )
        return found

    def measure(self, name: str) -> Measure | None:
        return self.measures.get(name.lower())

    def add_table(self, table: ModelTable) -> None:
        self.tables[table.name.lower()] = table

    def add_measure(self, measure: Measure) -> None:
        self.measures[measure.name.lower()] = measure

    # --- relationships ---------------------------------------------------------------------------

    def active(self) -> Iterator[Relationship]:
        return (r for r in self.relationships if r.active)

    def to_one(self, table: str) -> list[Relationship]:
        """Active relationships from `table` to the tables it looks up (its "one" sides)."""
        key = table.lower()
        return [r for r in self.active() if r.from_table.lower() == key]

    def expanded(self, table: str) -> dict[str, list[Relationship]]:
        """Every table `table` reaches through "one" sides, with the path to it (itself: []).
        The model check makes each path unique."""
        paths: dict[str, list[Relationship]] = {table.lower(): []}
        frontier = [table.lower()]
        while frontier:
            here = frontier.pop(0)
            for r in self.to_one(here):
                there = r.to_table.lower()
                if there not in paths:
                    paths[there] = [*paths[here], r]
                    frontier.append(there)
        return paths

    def key_of(self, table: str) -> str | None:
        """A column known to be unique in `table`: the "one" side of a relationship."""
        key = table.lower()
        for r in self.relationships:
            if r.to_table.lower() == key:
                return r.to_column
        return None


def unknown(kind: str, shown: str, name: str, known: list[str], hint: str = "") -> QueryError:
    """An unknown table, column or measure, with the closest known names for the repair loop."""
    lowered = {k.lower(): k for k in known}
    close = [lowered[k] for k in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)]
    did_you_mean = f" Did you mean {' or '.join(close)}?" if close else ""
    listing = ", ".join(sorted(known)[:30]) or "none"
    message = f"Unknown {kind} {shown}.{did_you_mean}{hint} Known: {listing}."
    code = f"unknown_{kind}"
    return QueryError(code, message, [Problem(code=code, message=message, suggestions=close)])


def check(model: SemanticModel) -> None:
    """Model errors, found when the model loads: ModelError naming the first."""
    for r in model.relationships:
        for table, column in ((r.from_table, r.from_column), (r.to_table, r.to_column)):
            if table.lower() not in model.tables or model.tables[table.lower()].column(column) is None:
                raise ModelError(f"the relationship {r.describe()} names a column the model does not have")
    for name in model.tables:
        _unique_paths(model, name)
    _no_cycles(model)


def _unique_paths(model: SemanticModel, table: str) -> None:
    """Two active paths from one table to another make filters ambiguous: Power BI refuses such a
    model, and so does this check."""
    reached: dict[str, str] = {}

    def walk(here: str, path: str, seen: frozenset[str]) -> None:
        for r in model.to_one(here):
            there = r.to_table.lower()
            if there in seen:
                raise ModelError(f"the active relationships form a cycle through '{r.to_table}'")
            route = f"{path} → '{r.to_table}'"
            if there in reached and reached[there] != route:
                raise ModelError(
                    f"two active paths lead from '{model.tables[table].name}' to '{r.to_table}' "
                    f"({reached[there]} and {route}): make one of the relationships inactive"
                )
            reached[there] = route
            walk(there, route, seen | {there})

    walk(table, f"'{model.tables[table].name}'", frozenset({table}))


def _no_cycles(model: SemanticModel) -> None:
    """A measure that refers to itself, directly or through others, has no value."""
    from loom.engines.dax.references import measure_references

    graph = {k: measure_references(m.expression, model) for k, m in model.measures.items()}
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            loop = " → ".join(f"[{model.measures[n].name}]" for n in [*chain[chain.index(name) :], name])
            raise ModelError(f"the measure [{model.measures[name].name}] refers to itself: {loop}")
        state[name] = 1
        for used in graph.get(name, ()):
            if used in graph:
                visit(used, [*chain, name])
        state[name] = 2

    for name in graph:
        visit(name, [])
