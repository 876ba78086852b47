"""Two slips small models make in KQL, mended on the parse before the query is checked.

Both leave no doubt about what was meant, and neither changes what a well-formed query asks:

- a `let` statement and the query after it on the next line without the `;` between them
  (`let t = T | where x\\nt | count`): the parser stops at the next line's first token expecting
  `;`, and one is put at the end of the line before;
- a query that is only `let` statements, the last one a table (`let t = T | where x`): it returns
  nothing, so the last let's name is added as the query (`…;\\nt`).

The mended query is the one checked, run and shown. Anything else stays as written, for the
validator and the repair loop to report.
"""

from __future__ import annotations

import duckdb_kql
from antlr4 import ParserRuleContext

from loom.engines.kql.tree import is_node, nodes, statements

MAX_MENDS = 20  # missing `;`s mended in one query


def tidy_kql(query: str) -> str:
    """`query` with the slips above mended; as written when it has neither (or does not parse)."""
    for _ in range(MAX_MENDS):
        mended = _semicolon(query)
        if mended is None:
            break
        query = mended
    try:
        tree = duckdb_kql.parse(query).tree
    except duckdb_kql.KqlError:
        return query
    name = _last_tabular_let(tree) if tree is not None else None
    return f"{query.rstrip().rstrip(';')};\n{name}" if name else query


def _semicolon(query: str) -> str | None:
    """The query with a `;` before the line where the parser wanted one, or None."""
    try:
        duckdb_kql.parse(query)
        return None
    except duckdb_kql.KqlSyntaxError as e:
        diagnostics = getattr(e, "diagnostics", None) or []
        if not diagnostics or "expecting {<EOF>, ';'}" not in diagnostics[0].message:
            return None
        line, column = diagnostics[0].span.line, diagnostics[0].span.column
    lines = query.split("\n")
    if column != 0 or not 1 < line <= len(lines) or not lines[line - 2].strip():
        return None
    lines[line - 2] = lines[line - 2].rstrip() + ";"
    return "\n".join(lines)


def _last_tabular_let(tree: ParserRuleContext) -> str | None:
    """The name of the last statement when it is a `let` of a tabular pipeline."""
    found = statements(tree)
    if not found:
        return None
    let = found[-1].getChild(0)
    if not is_node(let, "LetStatementContext"):
        return None
    declaration = let.getChild(0)
    if not is_node(declaration, "LetVariableDeclarationContext"):
        return None
    if next(nodes(declaration, "PipedOperatorContext"), None) is None:
        return None  # a scalar: there is no table to return
    return str(declaration.getChild(1).getText())
