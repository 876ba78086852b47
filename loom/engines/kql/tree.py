"""Reading duckdb-kql's syntax tree (Microsoft's grammar, ANTLR contexts): the helpers the
operators written here (`make-series`, `top-nested`) share, and the `Translate` they call back.

Those operators are translated in parts, each part a small KQL query duckdb-kql translates; the
tree tells where each part starts and ends in the query's text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from antlr4 import ParserRuleContext
from sqlglot import exp

from loom.engines.contracts import QueryError

# KQL text, and extra tables' columns → the translated SQL tree (bound, table names not yet mapped).
Translate = Callable[[str, dict[str, list[str]]], exp.Expr]

# Where an operator on the query's own pipeline sits: nothing nested (a let, a join, a union).
_TOP_LEVEL = frozenset(
    {"AfterPipeOperatorContext", "PipedOperatorContext", "PipeExpressionContext", "ExpressionContext",
     "QueryStatementContext", "StatementContext", "QueryContext", "TopContext"}
)  # fmt: skip


def only_on_top(tree: ParserRuleContext, name: str, what: str) -> ParserRuleContext | None:
    """The operator node called `name` when the query has one on its own pipeline; QueryError
    when it has more than one, or one nested where the parts could not be translated."""
    node = next(nodes(tree, name), None)
    if node is None:
        return None
    if next(nodes(node, name, skip_self=True), None) is not None or not _on_top(node):
        raise QueryError(
            "unsupported",
            f"{what} is supported once per query, on the query's own pipeline (not inside a let, "
            f"a join or a union): write it as the query's own step.",
        )
    return node


def statement(node: ParserRuleContext) -> ParserRuleContext:
    """The statement the node is in (after the query's `let` statements)."""
    parent = node.parentCtx
    while type(parent).__name__ != "StatementContext":
        parent = parent.parentCtx
    return parent


def _on_top(node: ParserRuleContext) -> bool:
    parent = node.parentCtx
    while parent is not None:
        if type(parent).__name__ not in _TOP_LEVEL:
            return False
        parent = parent.parentCtx
    return True


def statements(tree: ParserRuleContext) -> list[ParserRuleContext]:
    """The query's statements in order: its `let`s, then the query itself."""
    return [s for query in nodes(tree, "QueryContext") for s in children(query, "StatementContext")]


def last_operator(tree: ParserRuleContext) -> ParserRuleContext | None:
    """The last tabular operator on the query's own pipeline (after its `let`s); None for none."""
    found = statements(tree)
    operators = list(nodes(found[-1], "AfterPipeOperatorContext")) if found else []
    return operators[-1].getChild(0) if operators else None


def operator_of(node: ParserRuleContext) -> ParserRuleContext | None:
    """The tabular operator (`where`, `summarize`…) an expression is in; None outside one."""
    parent = node.parentCtx
    while parent is not None:
        kind = type(parent).__name__
        if kind.endswith("OperatorContext") and kind != "AfterPipeOperatorContext":
            return parent
        parent = parent.parentCtx
    return None


def is_node(node: object, name: str) -> bool:
    return type(node).__name__ == name


def children(node: ParserRuleContext | None, name: str) -> Iterator[ParserRuleContext]:
    return (c for c in (node.children or ()) if type(c).__name__ == name) if node is not None else iter(())


def nodes(node: ParserRuleContext, name: str, skip_self: bool = False) -> Iterator[ParserRuleContext]:
    if type(node).__name__ == name and not skip_self:
        yield node
    for child in node.children or ():
        if isinstance(child, ParserRuleContext):
            yield from nodes(child, name)


def text(node: ParserRuleContext, query: str) -> str:
    return query[node.start.start : node.stop.stop + 1]


def sql(tree: exp.Expr) -> str:
    """As DuckDB SQL: sqlglot's default dialect counts list indexes from 0, DuckDB's from 1."""
    return tree.sql("duckdb")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scalar(kql: str, translate: Translate) -> exp.Expr:
    """One scalar KQL expression as SQL (`1d` → `INTERVAL '1d'`, a scalar `let` → its value)."""
    tree = translate(f"print __v = {kql}", {})
    # The select that names __v: a tabular `let` before it is translated as a CTE of its own.
    value = next(
        e for select in tree.find_all(exp.Select) for e in select.expressions if e.alias_or_name == "__v"
    )
    return value.this if isinstance(value, exp.Alias) else value
