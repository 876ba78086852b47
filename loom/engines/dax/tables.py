"""Table functions: each builds a `Rel` (a SELECT with columns c0, c1, … and their DAX names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from loom.engines.contracts import QueryError
from loom.engines.dax import values as v
from loom.engines.dax.aggregations import column_arg, over
from loom.engines.dax.calculate import apply_filters, calculatetable
from loom.engines.dax.filters import ColumnPredicate, equal_to
from loom.engines.dax.relations import Rel, RelColumn, RelRow
from loom.engines.dax.scope import Col
from loom.engines.dax.syntax import Call, ColumnRef, Name, Node, TableConstructor, Text

if TYPE_CHECKING:
    from loom.engines.dax.compiler import Compiler, Env

TableHandler = Callable[["Compiler", tuple[Node, ...], "Env"], Rel]


def filter_(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    if len(args) != 2:
        raise QueryError("wrong_arguments", "FILTER takes a table and a condition.")
    rel = c.table(args[0], env)
    if rel.base is not None and rel.condition is not None:
        inner = rel.condition

        def condition(scope):  # type: ignore[no-untyped-def]
            test = v.condition(c.scalar(args[1], env.with_row(c.table_row(scope))))
            return f"({inner(scope)}) AND {test}"

        return c.rows_rel(rel.base.name, condition)
    alias = c.aliases.new("r")
    test = v.condition(c.scalar(args[1], env.with_row(RelRow(rel, alias))))
    return _same_columns(rel, f"SELECT * FROM ({rel.sql}) AS {alias} WHERE {test}")


def all_(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    """ALL(Table): every row; ALL(T[a], T[b]): the distinct values of the columns, unfiltered."""
    if not args:
        raise QueryError("wrong_arguments", "ALL as a table takes a table or columns of one table.")
    if len(args) == 1 and isinstance(args[0], Name):
        return _with_blank_row(c, c.model_table(args[0].name, env, ignore_filters=True), None)
    cols = [column_arg(c, a, "ALL") for a in args]
    return _distinct(c, cols, None)


def allnoblankrow(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    if len(args) == 1 and isinstance(args[0], Name):
        return c.model_table(args[0].name, env, ignore_filters=True)
    return _distinct(c, [column_arg(c, a, "ALLNOBLANKROW") for a in args], None, blank_row=False)


def _with_blank_row(c: Compiler, rel: Rel, env: Env | None) -> Rel:
    """A whole table's rows and, when it has one, its blank row (in the filter context `env`)."""
    assert rel.base is not None
    if rel.base.name.lower() not in c.sources.blank_rows:
        return rel
    scope = c.scope(rel.base.name)
    scope.relation = c.sources.blank_row(rel.base)
    where = " AND ".join(env.ctx.restrict(scope)) if env is not None else ""
    listing = ", ".join(f"{scope.column(col.lineage)} AS {col.sql}" for col in rel.columns if col.lineage)
    blank = f"SELECT {listing} FROM {scope.from_clause()}" + (f" WHERE {where}" if where else "")
    return Rel(f"{rel.sql} UNION ALL {blank}", list(rel.columns))


