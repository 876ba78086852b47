"""Rows in SQL: a model table read under an alias, with the tables it looks up joined as needed.

A filter or an expression that reads `Product[Color]` while iterating `Sales` needs Product's row
for each Sales row; `TableScope` adds the LEFT JOINs along the relationship path when a column of
another table is first asked for (a left join: a sale whose product is missing sees Product's
blank row, as in DAX). Aliases are unique per query (`Aliases`), so scopes nest as correlated
subqueries without clashing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from loom.engines.contracts import QueryError
from loom.engines.dax.model import ModelColumn, ModelTable, Relationship, SemanticModel


@dataclass(frozen=True)
class Col:
    """A model column by its canonical names (lineage: where a value comes from)."""

    table: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.table.lower(), self.name.lower())

    def dax(self) -> str:
        return f"'{self.table}'[{self.name}]"


# How each model type is held in SQL.
SQL_TYPES = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "double": "DOUBLE",
    "decimal": "DOUBLE",
    "boolean": "BOOLEAN",
    "dateTime": "TIMESTAMP",
}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Aliases:
    def __init__(self) -> None:
        self._n = itertools.count()

    def new(self, hint: str = "t") -> str:
        return f"{hint}{next(self._n)}"


@dataclass
class Sources:
    """Where each model table's rows are, as SQL (a subquery naming and typing its columns as the
    model does), and why a table has none."""

    tables: dict[str, str]  # model table (lower) → SQL relation
    missing: dict[str, str] = field(default_factory=dict)  # model table (lower) → why it has no rows
    # Tables with a blank row: some row of a table that looks them up has a key they do not have
    # (or none), so VALUES and ALL show a BLANK member and those rows are grouped under it.
    blank_rows: frozenset[str] = frozenset()
    # Columns that hold BLANK somewhere (or whose table has a blank row); None: not known, any may.
    blanks: frozenset[tuple[str, str]] | None = None

    def may_be_blank(self, table: str, column: str) -> bool:
        if self.blanks is None or table.lower() in self.blank_rows:
            return True
        return (table.lower(), column.lower()) in self.blanks

    def blank_row(self, table: ModelTable) -> str:
        """The table's blank row, as a relation of one row of NULLs typed as its columns."""
        listing = ", ".join(
            f"CAST(NULL AS {SQL_TYPES[c.data_type]}) AS {quote(c.name)}" for c in table.columns.values()
        )
        return f"(SELECT {listing})"

    def relation(self, table: ModelTable) -> str:
        found = self.tables.get(table.name.lower())
        if found is None:
            why = self.missing.get(table.name.lower(), "its rows were not found")
            raise QueryError("table_unavailable", f"The table '{table.name}' cannot be read here: {why}.")
        return found


def column_sql(alias: str, column: ModelColumn) -> str:
    return f"{alias}.{quote(column.name)}"


@dataclass
class TableScope:
    """One model table's row under `alias`, and the lookups joined to it so far."""

    model: SemanticModel
    sources: Sources
    aliases: Aliases
    table: ModelTable
    alias: str
    joins: dict[str, tuple[str, Relationship]] = field(default_factory=dict)  # table (lower) → alias, via
    relation: str | None = None  # instead of the table's rows (its blank row)
    _from: dict[str, str] = field(default_factory=dict)  # joined table → the alias it hangs from

    def column(self, col: Col) -> str | None:
        """The SQL for `col` as seen from this row, joining the tables on the way; None when the
        table is not one this row looks up."""
        owner = col.table.lower()
        if owner == self.table.name.lower():
            return column_sql(self.alias, self.model.column(col.table, col.name))
        path = self.model.expanded(self.table.name).get(owner)
        if path is None:
            return None
        alias = self.alias
        for r in path:
            alias = self._joined(alias, r)
        return column_sql(alias, self.model.column(col.table, col.name))

    def reaches(self, table: str) -> bool:
        return table.lower() in self.model.expanded(self.table.name)

    def _joined(self, from_alias: str, r: Relationship) -> str:
        key = r.to_table.lower()
        found = self.joins.get(key)
        if found is None:
            found = (self.aliases.new("j"), r)
            self.joins[key] = found
            self._from[key] = from_alias
        return found[0]

    def from_clause(self) -> str:
        """`FROM <table> alias LEFT JOIN …` for the lookups asked for so far."""
        parts = [f"{self.relation or self.sources.relation(self.table)} AS {self.alias}"]
        for key, (alias, r) in self.joins.items():
            target = self.model.table(r.to_table)
            parent = self._from[key]
            on = (
                f"{alias}.{quote(self.model.column(r.to_table, r.to_column).name)} = "
                f"{parent}.{quote(self.model.column(r.from_table, r.from_column).name)}"
            )
            parts.append(f"LEFT JOIN {self.sources.relation(target)} AS {alias} ON {on}")
        return " ".join(parts)
