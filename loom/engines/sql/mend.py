"""Mending a query whose columns sit on another table, where the schema allows one reading only.

A small model often picks the right column and writes it on the wrong table: `superhero.gender`
where `gender` is a column of the lookup table `gender` that `superhero.gender_id` points to, or
`T1.molecule_id` where T2 holds it. Told so, the 1.5B model still failed to write the join three
times in a row on half of BIRD mini-dev's failures (51 of 102 ended on `unknown_column`). Where the
catalog and its foreign keys leave exactly one reading, the query is mended here, without the
model, and the mend is recorded with the attempt:

1. **Requalify**: `T1.c` where T1's table lacks `c` and exactly one other FROM item of the same
   SELECT has it → that item's alias.
2. **Look it up along the keys** (FROM-clause inference, as IRNet and RAT-SQL do from foreign
   keys): a column of a table reached from one FROM item through foreign keys, every hop
   many-to-one (the item holds the key, at most `MAX_HOPS` hops), by exactly one shortest path →
   a correlated scalar subquery along it, `(SELECT gender.gender FROM gender WHERE gender.id =
   superhero.gender_id)`. Not a join: a key that is not unique on the side it points to (an
   inferred key, or a declared one the data breaks) would multiply the query's rows and inflate its
   counts and sums silently (probe 16: R16-2); a scalar subquery answers the one value each row
   points to, NULL for none, and fails the query for two (every engine refuses a scalar subquery
   with more than one row), which goes back to the model like any error. A lookup table's label
   counts too: `superhero.eye_colour` with the key `eye_colour_id → colour(id)`, when `colour`
   has one column besides its key.
3. **Disambiguate**: an unqualified column that two FROM items have, equated by an inner join's
   condition (`ON a.x = b.x`) → either, so the first.

Nothing is mended when a FROM item's columns are unknown (a derived table, a function), or when two
readings exist. The mended query is
validated and run like any other: this only proposes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from loom.engines.contracts import Catalog, ForeignKey, QueryError, TableInfo
from loom.engines.sql.keys import KEY_SUFFIXES
from loom.engines.sql.qualify import CatalogNames
from loom.engines.sql.rules import RULES
from loom.engines.sql.validator import parse_sql

MAX_HOPS = 2  # expense → budget → event; a longer chain is more guess than reading


@dataclass(frozen=True)
class Mended:
    query: str  # in the dialect the query was written in
    changes: tuple[str, ...]  # one line per change, for the attempt's record


def mend_columns(query: str, dialect: str, catalog: Catalog, keys: Sequence[ForeignKey]) -> Mended | None:
    """The query with its misplaced columns mended, or None when nothing has a single reading."""
    links = _Links(CatalogNames(catalog, RULES[dialect]), keys)
    try:
        tree = parse_sql(query, dialect)
        scopes = traverse_scope(tree)
        # sqlglot reads a scope's sources lazily, and raises then (one table twice unaliased: the
        # BIRD run's `expense` failed its whole tool call here).
        changes = [
            change
            for scope in scopes
            if isinstance(scope.expression, exp.Select)
            for change in links.mend(scope)
        ]
    except (QueryError, SqlglotError, RecursionError):
        return None
    if not changes:
        return None
    return Mended(tree.sql(dialect=dialect), tuple(changes))


@dataclass(frozen=True)
class _Item:
    """A FROM item of one SELECT that is a catalog table."""

    alias: str  # as the query refers to it
    table: TableInfo

    def has(self, column: str) -> bool:
        return any(c.name.lower() == column for c in self.table.columns)


@dataclass(frozen=True)
class _Path:
    """Many-to-one hops from a FROM item to the table holding the wanted column."""

    start: _Item
    hops: tuple[ForeignKey, ...]
    column: str  # the target table's spelling


@dataclass
class _Lookups:
    """The lookups one SELECT gets, one per path: the same column in the SELECT list and in its
    GROUP BY must be the same expression, aliases and all, or the engine refuses the query
    (probe 17: R17-2)."""

    taken: set[str]  # table names and aliases in use in the query
    made: dict[tuple[str, tuple[ForeignKey, ...]], exp.Subquery] = field(default_factory=dict)

    def of(self, path: _Path) -> exp.Subquery:
        key = (path.start.alias.lower(), path.hops)
        if key not in self.made:
            self.made[key] = _looked_up(path, self.taken)
        return self.made[key].copy()


@dataclass
class _Links:
    names: CatalogNames
    keys: Sequence[ForeignKey]
    outgoing: dict[str, list[ForeignKey]] = field(init=False)

    def __post_init__(self) -> None:
        self.outgoing = {}
        for key in self.keys:
            if key.table.lower() != key.ref_table.lower():
                self.outgoing.setdefault(key.table.lower(), []).append(key)

    def mend(self, scope: Scope) -> Iterator[str]:
        select = scope.expression
        if not isinstance(select, exp.Select):
            return
        items = self._items(scope)
        if items is None:
            return
        outer = self._outer_columns(scope)
        lookups = _Lookups({t.alias_or_name.lower() for t in select.root().find_all(exp.Table)})
        for column in _own_columns(scope):
            change = self._mend_one(column, select, items, outer, lookups)
            if change is not None:
                yield change

    def _items(self, scope: Scope) -> dict[str, _Item] | None:
        """The SELECT's FROM items by lower-case alias; None when one is not a known table."""
        items: dict[str, _Item] = {}
        for alias, (_node, source) in scope.selected_sources.items():
            if not isinstance(source, exp.Table) or source.args.get("pivots"):
                return None
            info = self.names.table(source)
            if info is None or not info.columns:
                return None
            items[alias.lower()] = _Item(alias, info)
        return items if len(items) == len(scope.sources) else None

    def _outer_columns(self, scope: Scope) -> frozenset[str] | None:
        """The columns a correlated subquery may mean from the queries around it (None: unknown),
        so that an outer query's column is never taken for a misplaced one."""
        names: set[str] = set()
        while (scope.is_subquery or scope.is_udtf or scope.is_derived_table) and scope.parent is not None:
            scope = scope.parent
            items = self._items(scope)
            if items is None:
                return None
            names |= {c.name.lower() for item in items.values() for c in item.table.columns}
        return frozenset(names)

    def _mend_one(
        self,
        column: exp.Column,
        select: exp.Select,
        items: dict[str, _Item],
        outer: frozenset[str] | None,
        lookups: _Lookups,
    ) -> str | None:
        name = column.name.lower()
        if name in self.names.rules.pseudo_columns or _names_an_alias(name, select):
            return None
        holders = [item for item in items.values() if item.has(name)]
        if column.table:
            owner = items.get(column.table.lower())
            if owner is None or owner.has(name):
                return None
            if len(holders) == 1:
                alias = holders[0].alias
                return _requalify(column, alias, f"{column.table}.{column.name} is {alias}.{column.name}.")
            return None if holders else self._lookup(column, [owner], select, lookups)
        if len(holders) > 1:
            return _disambiguate(column, holders, select)
        if holders or outer is None or name in outer:
            return None
        return self._lookup(column, list(items.values()), select, lookups)

    def _lookup(
        self, column: exp.Column, starts: list[_Item], select: exp.Select, lookups: _Lookups
    ) -> str | None:
        paths = [p for item in starts for p in self._paths(item, column.name.lower())]
        fewest = min((len(p.hops) for p in paths), default=0)
        shortest = [p for p in paths if len(p.hops) == fewest]
        if len(shortest) != 1:
            return None
        path = shortest[0]
        written = f"{column.table}.{column.name}" if column.table else column.name
        via = " → ".join(f"{k.table}.{', '.join(k.columns)} → {k.ref_table}" for k in path.hops)
        looked_up: exp.Expr = lookups.of(path)
        if column.parent is select and column.arg_key == "expressions":  # a SELECT item keeps its name
            looked_up = exp.alias_(looked_up, column.name)
        column.replace(looked_up)
        return f"{written} is {path.hops[-1].ref_table}.{path.column}, looked up by key ({via})."

    def _paths(self, start: _Item, column: str) -> list[_Path]:
        """Every shortest many-to-one path from `start` to a table with `column` (or its label)."""
        frontier: list[tuple[str, tuple[ForeignKey, ...]]] = [(start.table.name.lower(), ())]
        for _ in range(MAX_HOPS):
            found: list[_Path] = []
            after: list[tuple[str, tuple[ForeignKey, ...]]] = []
            for table, hops in frontier:
                for key in self.outgoing.get(table, []):
                    target = self.names.tables.get(key.ref_table.lower())
                    if target is None or any(h.ref_table.lower() == key.ref_table.lower() for h in hops):
                        continue
                    spelled = _column_of(target, column) or (
                        _label_of(target, key) if _names_key(key, column) else None
                    )
                    if spelled is not None:
                        found.append(_Path(start, (*hops, key), spelled))
                    after.append((key.ref_table.lower(), (*hops, key)))
            if found:
                return found
            frontier = after
        return []


