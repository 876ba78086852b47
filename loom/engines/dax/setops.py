"""Tables from tables: CROSSJOIN, UNION, GENERATE(ALL), TREATAS, DATATABLE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loom.engines.contracts import QueryError
from loom.engines.dax import values as v
from loom.engines.dax.aggregations import column_arg
from loom.engines.dax.relations import Rel, RelColumn, RelRow
from loom.engines.dax.syntax import Name, Node, TableConstructor, Text

if TYPE_CHECKING:
    from loom.engines.dax.compiler import Compiler, Env

_TYPES = {"STRING": v.TEXT, "INTEGER": v.NUMBER, "DOUBLE": v.NUMBER, "CURRENCY": v.NUMBER,
          "BOOLEAN": v.BOOLEAN, "DATETIME": v.DATETIME}  # fmt: skip
_SQL = {"STRING": "VARCHAR", "INTEGER": "BIGINT", "DOUBLE": "DOUBLE", "CURRENCY": "DECIMAL(19,4)",
        "BOOLEAN": "BOOLEAN", "DATETIME": "TIMESTAMP"}  # fmt: skip


def _projected(rel: Rel, alias: str, start: int) -> tuple[list[str], list[RelColumn]]:
    """`alias.cK AS c{start+i}` for each column, and the columns renamed so."""
    listing = [f"{alias}.{col.sql} AS c{start + i}" for i, col in enumerate(rel.columns)]
    columns = [
        RelColumn(col.name, f"c{start + i}", col.kind, col.lineage, col.given)
        for i, col in enumerate(rel.columns)
    ]
    return listing, columns


def crossjoin(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    if len(args) < 2:
        raise QueryError("wrong_arguments", "CROSSJOIN takes two or more tables.")
    listing: list[str] = []
    columns: list[RelColumn] = []
    parts = []
    for arg in args:
        rel = c.table(arg, env)
        alias = c.aliases.new("x")
        more, cols = _projected(rel, alias, len(columns))
        listing, columns = listing + more, columns + cols
        parts.append(f"({rel.sql}) AS {alias}")
    _no_clash(columns, "CROSSJOIN")
    return Rel(f"SELECT {', '.join(listing)} FROM {' CROSS JOIN '.join(parts)}", columns)


def union(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    """Rows of every table (duplicates kept), by position; names from the first, lineage where all agree."""
    if len(args) < 2:
        raise QueryError("wrong_arguments", "UNION takes two or more tables.")
    rels = [c.table(arg, env) for arg in args]
    width = len(rels[0].columns)
    if any(len(r.columns) != width for r in rels):
        raise QueryError("wrong_arguments", "Every table UNION combines has the same number of columns.")
    selects = []
    for rel in rels:
        alias = c.aliases.new("u")
        selects.append(f"SELECT {', '.join(_projected(rel, alias, 0)[0])} FROM ({rel.sql}) AS {alias}")
    columns = []
    for i, first in enumerate(rels[0].columns):
        lineages = {r.columns[i].lineage for r in rels}
        lineage = first.lineage if len(lineages) == 1 else None
        columns.append(RelColumn(first.name, f"c{i}", first.kind, lineage, first.given or lineage is None))
    return Rel(" UNION ALL ".join(selects), columns)


def generate(c: Compiler, args: tuple[Node, ...], env: Env, keep_empty: bool = False) -> Rel:
    """For each row of the first table, the second evaluated in that row's context, joined to it."""
    if len(args) != 2:
        raise QueryError("wrong_arguments", "GENERATE takes two tables.")
    first = c.table(args[0], env)
    a = c.aliases.new("g")
    second = c.table(args[1], env.with_row(RelRow(first, a)))
    b = c.aliases.new("g")
    left, columns = _projected(first, a, 0)
    right, more = _projected(second, b, len(columns))
    _no_clash(columns + more, "GENERATE")
    join = "LEFT JOIN LATERAL" if keep_empty else "CROSS JOIN LATERAL"
    on = " ON TRUE" if keep_empty else ""
    sql = f"SELECT {', '.join(left + right)} FROM ({first.sql}) AS {a} {join} ({second.sql}) AS {b}{on}"
    return Rel(sql, columns + more)


def generateall(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    return generate(c, args, env, keep_empty=True)


def treatas(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    """TREATAS(table, 'T'[a], …): the table's columns, taken as those model columns (so it filters them)."""
    if len(args) < 2:
        raise QueryError("wrong_arguments", "TREATAS takes a table and the columns it stands for.")
    rel = c.table(args[0], env)
    cols = [column_arg(c, a, "TREATAS") for a in args[1:]]
    if len(cols) != len(rel.columns):
        raise QueryError(
            "wrong_arguments",
            f"TREATAS got a table of {len(rel.columns)} columns and {len(cols)} columns to treat it as.",
        )
    columns = [
        RelColumn(f"{col.table}[{col.name}]", rc.sql, rc.kind, col)
        for rc, col in zip(rel.columns, cols, strict=True)
    ]
    return Rel(rel.sql, columns)


def datatable(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    """DATATABLE("Name", TYPE, …, {{v, …}, …}): literal rows of typed columns."""
    if len(args) < 3 or len(args) % 2 == 0 or not isinstance(args[-1], TableConstructor):
        raise QueryError("wrong_arguments", "DATATABLE takes name/type pairs, then the rows in {{…}, …}.")
    names, types = [], []
    for name, kind in zip(args[:-1:2], args[1:-1:2], strict=True):
        if not isinstance(name, Text) or not isinstance(kind, Name) or kind.name.upper() not in _TYPES:
            raise QueryError(
                "wrong_arguments", f'DATATABLE\'s columns are "Name", TYPE ({", ".join(_TYPES)}).'
            )
        names.append(name.value)
        types.append(kind.name.upper())
    rows = [_datatable_row(r) for r in args[-1].rows]
    if any(len(r) != len(names) for r in rows):
        raise QueryError("wrong_arguments", f"Every DATATABLE row has {len(names)} values.")
    selects = []
    for r in rows:
        cells = [
            f"CAST({c.scalar(x, env).sql} AS {_SQL[t]}) AS c{i}"
            for i, (x, t) in enumerate(zip(r, types, strict=True))
        ]
        selects.append("SELECT " + ", ".join(cells))
    if not selects:
        selects.append(
            "SELECT "
            + ", ".join(f"CAST(NULL AS {_SQL[t]}) AS c{i}" for i, t in enumerate(types))
            + " WHERE FALSE"
        )
    columns = [
        RelColumn(n, f"c{i}", _TYPES[t], given=True)
        for i, (n, t) in enumerate(zip(names, types, strict=True))
    ]
    return Rel(" UNION ALL ".join(selects), columns)


def _datatable_row(row: tuple[Node, ...]) -> tuple[Node, ...]:
    """A DATATABLE row is written `{v1, v2}`: it parses as a table constructor of one value each."""
    if len(row) == 1 and isinstance(row[0], TableConstructor):
        return tuple(cell[0] for cell in row[0].rows)
    return row


def _no_clash(columns: list[RelColumn], function: str) -> None:
    seen: set[str] = set()
    for col in columns:
        key = col.name.lower()
        if key in seen:
            raise QueryError("wrong_arguments", f"{function} would give two columns named {col.name}.")
        seen.add(key)


FUNCTIONS = {
    "CROSSJOIN": crossjoin,
    "UNION": union,
    "GENERATE": generate,
    "GENERATEALL": generateall,
    "TREATAS": treatas,
    "DATATABLE": datatable,
}
