"""Slips small models make writing DAX, mended before the query is checked, when the intent
leaves no doubt (seen from Qwen2.5-Coder-1.5B on the sample model):

- a query without EVALUATE: a table expression gets `EVALUATE` in front; a single value (a measure,
  a CALCULATE) is returned as `EVALUATE ROW("Value", …)`;
- a name broken over lines inside its brackets (`'Product'[\\n    Category]`): the spaces around it
  dropped (no model seen has a name that begins or ends with a space).

The mended query is the one checked, run and shown. One that does not parse either way is left as
written: the engine's error says what is wrong.
"""

from __future__ import annotations

from loom.engines.contracts import QueryError
from loom.engines.dax.lexer import tokens
from loom.engines.dax.parser import is_query, parse_expression
from loom.engines.dax.syntax import Call, Name, TableConstructor
from loom.engines.sql.screen import MAX_QUERY_CHARS

TABLE_FUNCTIONS = frozenset(
    {"SUMMARIZECOLUMNS", "SUMMARIZE", "ADDCOLUMNS", "SELECTCOLUMNS", "FILTER", "ALL", "VALUES", "DISTINCT",
     "TOPN", "CALCULATETABLE", "ROW", "DATATABLE", "GENERATE", "GENERATEALL", "CROSSJOIN", "UNION", "TREATAS"}
)  # fmt: skip


def tidy_dax(query: str) -> str:
    if len(query) > MAX_QUERY_CHARS:
        return query
    trimmed = _trimmed_names(query)
    for candidate in dict.fromkeys((trimmed, query)):
        if is_query(candidate):
            return candidate
        wrapped = _evaluated(candidate)
        if wrapped is not None:
            return wrapped
    return query


def _evaluated(text: str) -> str | None:
    """`EVALUATE …` around an expression that is whole but lacks it."""
    try:
        tree = parse_expression(text)
    except QueryError:
        return None
    body = text.strip()
    is_table = isinstance(tree, TableConstructor | Name) or (
        isinstance(tree, Call) and tree.name in TABLE_FUNCTIONS
    )
    return f"EVALUATE {body}" if is_table else f'EVALUATE ROW("Value", {body})'


def _trimmed_names(query: str) -> str:
    """The query with the spaces inside each [bracketed name] dropped at its ends."""
    try:
        found = tokens(query)
    except QueryError:
        return query
    out, at = [], 0
    for token in found:
        if token.kind != "bracket" or token.text == token.text.strip():
            continue
        end = query.index("]", token.pos + 1 + len(token.text.replace("]", "]]")) - 1)
        out.append(query[at : token.pos])
        out.append("[" + token.text.strip().replace("]", "]]") + "]")
        at = end + 1
    out.append(query[at:])
    return "".join(out)