def _own_columns(scope: Scope) -> list[exp.Column]:
    own = scope.column_index
    return [
        c for c in scope.columns if id(c) in own and not c.args.get("db") and not c.find_ancestor(exp.Lambda)
    ]


def _names_an_alias(name: str, select: exp.Select) -> bool:
    return any(isinstance(s, exp.Alias) and s.alias.lower() == name for s in select.expressions)


def _column_of(table: TableInfo, column: str) -> str | None:
    return next((c.name for c in table.columns if c.name.lower() == column), None)


def _names_key(key: ForeignKey, column: str) -> bool:
    """Whether `column` is the key's own column without its suffix (`eye_colour` for
    `eye_colour_id`): the model asked for what the key stands for."""
    if len(key.columns) != 1:
        return False
    own = key.columns[0].lower()
    return any(own == column + suffix for suffix in KEY_SUFFIXES)


def _label_of(table: TableInfo, key: ForeignKey) -> str | None:
    """A lookup table's one column besides the key it is joined on."""
    others = [c.name for c in table.columns if c.name.lower() not in {r.lower() for r in key.ref_columns}]
    return others[0] if len(others) == 1 else None


def _requalify(column: exp.Column, alias: str, change: str, spelled: str | None = None) -> str:
    column.set("table", exp.to_identifier(alias))
    if spelled is not None and spelled.lower() != column.name.lower():
        column.set("this", exp.to_identifier(spelled))
    return change


