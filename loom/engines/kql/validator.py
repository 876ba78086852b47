"""What a KQL query may do, decided on its syntax tree (Microsoft's grammar, through `duckdb-kql`).

Refused, each named with its position: management commands (`.show`, `.set-or-replace`, anything
that starts with a dot), `evaluate` plugins (they reach outside: `sql_request`, `http_request`,
Python), `externaldata` (reads a URL or file), `cluster()`/`database()` and the other references
to data outside the source, `set` statements (the query clock and options are the server's), and
the access-control statements. What passes is translated to SQL, which the SQL engine then checks
again by its own rules and against the catalog: this list makes the refusals clear, it is not the
only gate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import duckdb_kql
from antlr4 import ParserRuleContext
from duckdb_kql.control import is_control_command, strip_leading_comments

from loom.engines.contracts import Problem, QueryError
from loom.engines.kql.tree import is_node, last_operator, nodes, operator_of, statements
from loom.engines.sql.screen import MAX_QUERY_CHARS, too_complex

ORDERING = ("SortOperatorContext", "TopOperatorContext")  # the operators that leave rows in order
MAX_EXPECTED = 6  # tokens a syntax error lists before it says "or others"


@dataclass(frozen=True)
class _Refusal:
    code: str
    what: str
    why: str


_NODES = {
    "EvaluateOperatorContext": _Refusal(
        "forbidden_operator", "evaluate", "its plugins run code or reach services outside the source"
    ),
    "ExternalDataExpressionContext": _Refusal("file_access", "externaldata", "it reads files or URLs"),
    "MacroExpandOperatorContext": _Refusal(
        "cross_source", "macro-expand", "it reads entity groups outside the source"
    ),
    "SetStatementContext": _Refusal(
        "forbidden_syntax", "set", "the query clock and options are set by the server"
    ),
    "AliasDatabaseStatementContext": _Refusal("cross_source", "alias database", "it names another database"),
    "RestrictAccessStatementContext": _Refusal(
        "forbidden_syntax", "restrict access", "access is decided by the source"
    ),
}
# Functions that name data outside the source's tables.
_FUNCTIONS = frozenset(
    {
        "cluster",
        "database",
        "table",
        "external_table",
        "materialized_view",
        "entity_group",
        "stored_query_result",
    }
)


def parse_kql(query: str) -> ParserRuleContext:
    """The syntax tree of one query, or QueryError: too long, a management command, or a syntax
    error with its line and column."""
    if len(query) > MAX_QUERY_CHARS:
        raise too_complex(f"it has {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    if not strip_leading_comments(query).strip():
        raise QueryError("parse_error", "The query is empty.")
    if is_control_command(strip_leading_comments(query)):
        command = strip_leading_comments(query).split(None, 1)[0]
        raise QueryError(
            "not_read_only",
            f"{command} is a management command; only queries can run here (no command starting with '.').",
        )
    try:
        parsed = duckdb_kql.parse(query)
    except duckdb_kql.KqlSyntaxError as e:
        raise QueryError("parse_error", _syntax_message(e)) from e
    except RecursionError as e:  # the grammar recurses ~17 frames per nested parenthesis (probe 12)
        raise too_complex("it nests parentheses or calls too deeply for the KQL parser") from e
    if parsed.tree is None:
        raise QueryError("parse_error", "The query is empty.")
    return parsed.tree


def kql_problems(tree: ParserRuleContext) -> list[Problem]:
    """Everything in the tree that may not run, in the order written."""
    problems = [
        Problem(code=r.code, message=f"{r.what} (line {line}, column {column + 1}) is not allowed: {r.why}.")
        for r, line, column in _refusals(tree)
    ]
    return problems + _no_output(tree) + _misplaced_aggregations(tree)


# Aggregations, which KQL allows only where rows are grouped; elsewhere Kusto refuses the query,
# and duckdb-kql writes SQL that fails with a GROUP BY error the model cannot act on.
AGGREGATIONS = frozenset(
    {"count", "countif", "sum", "sumif", "avg", "avgif", "min", "max", "minif", "maxif", "dcount",
     "dcountif", "make_list", "make_set", "make_bag", "arg_max", "arg_min", "any", "take_any",
     "percentile", "percentiles", "stdev", "variance", "count_distinct"}
)  # fmt: skip
_GROUPING = frozenset(
    {"SummarizeOperatorContext", "MakeSeriesOperatorContext", "TopNestedOperatorContext",
     "EvaluateOperatorContext"}
)  # fmt: skip


def _misplaced_aggregations(tree: ParserRuleContext) -> list[Problem]:
    found = []
    for node in [*nodes(tree, "NamedFunctionCallExpressionContext"), *nodes(tree, "CountExpressionContext")]:
        name = "count" if is_node(node, "CountExpressionContext") else node.getChild(0).getText()
        found_in = operator_of(node)
        operator = type(found_in).__name__ if found_in is not None else None
        if name.lower() in AGGREGATIONS and operator is not None and operator not in _GROUPING:
            where = {"Sort": "order by"}.get(operator.removesuffix("OperatorContext"), operator[:-15].lower())
            found.append(
                Problem(
                    code="parse_error",
                    message=f"{name}() (line {node.start.line}, column {node.start.column + 1}) is an "
                    f"aggregation: it can be used only in summarize, not in {where}. After a summarize, "
                    f"refer to the column it made (e.g. `summarize n = {name}(…) by … | order by n`).",
                )
            )
    return found


def _no_output(tree: ParserRuleContext) -> list[Problem]:
    """A query of `let` statements only returns nothing (small models often stop there)."""
    found = statements(tree)
    if not found or not is_node(found[-1].getChild(0), "LetStatementContext"):
        return []
    name = found[-1].getChild(0).getChild(0).getChild(1).getText()
    return [
        Problem(
            code="parse_error",
            message=f"The query ends with `let {name} = …`, which returns nothing: end it with the "
            f"expression to return after a `;` (e.g. `…; {name}`).",
        )
    ]


def _refusals(node: ParserRuleContext) -> Iterator[tuple[_Refusal, int, int]]:
    refusal = _NODES.get(type(node).__name__) or _function_refusal(node)
    if refusal is not None:
        yield refusal, node.start.line, node.start.column
    for child in node.children or ():
        if isinstance(child, ParserRuleContext):
            yield from _refusals(child)


def function_calls(node: ParserRuleContext) -> Iterator[str]:
    """The name of every function the tree calls, in the order written."""
    if type(node).__name__ == "NamedFunctionCallExpressionContext":
        yield node.getChild(0).getText()
    for child in node.children or ():
        if isinstance(child, ParserRuleContext):
            yield from function_calls(child)


def _function_refusal(node: ParserRuleContext) -> _Refusal | None:
    if type(node).__name__ != "NamedFunctionCallExpressionContext":
        return None
    name = node.getChild(0).getText()
    if name.lower() not in _FUNCTIONS:
        return None
    return _Refusal("cross_source", f"{name}()", "queries read only this source's own tables")


def _syntax_message(error: duckdb_kql.KqlSyntaxError) -> str:
    """The first diagnostic, with its position, its list of expected tokens cut short."""
    diagnostics = getattr(error, "diagnostics", None) or []
    if not diagnostics:
        return f"KQL syntax error: {error}"
    first = diagnostics[0]
    return (
        f"KQL syntax error at line {first.span.line}, column {first.span.column + 1}: {_short(first.message)}"
    )


def _short(message: str) -> str:
    head, brace, rest = message.partition(" expecting {")
    if not brace:
        return message
    expected = [t.strip() for t in rest.rstrip("}").split(",")]
    if len(expected) <= MAX_EXPECTED:
        return message
    return f"{head} expecting {', '.join(expected[:MAX_EXPECTED])} or {len(expected) - MAX_EXPECTED} others"


def ends_ordered(query: str) -> bool:
    """Whether the query's result is in a defined order: its last operator sorts (`order by`,
    `sort by`, `top`). False for a query that does not parse."""
    try:
        tree = parse_kql(query)
    except QueryError:
        return False
    return type(last_operator(tree)).__name__ in ORDERING
