"""A KQL query's ranking made visible: the query that shows which of its rows tie.

The scorer forgives rows a gold query's ordering cannot tell apart (see `loom.evals.scoring`). For
SQL it rewrites the parsed ORDER BY; for KQL the last operator (`top N by k`, `sort by k1, k2`) is
rewritten on the syntax tree here: its keys become extra columns (`extend`) and the query sorts by
them, without `top`'s cut, so every tied row shows with its key.
"""

from __future__ import annotations

from antlr4 import ParserRuleContext

from loom.engines.contracts import QueryError
from loom.engines.kql.tree import children, last_operator
from loom.engines.kql.validator import ORDERING, parse_kql

TIE_KEY = "_loom_tie_key_"


def ranking_probe(query: str) -> tuple[str, int] | None:
    """The query re-written to rank without a cut, its sort keys appended as columns; with the
    number of keys. None when the query does not parse or does not end in `sort` or `top`."""
    try:
        tree = parse_kql(query)
    except QueryError:
        return None
    last = last_operator(tree)
    if last is None or type(last).__name__ not in ORDERING:
        return None
    keys = list(children(last, "OrderedExpressionContext"))
    extend = ", ".join(f"{TIE_KEY}{i} = {_text(query, k.getChild(0))}" for i, k in enumerate(keys))
    # An absent ordering keeps its default, which is the same for `sort` and `top` (desc, nulls last).
    order = ", ".join(f"{TIE_KEY}{i} {_ordering(query, k)}".rstrip() for i, k in enumerate(keys))
    head, tail = query[: last.start.start], query[last.stop.stop + 1 :]
    return f"{head}extend {extend} | sort by {order}{tail}", len(keys)


def _ordering(query: str, key: ParserRuleContext) -> str:
    ordering = next(children(key, "SortOrderingContext"), None)
    return _text(query, ordering) if ordering is not None and ordering.getChildCount() else ""


def _text(query: str, node: ParserRuleContext) -> str:
    """The node's own text as written (the tree's getText drops the spaces)."""
    return query[node.start.start : node.stop.stop + 1]
