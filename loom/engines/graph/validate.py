"""What a Gremlin query may do: read. Decided on the parsed tree (`gremlin.parse`), never on text.

The embedded engine's scripts are Rhai, where `x.f(y)` calls any function `f` registered for `x`,
and a mutating step inside a read (`g.V().addV('x').limit(0)`) really writes. So steps are let
through by name from TinkerPop's read steps only — anything else is refused, a mutating step
saying so — and the engine runs under its own read-only policy as a second wall.
"""

from __future__ import annotations

from difflib import get_close_matches

from loom.engines.contracts import Problem
from loom.engines.graph.gremlin import GremlinSyntaxError, Literal, Traversal, parse

# Steps that write, run code, reach files, or change how the engine evaluates (a query's own
# `with('evaluationTimeout', 0)` would lift the time limit).
WRITES = frozenset(
    {"addV", "addE", "property", "drop", "mergeV", "mergeE", "sideEffect", "io", "program", "call",
     "with", "withComputer", "withStrategies", "withoutStrategies", "withSideEffect", "withBulk",
     "withPath", "iterate", "subgraph", "write", "read", "tx"}
)  # fmt: skip
SOURCES = frozenset({"V", "E", "inject", "withSack"})
READS = frozenset(
    {"V", "E", "aggregate", "all", "and", "any", "as", "asDate", "asString", "barrier", "both",
     "bothE", "bothV", "branch", "by", "cap", "choose", "coalesce", "coin", "combine", "concat",
     "conjoin", "constant", "count", "cyclicPath", "dateAdd", "dateDiff", "dedup", "difference",
     "discard", "disjunct", "element", "elementMap", "emit", "filter", "flatMap", "fold", "format",
     "from", "group", "groupCount", "has", "hasId", "hasKey", "hasLabel", "hasNot", "hasValue", "id",
     "identity", "in", "inE", "inV", "index", "inject", "intersect", "is", "key", "label", "length",
     "limit", "local", "loops", "lTrim", "map", "math", "max", "mean", "merge", "min", "none", "not",
     "option", "optional", "or", "order", "otherV", "out", "outE", "outV", "path", "product",
     "profile", "project", "properties", "propertyMap", "range", "repeat", "replace", "reverse",
     "rTrim", "sack", "sample", "select", "simplePath", "skip", "split", "store", "substring", "sum",
     "tail", "times", "to", "toLower", "toUpper", "tree", "trim", "unfold", "union", "until",
     "value", "valueMap", "values", "where", "withSack", "explain"}
)  # fmt: skip
TERMINALS = frozenset({"toList", "toSet", "next", "hasNext", "toBulkSet"})


def validate_gremlin(query: str) -> tuple[Traversal | None, list[Problem]]:
    """The parsed query and why it may not run (nothing: it may)."""
    try:
        traversal = parse(query)
    except GremlinSyntaxError as e:
        return None, [Problem(code="parse_error", message=f"{e.message} (at character {e.at + 1})")]
    return traversal, _problems(traversal)


def _problems(traversal: Traversal) -> list[Problem]:
    problems: list[Problem] = []
    if traversal.source != "g":
        problems.append(Problem(code="not_a_traversal", message="a query starts with g.V() or g.E()"))
    elif traversal.steps[0].name not in SOURCES:
        first = traversal.steps[0]
        problems.append(
            Problem(
                code="not_a_traversal", message=f"g.{first.name}(…) is not a read: start with g.V() or g.E()"
            )
        )
    for i, step in enumerate(traversal.steps):
        if step.name in TERMINALS and i != len(traversal.steps) - 1:
            problems.append(
                Problem(code="parse_error", message=f"{step.name}() ends a query; nothing follows it")
            )
    for step in traversal.walk():
        problems.extend(_step_problem(step.name, step.at))
    return problems


def _step_problem(name: str, at: int) -> list[Problem]:
    if name in WRITES:
        return [
            Problem(
                code="not_read_only",
                message=f"{name}() (at character {at + 1}) is not a read: only traversals that read run",
            )
        ]
    if name in READS or name in TERMINALS:
        return []
    near = get_close_matches(name, sorted(READS), n=3)
    return [
        Problem(
            code="unknown_step",
            message=f"{name}() (at character {at + 1}) is not a Gremlin step",
            suggestions=near,
        )
    ]


EDGE_STEPS = frozenset({"out", "in", "both", "outE", "inE", "bothE"})
KEY_STEPS = frozenset({"values", "valueMap", "properties", "elementMap", "hasKey", "hasNot", "propertyMap"})


def named_in(traversal: Traversal) -> tuple[set[str], set[str], set[str]]:
    """(vertex or edge labels, edge labels, property keys) the traversal names as plain strings."""
    labels: set[str] = set()
    edges: set[str] = set()
    keys: set[str] = set()
    for step in traversal.walk():
        texts = [a.value for a in step.args if isinstance(a, Literal) and isinstance(a.value, str)]
        if step.name == "hasLabel":
            labels.update(texts)
        elif step.name in EDGE_STEPS:
            edges.update(texts)
        elif step.name in KEY_STEPS:
            keys.update(texts)
        elif step.name == "has" and step.args and isinstance(step.args[0], Literal):
            first = step.args[0].value
            if len(step.args) == 3 and isinstance(first, str):
                labels.add(first)
                second = step.args[1]
                if isinstance(second, Literal) and isinstance(second.value, str):
                    keys.add(second.value)
            elif isinstance(first, str):
                keys.add(first)
    return labels, edges, keys


def unknown_name(kind: str, name: str, known: set[str]) -> Problem:
    """`unknown_label`, `unknown_edge_label` or `unknown_property`, with the closest names."""
    near = get_close_matches(name, sorted(known), n=3)
    hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    code = "unknown_" + kind.replace(" ", "_")
    return Problem(code=code, message=f"the graph has no {kind} {name!r}{hint}", suggestions=near)