def values_(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    """VALUES(T[c]): the column's values in the filter context, with the blank row's BLANK."""
    return _values(c, args, env, blank_row=True)


def distinct(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    """DISTINCT(T[c]): as VALUES, without the blank row."""
    return _values(c, args, env, blank_row=False)


def _values(c: Compiler, args: tuple[Node, ...], env: Env, blank_row: bool) -> Rel:
    if len(args) != 1:
        raise QueryError("wrong_arguments", "VALUES and DISTINCT take one column or table.")
    if isinstance(args[0], ColumnRef):
        return _distinct(c, [column_arg(c, args[0], "VALUES")], env, blank_row)
    rel = c.table(args[0], env)
    if blank_row and isinstance(args[0], Name) and rel.base is not None:
        return _with_blank_row(c, rel, env)
    return rel


def _distinct(c: Compiler, cols: list[Col], env: Env | None, blank_row: bool = True) -> Rel:
    """The distinct values of columns of one table, in the filter context (`env`; None: all of
    them), with the table's blank row when it has one (VALUES and ALL; not DISTINCT)."""
    tables = {col.table.lower() for col in cols}
    if len(tables) != 1:
        raise QueryError("wrong_arguments", "The columns must all belong to one table here.")
    table = c.model.table(cols[0].table)
    sql = _distinct_sql(c, cols, env, None)
    if blank_row and table.name.lower() in c.sources.blank_rows:
        sql = f"{sql} UNION {_distinct_sql(c, cols, env, c.sources.blank_row(table))}"
    return Rel(sql, [_lineage_column(c, col, i) for i, col in enumerate(cols)])


def _distinct_sql(c: Compiler, cols: list[Col], env: Env | None, relation: str | None) -> str:
    scope = c.scope(cols[0].table)
    scope.relation = relation
    listing = ", ".join(f"{scope.column(col)} AS c{i}" for i, col in enumerate(cols))
    where = " AND ".join(env.ctx.restrict(scope)) if env is not None else ""
    return f"SELECT DISTINCT {listing} FROM {scope.from_clause()}" + (f" WHERE {where}" if where else "")


def _lineage_column(c: Compiler, col: Col, i: int) -> RelColumn:
    return RelColumn(
        f"{col.table}[{col.name}]", f"c{i}", v.kind_of(c.model.column(col.table, col.name).data_type), col
    )


def summarizecolumns(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    """Group-by columns, filter tables, then name/expression pairs; rows whose expressions are
    all BLANK are left out."""
    groups, filters, named = _summarize_parts(c, args, env)
    inner = apply_filters(c, tuple(filters), env)
    if not named and len({g.table.lower() for g in groups}) > 1:
        raise QueryError(
            "unsupported",
            "SUMMARIZECOLUMNS with group-by columns of several tables and no expression is not "
            "supported by the embedded DAX engine: add a measure, or group columns of one table.",
        )
    domain = _domain(c, groups, inner)
    g = c.aliases.new("g")
    ctx = inner.ctx
    for i, col in enumerate(groups):
        blank = c.sources.may_be_blank(col.table, col.name)
        ctx = ctx.apply(ColumnPredicate(col, equal_to(f"{g}.c{i}", blank)), c.model)
    row_env = type(env)(ctx, (), env.vars)
    columns = [_lineage_column(c, col, i) for i, col in enumerate(groups)]
    selects = [f"{g}.c{i} AS c{i}" for i in range(len(groups))]
    for name, expr_node in named:
        value = c.scalar(expr_node, row_env)
        k = len(columns)
        columns.append(RelColumn(name, f"c{k}", value.kind, given=True))
        selects.append(f"{value.sql} AS c{k}")
    sql = f"SELECT {', '.join(selects)} FROM ({domain}) AS {g}"
    if named:
        measures = [col.sql for col in columns[len(groups) :]]
        s = c.aliases.new("s")
        keep = " OR ".join(f"{s}.{m} IS NOT NULL" for m in measures)
        sql = f"SELECT * FROM ({sql}) AS {s} WHERE {keep}"
    return Rel(sql, columns)


def _summarize_parts(
    c: Compiler, args: tuple[Node, ...], env: Env
) -> tuple[list[Col], list[Node], list[tuple[str, Node]]]:
    groups: list[Col] = []
    filters: list[Node] = []
    named: list[tuple[str, Node]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if isinstance(arg, Text):
            if i + 1 >= len(args):
                raise QueryError("wrong_arguments", f'The name "{arg.value}" has no expression after it.')
            named.append((arg.value, args[i + 1]))
            i += 2
            continue
        if named:
            raise QueryError(
                "wrong_arguments", "Group-by columns and filters come before the name/expression pairs."
            )
        if isinstance(arg, ColumnRef):
            groups.append(column_arg(c, arg, "SUMMARIZECOLUMNS"))
        elif isinstance(arg, Call) and arg.name in (
            "ROLLUPADDISSUBTOTAL",
            "ROLLUPGROUP",
            "IGNORE",
            "NONVISUAL",
        ):
            from loom.engines.dax.compiler import unsupported_function

            raise unsupported_function(arg.name)
        else:
            filters.append(arg)
        i += 1
    return groups, filters, named


def _domain(c: Compiler, groups: list[Col], env: Env) -> str:
    """The group-by columns' values that exist: per table, its combinations in the filter
    context; across tables, every combination (the BLANK rows are left out afterwards)."""
    if not groups:
        return "SELECT 1 AS one"
    parts: list[str] = []
    positions: list[tuple[str, int]] = []
    for table in dict.fromkeys(col.table.lower() for col in groups):
        cols = [(i, col) for i, col in enumerate(groups) if col.table.lower() == table]
        rel = _distinct(c, [col for _, col in cols], env)
        alias = c.aliases.new("d")
        parts.append(f"({rel.sql}) AS {alias}")
        positions.extend((f"{alias}.c{k}", i) for k, (i, _) in enumerate(cols))
    listing = ", ".join(f"{sql} AS c{i}" for sql, i in sorted(positions, key=lambda p: p[1]))
    return f"SELECT {listing} FROM {' CROSS JOIN '.join(parts)}"


def addcolumns(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    return _extend(c, args, env, "ADDCOLUMNS", keep=True)


def selectcolumns(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    return _extend(c, args, env, "SELECTCOLUMNS", keep=False)


def _extend(c: Compiler, args: tuple[Node, ...], env: Env, function: str, keep: bool) -> Rel:
    if len(args) < 1 or len(args) % 2 != 1:
        raise QueryError("wrong_arguments", f"{function} takes a table, then name/expression pairs.")
    rel = c.table(args[0], env)
    added: list[tuple[str, Node]] = []
    for name_node, expr in zip(args[1::2], args[2::2], strict=True):
        if not isinstance(name_node, Text):
            raise QueryError("wrong_arguments", f"{function}'s column names are strings.")
        added.append((name_node.value, expr))
    columns: list[RelColumn] = list(rel.columns) if keep else []
    start = len(columns)
    made: list[RelColumn] = []

    def select_list(row_env: Env) -> str:
        row = row_env.rows[-1]
        parts = [f"{_own(row, col)} AS {col.sql}" for col in columns]
        for k, (name, expr) in enumerate(added):
            value = c.scalar(expr, row_env)
            lineage = None if keep else _lineage_of(c, expr)
            made.append(RelColumn(name, f"c{start + k}", value.kind, lineage, given=True))
            parts.append(f"{value.sql} AS c{start + k}")
        return ", ".join(parts)

    sql = over(c, rel, env, select_list)
    return Rel(sql, columns + made)


def _own(row: object, col: RelColumn) -> str:
    found = row.column(col.lineage) if col.lineage is not None else row.named(col.name)  # type: ignore[attr-defined]
    if found is None:
        raise QueryError("internal", f"the column {col.name} of the iterated table was not found")
    return str(found.sql)


def _lineage_of(c: Compiler, node: Node) -> Col | None:
    if isinstance(node, ColumnRef) and node.table.lower() in c.model.tables:
        table = c.model.table(node.table)
        column = table.column(node.column)
        if column is not None:
            return Col(table.name, column.name)
    return None


def topn(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    """TOPN(n, table, order expressions…): the first n rows, and every row tied with the last."""
    if len(args) < 2:
        raise QueryError("wrong_arguments", "TOPN takes a count, a table and order expressions.")
    count = c.scalar(args[0], env)
    rel = c.table(args[1], env)
    keys = order_keys(args[2:])
    if not keys:
        raise QueryError("unsupported", "TOPN without an order expression is not supported: add one.")
    alias = c.aliases.new("r")
    row_env = env.with_row(RelRow(rel, alias))
    order = ", ".join(
        f"{c.scalar(expr, row_env).sql} {'DESC NULLS LAST' if desc else 'ASC NULLS FIRST'}"
        for expr, desc in keys
    )
    ranked = f"SELECT *, rank() OVER (ORDER BY {order}) AS _rank FROM ({rel.sql}) AS {alias}"
    listing = ", ".join(col.sql for col in rel.columns)
    n = c.aliases.new("n")
    return _same_columns(rel, f"SELECT {listing} FROM ({ranked}) AS {n} WHERE _rank <= {count.sql}")


def order_keys(args: tuple[Node, ...], descending: bool = True) -> list[tuple[Node, bool]]:
    """Order expressions, each optionally followed by ASC/DESC (or 1/0, TRUE/FALSE); the default is
    descending for TOPN, ascending for CONCATENATEX."""
    keys: list[tuple[Node, bool]] = []
    i = 0
    while i < len(args):
        desc = descending
        if i + 1 < len(args) and _is_order(args[i + 1]):
            desc = _order_value(args[i + 1])
            keys.append((args[i], desc))
            i += 2
            continue
        keys.append((args[i], desc))
        i += 1
    return keys


def _is_order(node: Node) -> bool:
    from loom.engines.dax.syntax import Number

    return (
        (isinstance(node, Name) and node.name.upper() in ("ASC", "DESC"))
        or (isinstance(node, Number) and node.value in (0, 1))
        or (isinstance(node, Call) and node.name in ("TRUE", "FALSE"))
    )


def _order_value(node: Node) -> bool:
    from loom.engines.dax.syntax import Number

    if isinstance(node, Name):
        return node.name.upper() == "DESC"
    if isinstance(node, Number):
        return node.value == 0
    return isinstance(node, Call) and node.name == "FALSE"


def row(c: Compiler, args: tuple[Node, ...], env: Env) -> Rel:
    if len(args) < 2 or len(args) % 2:
        raise QueryError("wrong_arguments", "ROW takes name/expression pairs.")
    columns, selects = [], []
    for k, (name_node, expr) in enumerate(zip(args[::2], args[1::2], strict=True)):
        if not isinstance(name_node, Text):
            raise QueryError("wrong_arguments", "ROW's column names are strings.")
        value = c.scalar(expr, env)
        columns.append(RelColumn(name_node.value, f"c{k}", value.kind, given=True))
        selects.append(f"{value.sql} AS c{k}")
    return Rel(f"SELECT {', '.join(selects)}", columns)


def constructor(c: Compiler, node: TableConstructor, env: Env) -> Rel:
    """{1, 2} has one column, Value; {(1, "a"), …} has Value1, Value2, …"""
    if not node.rows:
        raise QueryError("unsupported", "An empty table constructor {} is not supported.")
    width = len(node.rows[0])
    if any(len(r) != width for r in node.rows):
        raise QueryError("wrong_arguments", "Every row of a table constructor has the same number of values.")
    names = ["Value"] if width == 1 else [f"Value{i + 1}" for i in range(width)]
    rows = [[c.scalar(x, env) for x in r] for r in node.rows]
    selects = ["SELECT " + ", ".join(f"{x.sql} AS c{i}" for i, x in enumerate(r)) for r in rows]
    kinds = [next((r[i].kind for r in rows if r[i].kind != v.BLANK), v.BLANK) for i in range(width)]
    return Rel(" UNION ALL ".join(selects), [RelColumn(n, f"c{i}", kinds[i]) for i, n in enumerate(names)])


def _same_columns(rel: Rel, sql: str) -> Rel:
    return Rel(sql, list(rel.columns))


FUNCTIONS: dict[str, TableHandler] = {
    "FILTER": filter_,
    "ALL": all_,
    "ALLNOBLANKROW": allnoblankrow,
    "REMOVEFILTERS": all_,
    "VALUES": values_,
    "DISTINCT": distinct,
    "SUMMARIZECOLUMNS": summarizecolumns,
    "ADDCOLUMNS": addcolumns,
    "SELECTCOLUMNS": selectcolumns,
    "TOPN": topn,
    "CALCULATETABLE": calculatetable,
    "ROW": row,
    # As a table (FILTER(KEEPFILTERS(T), …)), the table itself; as a CALCULATE filter, see calculate.py.
    "KEEPFILTERS": lambda c, args, env: c.table(args[0], env),
}
