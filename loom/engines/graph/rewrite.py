"""Gremlin the embedded engine reads differently, rewritten to what it reads the same way.

graphersal's `select('FR', 'GR')` looks only for step labels, so selecting keys of a map —
`groupCount().by('country').select('FR','GR','BE')`, one of the air-routes book's queries — fails
("Step label 'FR' is never declared"). Where no step of the query declares those names (`as`,
`aggregate`, `store`, a named `group`/`groupCount`) and no `by` follows, the select reads the map:
its entries, those keys kept, as a map again (one key: its value).
"""

from __future__ import annotations

from dataclasses import replace

from loom.engines.graph.gremlin import Arg, Enum, Literal, Predicate, Step, Traversal

# Steps whose string argument names something a later `select` may read.
DECLARING = frozenset({"as", "aggregate", "store", "group", "groupCount", "sideEffect", "tree", "cap"})


def for_engine(traversal: Traversal) -> Traversal:
    """`traversal` with each select of map keys written as the engine reads it."""
    declared: set[object] = {
        a.value for s in traversal.walk() if s.name in DECLARING for a in s.args if isinstance(a, Literal)
    }
    return _rewritten(traversal, declared)


def _rewritten(traversal: Traversal, declared: set[object]) -> Traversal:
    steps: list[Step] = []
    for i, step in enumerate(traversal.steps):
        step = replace(step, args=[_arg(a, declared) for a in step.args])
        following = traversal.steps[i + 1].name if i + 1 < len(traversal.steps) else ""
        steps.append(_map_select(step) if _selects_map_keys(step, following, declared) else step)
    return replace(traversal, steps=steps)


def _arg(arg: Arg, declared: set[object]) -> Arg:
    if isinstance(arg, Traversal):
        return _rewritten(arg, declared)
    return arg


def _selects_map_keys(step: Step, following: str, declared: set[object]) -> bool:
    keys = [a for a in step.args if isinstance(a, Literal) and isinstance(a.value, str)]
    return (
        step.name == "select"
        and bool(keys)
        and len(keys) == len(step.args)
        and following != "by"
        and not any(k.value in declared for k in keys)
    )


def _map_select(step: Step) -> Step:
    at = step.at
    keys = step.args

    def anon(*steps: Step) -> Traversal:
        return Traversal("__", list(steps), at)

    def call(name: str, *args: Arg) -> Step:
        return Step(name, list(args), at)

    column = Enum("keys", "Column", at)
    kept = Predicate("within", "P", list(keys), at) if len(keys) > 1 else keys[0]
    entries = [call("unfold"), call("filter", anon(call("select", column), call("is", kept)))]
    if len(keys) == 1:
        inner = anon(*entries, call("select", Enum("values", "Column", at)))
    else:
        by_key = anon(call("select", column))
        by_value = anon(call("select", Enum("values", "Column", at)))
        inner = anon(*entries, call("group"), call("by", by_key), call("by", by_value))
    return call("local", inner)


MAX_REPEAT = 10  # hops a repeat() with neither times() nor until() may take
MODULATORS = frozenset({"emit", "times", "until"})


def bounded_repeats(traversal: Traversal) -> Traversal:
    """`traversal` with `times(MAX_REPEAT)` after each repeat() that has neither times() nor
    until() among the modulators beside it: an unbounded walk of a cyclic graph never ends. The
    query shown with the result carries the bound, so the user sees where it stopped."""
    steps: list[Step] = []
    for i, step in enumerate(traversal.steps):
        steps.append(
            replace(step, args=[bounded_repeats(a) if isinstance(a, Traversal) else a for a in step.args])
        )
        if step.name == "repeat" and not _bounded(traversal.steps, i):
            steps.append(Step("times", [Literal(MAX_REPEAT, step.at)], step.at))
    return replace(traversal, steps=steps)


def _bounded(steps: list[Step], at: int) -> bool:
    """Whether the repeat at `at` has times() or until() just before or after it."""
    near: list[str] = []
    for side in (reversed(steps[:at]), steps[at + 1 :]):
        for step in side:
            if step.name not in MODULATORS:
                break
            near.append(step.name)
    return "times" in near or "until" in near
