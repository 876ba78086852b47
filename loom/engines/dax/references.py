"""Which measures an expression refers to: for the model's cycle check and for telling the user
which measures an answer used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loom.engines.contracts import QueryError
from loom.engines.dax.parser import parse_expression
from loom.engines.dax.syntax import Bracket, Node

if TYPE_CHECKING:
    from loom.engines.dax.model import SemanticModel


def walk(node: object) -> list[Node]:
    """Every node under `node` (itself first), in the order written."""
    found: list[Node] = []
    stack: list[object] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            stack.extend(reversed(item))
        elif isinstance(item, Node):
            found.append(item)
            stack.extend(reversed([getattr(item, f) for f in item.__dataclass_fields__ if f != "pos"]))
    return found


def bracket_names(node: Node) -> list[str]:
    return [n.name for n in walk(node) if isinstance(n, Bracket)]


def measure_references(expression: str, model: SemanticModel) -> list[str]:
    """The lower-case names of the model's measures the expression names (empty when it does not
    parse: the query that uses the measure reports that)."""
    try:
        tree = parse_expression(expression)
    except QueryError:
        return []
    return list(dict.fromkeys(n.lower() for n in bracket_names(tree) if n.lower() in model.measures))
