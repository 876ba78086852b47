"""After a failed query: which key columns it used as if they were values, and what they stand for.

A small model reads `date_key integer` and writes `YEAR(date_key) = 2024`; the engine answers with a
type error (DuckDB: "No function matches … 'year(INTEGER)'"), and the model, shown only that, writes
the same thing three times (the local 1.5B model in the smoke suite). The schema already lists the
join, but what the model needs at that moment is the join for *that* column: the repair message
then says that `gold.fact_sales.date_key` is a key to `gold.dim_date` and which columns hold the
values it stands for.

Read from the parsed query (sqlglot), never its text: a key column counts when it is the argument
of a scalar function, an operand of LIKE, cast, or compared with a string — the places a value is
expected. A key used in a
join, a GROUP BY or `COUNT(DISTINCT …)` is used as a key, and gets no hint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlglot import exp

from loom.engines.contracts import Catalog, ForeignKey, QueryError
from loom.engines.sql.validator import parse_sql

MAX_HINTS = 2
MAX_COLUMNS = 12  # of the referenced table, named in a hint
# Where a column is read as a value rather than matched as a key.
_VALUE_USES: tuple[type[exp.Expr], ...] = (exp.Like, exp.ILike, exp.Cast, exp.TryCast, exp.Extract)


def key_hints(query: str, dialect: str, catalog: Catalog, keys: Sequence[ForeignKey]) -> str | None:
    """One line per key column `query` reads as a value (at most `MAX_HINTS`), or None."""
    try:
        tree = parse_sql(query, dialect)
    except QueryError:
        return None
    by_column = {(k.table.lower(), k.columns[0].lower()): k for k in keys if len(k.columns) == 1}
    aliases = _aliases(tree)
    seen: list[ForeignKey] = []
    numeric = _numeric_columns(catalog)
    for column in _used_as_values(tree):
        for table in _owners(column, aliases):
            key = by_column.get((table, column.name.lower()))
            if key is None or key in seen:
                continue
            # A text key compared with a string is a key used as one (`link_to_event = 'rec2m…'`).
            if _compared_with_text(column, column.parent) and (table, column.name.lower()) not in numeric:
                continue
            seen.append(key)
    seen += [k for k in _unjoined(tree, aliases, keys) if k not in seen]
    hints = [_hint(k, catalog) for k in seen[:MAX_HINTS]]
    return "\n".join(hints) if hints else None


def _unjoined(tree: exp.Expr, aliases: dict[str, str], keys: Sequence[ForeignKey]) -> Iterator[ForeignKey]:
    """Keys to a table the query names in a column (`gold.dim_date.year`) but does not read, from
    one it does: the 1.5B model wrote `YEAR(gold.dim_date.date_key)` over fact_sales alone."""
    read = set(aliases.values())
    for column in tree.find_all(exp.Column):
        named = ".".join(p for p in (column.args.get("db") and column.db, column.table) if p).lower()
        if not named or named in aliases or named in read:
            continue
        for key in keys:
            if key.ref_table.lower() == named and key.table.lower() in read:
                yield key


def _used_as_values(tree: exp.Expr) -> Iterator[exp.Column]:
    for column in tree.find_all(exp.Column):
        parent = column.parent
        if isinstance(parent, _VALUE_USES):
            yield column
        elif isinstance(parent, exp.Func) and not isinstance(parent, exp.AggFunc):
            yield column
        elif _compared_with_text(column, parent):
            yield column


def _numeric_columns(catalog: Catalog) -> set[tuple[str, str]]:
    numeric = ("int", "decimal", "numeric", "double", "float", "real")
    return {
        (t.name.lower(), c.name.lower())
        for t in catalog.tables
        for c in t.columns
        if any(word in c.type.lower() for word in numeric)
    }


def _compared_with_text(column: exp.Column, parent: exp.Expr | None) -> bool:
    """`gender_id = 'Female'`, `gender_id IN ('F', 'M')`: a key compared with words (BIRD, the
    1.5B model; DuckDB answers with a conversion error)."""
    if isinstance(parent, exp.EQ | exp.NEQ):
        other = parent.expression if parent.this is column else parent.this
        return isinstance(other, exp.Literal) and other.is_string
    if isinstance(parent, exp.In) and parent.this is column:
        return any(isinstance(e, exp.Literal) and e.is_string for e in parent.expressions)
    return False


def _aliases(tree: exp.Expr) -> dict[str, str]:
    """Alias (or bare name) → `schema.table`, lower case, for each table the query reads."""
    out: dict[str, str] = {}
    for table in tree.find_all(exp.Table):
        full = ".".join(p for p in (table.db, table.name) if p).lower()
        out[(table.alias or table.name).lower()] = full
        out.setdefault(full, full)
    return out


def _owners(column: exp.Column, aliases: dict[str, str]) -> list[str]:
    if column.table:
        owner = aliases.get(column.table.lower())
        return [owner] if owner else []
    return sorted(set(aliases.values()))  # unqualified: any table read may own it


def _hint(key: ForeignKey, catalog: Catalog) -> str:
    column, ref_column = key.columns[0], key.ref_columns[0]
    near, far = _alias(key.table, "t1"), _alias(key.ref_table, "t2")
    if near == far:
        near, far = "t1", "t2"
    hint = (
        f"Note: {key.table}.{column} is a key, not a value: it joins {key.ref_table}.{ref_column}. "
        f"Join it: FROM {key.table} AS {near} JOIN {key.ref_table} AS {far} "
        f"ON {far}.{ref_column} = {near}.{column}, then use {far}'s columns"
    )
    ref = next((t for t in catalog.tables if t.name.lower() == key.ref_table.lower()), None)
    if ref is None:
        return hint + "."
    shown = [f"{far}.{c.name} {c.type}" for c in ref.columns if c.name.lower() != ref_column.lower()]
    more = ", …" if len(shown) > MAX_COLUMNS else ""
    return f"{hint}: {', '.join(shown[:MAX_COLUMNS])}{more}."


def _alias(table: str, fallback: str) -> str:
    """The first letter of the table's own name (`gold.fact_sales` → `f`)."""
    bare = table.rsplit(".", 1)[-1].lstrip("_")
    return bare[:1].lower() if bare[:1].isalpha() else fallback
