"""Gremlin strings as people and models write them: parsed into one tree (with positions), checked
for reads only by step name, and rendered in the form the embedded engine takes."""

from __future__ import annotations

import pytest

from loom.engines.graph.gremlin import GremlinSyntaxError, parse, render
from loom.engines.graph.validate import validate_gremlin


@pytest.mark.parametrize(
    ("written", "rendered"),
    [
        (
            "g.V().has('code','AUS').out('route').values('city')",
            'g.V().has("code", "AUS").out("route").values("city")',
        ),
        # Bare anonymous steps, Groovy's number suffix, a terminal step:
        (
            "g.V(3).repeat(out('route').simplePath()).times(2L).path().by('code').toList()",
            'g.V(3).repeat(__.out("route").simplePath()).times(2).path().by("code")',
        ),
        # Bare enums and predicates, joined predicates, TextP:
        (
            "g.V().order().by('runways', desc).by(label)",
            'g.V().order().by("runways", Order.desc).by(T.label)',
        ),
        ("g.V().has('x', gt(3).and(lt(5.5d)))", 'g.V().has("x", P.gt(3).and(P.lt(5.5)))'),
        ("g.V().has('desc', containing('Intl'))", 'g.V().has("desc", TextP.containing("Intl"))'),
        ("g.V().has('code', P.within('AUS','DFW'))", 'g.V().has("code", P.within("AUS", "DFW"))'),
        # Lists, maps and quotes inside strings:
        ("g.inject([1, -2], ['a': 1], [:], \"it's\")", 'g.inject([1, -2], #{a: 1}, #{}, "it\'s")'),
        ("g.V().sack(sum).by(values)", "g.V().sack(Operator.sum).by(Column.values)"),
    ],
)
def test_the_forms_people_write_render_as_the_engine_takes_them(written: str, rendered: str) -> None:
    assert render(parse(written)) == rendered


@pytest.mark.parametrize(
    ("query", "problem", "at"),
    [
        ("g.V().map{it.get()}", "a lambda or closure after 'map' is not allowed", 9),
        ("g.V().has('x', { a -> a })", "a lambda or closure is not allowed", 15),
        ("g.V().has('x',", "does not parse", 14),
        ("g.V().has('x') + 1", "unexpected '+' after the traversal", 15),
        ("g.V().out", "expected '(' after the step 'out'", 9),
        ("g.V().has(b'x')", "not a plain quoted string", 10),
    ],
)
def test_what_does_not_parse_says_where(query: str, problem: str, at: int) -> None:
    with pytest.raises(GremlinSyntaxError) as failed:
        parse(query)
    assert problem in failed.value.message and failed.value.at == at


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("g.addV('person').property('name', 'x')", "not_a_traversal"),
        ("g.V().addV('x').limit(0)", "not_read_only"),  # a write inside a read still writes
        ("g.V().has('code','AUS').property('x', 1)", "not_read_only"),
        ("g.V().drop().iterate()", "not_read_only"),
        ("g.V().where(__.sideEffect(__.drop()))", "not_read_only"),  # nested, found the same
        ("g.with('evaluationTimeout', 0).V()", "not_a_traversal"),  # the time limit is ours
        ("g.io('/etc/passwd').read()", "not_a_traversal"),
        ("g.V().eval('1')", "unknown_step"),  # the engine's script functions are not steps
        ("out('route')", "not_a_traversal"),
        ("g.V().next().count()", "parse_error"),
    ],
)
def test_only_reads_pass_named_by_their_step(query: str, code: str) -> None:
    _, problems = validate_gremlin(query)
    assert code in [p.code for p in problems]


def test_an_unknown_step_is_refused_with_the_closest_names() -> None:
    _, [problem] = validate_gremlin("g.V().outt('route')")
    assert problem.code == "unknown_step" and "out" in problem.suggestions
    assert "at character 7" in problem.message


def test_reads_pass() -> None:
    for query in (
        "g.V().hasLabel('airport').groupCount().by('country')",
        "g.V(3).as('a').out().where(neq('a')).path()",
        "g.V().has('code','AUS').out('route').has('code','DFW').hasNext()",
        "g.withSack(0).V(3).outE().sack(sum).by('dist').sack()",
    ):
        assert validate_gremlin(query)[1] == [], query
