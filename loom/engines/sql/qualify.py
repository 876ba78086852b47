"""Catalog checks: unknown tables and unknown columns, with the closest existing names.

The problems go back to the model in the repair loop, so each one names what does exist.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from loom.engines.contracts import Catalog, Problem, TableInfo, UnavailableTable
from loom.engines.sql.access import looks_like_path, unique
from loom.engines.sql.rules import DialectRules

METADATA_SCHEMAS = frozenset({"information_schema", "pg_catalog"})

# --- catalog: unknown tables ----------------------------------------------------------------------


@dataclass
class CatalogNames:
    """The catalog's tables by lower-case name, as a dialect's table references resolve to them."""

    catalog: Catalog
    rules: DialectRules
    tables: dict[str, TableInfo] = field(init=False)
    names: dict[str, str] = field(init=False)  # lower-case key → the catalog's spelling
    unavailable: dict[str, UnavailableTable] = field(init=False)  # in the source, but not loaded
    has_columns: bool = field(init=False)

    def __post_init__(self) -> None:
        self.tables = {t.name.lower(): t for t in self.catalog.tables}
        self.names = {key: t.name for key, t in self.tables.items()}
        left_out = ((u.name.lower(), u) for u in self.catalog.unavailable)
        self.unavailable = {key: u for key, u in left_out if key not in self.tables}
        self.has_columns = any(t.columns for t in self.catalog.tables)

    def ref(self, table: exp.Table) -> str | None:
        """The catalog name a table reference means (`gold.fact_sales`, or `orders` for main.orders);
        None for what is not a catalog table (functions, paths, metadata schemas)."""
        if not isinstance(table.this, exp.Identifier) or not table.name or looks_like_path(table):
            return None
        schema = table.db.lower()
        if schema in METADATA_SCHEMAS:
            return None
        name = table.name.lower()
        if schema in ("", *self.rules.default_schemas):
            return name
        full = f"{table.catalog.lower()}.{schema}.{name}"
        return full if table.catalog and full in self.tables else f"{schema}.{name}"

    def table(self, table: exp.Table) -> TableInfo | None:
        ref = self.ref(table)
        return None if ref is None else self.tables.get(ref)

    def owners(self, column: str) -> list[str]:
        """The tables that have a column of this name (any case), in catalog order."""
        wanted = column.lower()
        return [t.name for t in self.catalog.tables if any(c.name.lower() == wanted for c in t.columns)]


def unknown_tables(
    expr: exp.Expr,
    resolve: Callable[[exp.Table], str | None],
    known: Mapping[str, str],
    unavailable: Mapping[str, UnavailableTable] | None = None,
) -> Iterator[Problem]:
    """Tables the query names that the catalog lacks, each with the closest existing names.

    `resolve` turns a table reference into the key the catalog is indexed by (None for what is no
    catalog table); `known` maps those keys to the names shown to the model. The embedded engine
    keys by `schema.table`, the cloud engines by three-part names with their defaults filled in.
    Only a reference that reads a CTE is exempt: a CTE's name elsewhere means the real table.
    A table the source has but could not load (`unavailable`, by key) is named as such.
    """
    ctes = cte_references(expr)
    reported: set[str] = set()
    for table in expr.find_all(exp.Table):
        key = resolve(table)
        if key is None or key in known or key in reported or id(table) in ctes:
            continue
        reported.add(key)
        missing = (unavailable or {}).get(key)
        yield unknown_table_problem(key, known) if missing is None else unavailable_problem(missing, known)


def cte_references(expr: exp.Expr) -> set[int]:
    """The ids of the table references that read a CTE, as the engines resolve names.

    A name is a CTE only where that CTE is visible: in the query that owns the WITH and its
    subqueries, and in the CTEs defined after it. Elsewhere the same name is the real table (or a
    system view) of that name: `WITH t AS (SELECT * FROM t)` reads the real `t`, and so does a
    reference beside a subquery whose WITH defines `t`. sqlglot's scopes encode exactly that
    visibility, but for one case (`_reads_itself`). A tree sqlglot cannot scope exempts nothing:
    every reference is then checked against the catalog.
    """
    named = {cte.alias_or_name.lower() for cte in expr.find_all(exp.CTE)}
    if not any(t.name.lower() in named for t in expr.find_all(exp.Table)):
        return set()  # no reference could read a CTE: skip scoping (most queries)
    try:
        scopes = traverse_scope(expr)
    except (SqlglotError, RecursionError):
        return set()
    return {id(table) for scope in scopes for table in scope.tables if _reads_cte(table, scope)}


def _reads_cte(table: exp.Table, scope: Scope) -> bool:
    if table.db or not isinstance(table.this, exp.Identifier):
        return False
    # The engines match names case-insensitively; sqlglot's scope keys are as written.
    visible = {name.lower(): source for name, source in scope.cte_sources.items()}
    source = visible.get(table.name.lower())
    if not isinstance(source, Scope):
        return False
    cte = source.expression.find_ancestor(exp.CTE)
    if cte is None:
        return False
    return not _reads_itself(table, cte) or _in_recursive_term(table, cte)


def _reads_itself(table: exp.Table, cte: exp.CTE) -> bool:
    return any(ancestor is cte for ancestor in _ancestors(table))


def _in_recursive_term(table: exp.Table, cte: exp.CTE) -> bool:
    """sqlglot lets a recursive CTE see itself in its whole body; DuckDB (and the standard) only in
    the recursive term, the last operand of the body's UNION. In the anchor the name is the real
    table: `WITH RECURSIVE t AS (SELECT * FROM t UNION ALL SELECT 1) …` reads table `t`."""
    body = cte.this.unnest()
    if not isinstance(body, exp.SetOperation):
        return False
    term = body.expression
    return any(ancestor is term for ancestor in _ancestors(table))


def _ancestors(node: exp.Expr) -> Iterator[exp.Expr]:
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def unknown_table_problem(key: str, known: Mapping[str, str]) -> Problem:
    short = key.rsplit(".", 1)[-1]
    same_name = [name for k, name in known.items() if k.rsplit(".", 1)[-1] == short]
    close = [known[k] for k in difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)]
    suggestions = list(dict.fromkeys(same_name + close))[:3]
    hint = f" Did you mean {' or '.join(suggestions)}?" if suggestions else ""
    listing = ", ".join(sorted(known.values())[:30]) or "none"
    shown = known.get(key, key)
    return Problem(
        code="unknown_table",
        message=f"Unknown table {shown}.{hint} Known tables: {listing}.",
        suggestions=suggestions,
    )


def unavailable_problem(table: UnavailableTable, known: Mapping[str, str]) -> Problem:
    listing = ", ".join(sorted(known.values())[:30]) or "none"
    return Problem(
        code="table_unavailable",
        message=f"The table {table.name} is in the source but could not be loaded, so it cannot be "
        f"queried ({table.reason}). Tables that can be queried: {listing}.",
    )


# --- catalog: unknown columns ---------------------------------------------------------------------
#
# Columns are resolved through sqlglot's scopes (aliases, CTEs, derived tables, correlated
# subqueries), never by matching text. Whenever a name could mean something the catalog does not
# describe — a select alias, a struct field, a table function's or a pivot's output, a CTE with
# `SELECT *` — nothing is reported: the engine's own binder error is the fallback, and a false
# "unknown column" would send the model to repair a correct query.


@dataclass(frozen=True)
class _Source:
    """A FROM item as a column owner: its display name and columns (None when they are unknown)."""

    name: str
    columns: frozenset[str] | None


def unknown_columns(expr: exp.Expr, names: CatalogNames, rules: DialectRules) -> Iterator[Problem]:
    try:
        scopes = traverse_scope(expr)
    except (SqlglotError, RecursionError):
        return  # a tree sqlglot cannot scope: leave it to the engine
    resolver = _ColumnResolver(names, rules)
    problems = (
        resolver.problem(column, scope)
        for scope in scopes
        if isinstance(scope.expression, exp.Select)  # a set operation's ORDER BY names its output
        for column in _own_columns(scope)
    )
    try:
        yield from unique(p for p in problems if p is not None)
    except OptimizeError as e:  # raised as the sources are read, e.g. one table joined twice unaliased
        yield Problem(
            code="ambiguous_source",
            message=f"{e}: a table or alias appears twice in one FROM. Give each occurrence an alias "
            "of its own (`FROM t AS a JOIN t AS b ON …`) and qualify the columns with them.",
        )


def _own_columns(scope: Scope) -> list[exp.Column]:
    own = scope.column_index
    return [
        c for c in scope.columns if id(c) in own and not c.args.get("db") and not c.find_ancestor(exp.Lambda)
    ]


class _ColumnResolver:
    """Decides, for one column reference, whether the catalog proves it does not exist."""

    def __init__(self, names: CatalogNames, rules: DialectRules) -> None:
        self.names = names
        self.rules = rules
        self._sources: dict[int, dict[str, _Source]] = {}

    def problem(self, column: exp.Column, scope: Scope) -> Problem | None:
        name = column.name.lower()
        if name in self.rules.pseudo_columns:
            return None
        chain = _visible_scopes(scope)
        if column.table:
            source = self._qualified(column.table.lower(), chain)
            if source is None or source.columns is None or name in source.columns:
                return None
            here = self._readers(name, chain)
            return _unknown_column_problem(column.name, [source], self.names.owners(name), here)
        if self._is_alias_or_string(column, scope, chain):
            return None
        sources = [s for sc in chain for s in self.sources(sc).values()]
        if not sources or any(s.columns is None or name in s.columns for s in sources):
            return None
        return _unknown_column_problem(column.name, sources, self.names.owners(name))

    def _readers(self, name: str, chain: Sequence[Scope]) -> list[tuple[str, str]]:
        """(alias, table) of the FROM items in reach that have the column: a small model that
        joined the right table often takes the column through the wrong alias (`T2.grade`)."""
        found = []
        for scope in chain:
            described = self.sources(scope)
            for alias in scope.selected_sources:
                source = described.get(alias.lower())
                if source is not None and source.columns is not None and name in source.columns:
                    found.append((alias, source.name))
        return found

    def _qualified(self, alias: str, chain: Sequence[Scope]) -> _Source | None:
        for scope in chain:
            source = self.sources(scope).get(alias)
            if source is not None:
                return source
        return None  # not a FROM item: a struct column's field (`address.city`), say

    def _is_alias_or_string(self, column: exp.Column, scope: Scope, chain: Sequence[Scope]) -> bool:
        name = column.name.lower()
        if _names_an_alias(column, scope.expression):
            return True  # a select alias, usable in WHERE/GROUP BY/QUALIFY in DuckDB
        if any(name in self.sources(sc) for sc in chain):
            return True  # DuckDB reads a bare table name as the whole row
        quoted = isinstance(column.this, exp.Identifier) and bool(column.this.quoted)
        return self.rules.double_quoted_strings and quoted

    def sources(self, scope: Scope) -> dict[str, _Source]:
        cached = self._sources.get(id(scope))
        if cached is None:
            cached = {
                alias.lower(): self._describe(alias, node, source)
                for alias, (node, source) in scope.selected_sources.items()
            }
            for alias in scope.sources:  # LATERAL VIEW and other items outside the FROM list
                cached.setdefault(alias.lower(), _Source(alias, None))
            self._sources[id(scope)] = cached
        return cached

    def _describe(self, alias: str, node: exp.Expr, source: exp.Expr | Scope) -> _Source:
        renamed = _alias_columns(node)
        if renamed is not None:
            return _Source(alias, renamed)
        if isinstance(source, exp.Table):
            return self._table(source)
        if isinstance(source, Scope):
            return _Source(alias, _scope_columns(source))
        return _Source(alias, None)

    def _table(self, table: exp.Table) -> _Source:
        info = self.names.table(table)
        if info is None or not info.columns or table.args.get("pivots"):
            return _Source(table.alias_or_name, None)
        return _Source(info.name, frozenset(c.name.lower() for c in info.columns))


def _names_an_alias(column: exp.Column, query: exp.Expr) -> bool:
    """Whether the column names another select item's alias (`SELECT a AS x, x + 1`); an alias
    cannot name itself, so the column inside `revenue AS revenue` still means a table column."""
    name = column.name.lower()
    for item in query.expressions if isinstance(query, exp.Select) else ():
        if isinstance(item, exp.Alias) and item.alias.lower() == name:
            owner = column.find_ancestor(exp.Alias)
            return owner is not item
    return False


def _visible_scopes(scope: Scope) -> list[Scope]:
    """The scope, then the outer ones a correlated subquery or a lateral item can refer to."""
    chain = [scope]
    while (scope.is_subquery or scope.is_udtf or scope.is_derived_table) and scope.parent is not None:
        scope = scope.parent
        chain.append(scope)
    return chain


def _alias_columns(node: exp.Expr) -> frozenset[str] | None:
    """`FROM t AS x(a, b)` or `WITH c(a, b) AS …`: the alias renames the columns."""
    alias = node.args.get("alias")
    if isinstance(alias, exp.TableAlias) and alias.columns:
        return frozenset(c.name.lower() for c in alias.columns)
    return None


def _scope_columns(scope: Scope) -> frozenset[str] | None:
    """The output names of a CTE or derived table, when every one is known."""
    query = scope.expression
    owner = query.parent
    while isinstance(owner, exp.SetOperation):  # a recursive CTE's anchor: the CTE owns the union
        owner = owner.parent
    if isinstance(owner, exp.CTE | exp.Subquery):
        renamed = _alias_columns(owner)
        if renamed is not None:
            return renamed
    if not isinstance(query, exp.Query):
        return None  # VALUES, UNNEST, LATERAL VIEW…
    selects = query.selects
    named = query.named_selects
    if len(named) != len(selects) or any(s.is_star for s in selects):
        return None
    return frozenset(n.lower() for n in named)


def _unknown_column_problem(
    name: str,
    sources: Sequence[_Source],
    elsewhere: Sequence[str] = (),
    here: Sequence[tuple[str, str]] = (),
) -> Problem:
    """What the repair loop tells the model. Most wrong columns a model writes belong to another
    table of the schema (measured on Spider with a small model: 15 of 28 failures), so the tables
    that do have the column are named: through the alias that already reads one (`here`), else
    saying it must be joined."""
    known = sorted({c for s in sources for c in s.columns or ()})
    suggestions = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    owners = list(dict.fromkeys(s.name for s in sources))
    if len(owners) == 1:
        where = f"{owners[0]} has no column {name!r}"
    else:
        where = f"no table in this query ({', '.join(owners)}) has a column {name!r}"
    other = [t for t in elsewhere if t.lower() not in {o.lower() for o in owners}][:3]
    found = f" {name!r} is a column of {' and '.join(other)}: join that table to use it." if other else ""
    if here:
        alias, table = here[0]
        found = f" {name!r} is a column of {table}, which this query reads as {alias}: write {alias}.{name}."
    hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else "."
    listing = ", ".join(known[:40])
    return Problem(
        code="unknown_column",
        message=f"Unknown column: {where}{hint}{found} Columns available: {listing}.",
        suggestions=suggestions,
    )