def _disambiguate(column: exp.Column, holders: list[_Item], select: exp.Select) -> str | None:
    """Qualify `column` when every FROM item that has it is equated on it by inner joins."""
    name = column.name.lower()
    groups = {item.alias.lower(): item.alias.lower() for item in holders}

    def root(alias: str) -> str:
        while groups[alias] != alias:
            alias = groups[alias]
        return alias

    for left, right in _equated(select, name):
        if left in groups and right in groups:
            groups[root(left)] = root(right)
    if len({root(a) for a in groups}) != 1:
        return None
    first = holders[0].alias
    return _requalify(column, first, f"{column.name} is {first}.{column.name} (equal on every joined table).")


def _equated(select: exp.Select, name: str) -> Iterator[tuple[str, str]]:
    """Pairs of aliases an inner join's ON (or the WHERE) sets equal on `name`: `a.x = b.x`."""
    conditions: list[exp.Expr] = []
    for join in select.args.get("joins") or []:
        if not join.side and join.args.get("on") is not None and join.kind.upper() in ("", "INNER"):
            conditions.append(join.args["on"])
    where = select.args.get("where")
    if where is not None:
        conditions.append(where.this)
    for condition in conditions:
        for part in condition.flatten() if isinstance(condition, exp.And) else (condition,):
            if isinstance(part, exp.EQ) and all(
                isinstance(s, exp.Column) for s in (part.this, part.expression)
            ):
                a, b = part.this, part.expression
                if a.name.lower() == name == b.name.lower() and a.table and b.table:
                    yield a.table.lower(), b.table.lower()


def _looked_up(path: _Path, taken: set[str]) -> exp.Subquery:
    """`(SELECT r.c FROM r WHERE r.key = start.fk)`, each further hop joined inside it."""
    lookup: exp.Select | None = None
    near = path.start.alias
    for key in path.hops:
        alias = _free_alias(key.ref_table, taken)
        taken.add(alias.lower())
        table = _table(key.ref_table)
        if alias != table.name:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        on = exp.and_(
            *(
                exp.EQ(this=exp.column(ref, table=alias), expression=exp.column(own, table=near))
                for own, ref in zip(key.columns, key.ref_columns, strict=True)
            )
        )
        if lookup is None:  # the first hop is what correlates it with the row
            lookup = exp.select(exp.column(path.column, table=alias)).from_(table).where(on)
        else:
            lookup = lookup.join(table, on=on, copy=False)
        near = alias
    assert lookup is not None  # a path has at least one hop
    lookup.set("expressions", [exp.column(path.column, table=near)])
    return exp.Subquery(this=lookup)


def _table(name: str) -> exp.Table:
    """A table reference from its catalog name: `t`, `schema.t` or `catalog.schema.t`."""
    *prefix, bare = name.split(".")
    parts = [exp.to_identifier(p) for p in prefix[-2:]]
    catalog, db = ([None] * (2 - len(parts)) + parts)[:2]
    return exp.Table(this=exp.to_identifier(bare), db=db, catalog=catalog)


def _free_alias(table: str, taken: set[str]) -> str:
    bare = table.rsplit(".", 1)[-1]
    alias, n = bare, 1
    while alias.lower() in taken:
        n += 1
        alias = f"{bare}_{n}"
    return alias
