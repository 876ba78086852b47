"""How long duckdb-kql's SQL for a query will be, estimated before it is written.

duckdb-kql writes an expression's SQL by pasting its operands into templates, some of them many
times: `tostring(x)` and `strcat(x, …)` repeat `x` eight times (a CASE over its runtime type),
`substring(x, …)` 24 times, and a scalar `let` is pasted wherever it is used. Nested, that is
exponential: probe 11 wrote `print x = strcat(strcat(…9 levels…))` in 91 bytes and the
translation built gigabytes of SQL, holding the interpreter of the engine's process — and every
other tenant's query in it — for 30 s (R11-4); probe 10 did the same with a chain of lets.

So each expression's size is computed bottom up before translating: an expression with its
sub-expressions and names replaced by placeholders is a small template duckdb-kql translates
quickly (remembered per template), and the placeholders it repeats say how often each part is
pasted. A query whose estimate passes `MAX_ESTIMATED_CHARS` is refused before duckdb-kql runs.
The estimate need not be exact: the SQL screen still holds the translation to its own limit; this
only keeps the translator from ever building what the screen would refuse a thousand times over.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import duckdb_kql
from antlr4 import ParserRuleContext

from loom.engines.kql.tree import nodes, statements, text
from loom.engines.sql.screen import too_complex

MAX_ESTIMATED_CHARS = 4_000_000  # ~40x the screen's room for a translation, built in well under 1 s
UNKNOWN_FACTOR = 8  # how often a part is assumed pasted when its template does not translate alone

_EXPRESSION = "UnnamedExpressionContext"
_NAME = "NameReferenceWithDataScopeContext"
_CALL = "NamedFunctionCallExpressionContext"


def check_expansion(tree: ParserRuleContext, query: str) -> None:
    """QueryError `too_complex` when the query's SQL would be longer than `MAX_ESTIMATED_CHARS`."""
    estimate = _Estimate(query)
    total = 0
    for statement in statements(tree):
        total += estimate.statement(statement)
        if total > MAX_ESTIMATED_CHARS:
            raise too_complex(
                f"its translation to SQL would be about {total:,} characters or more (each nested "
                f"strcat(), tostring() or pasted let multiplies it); the limit is {MAX_ESTIMATED_CHARS:,}"
            )


@dataclass
class _Estimate:
    query: str
    scalars: dict[str, int] = field(default_factory=dict)  # let name → the size pasted where used
    functions: dict[str, _Function] = field(default_factory=dict)  # let function → its body's size

    def statement(self, statement: ParserRuleContext) -> int:
        function = next(nodes(statement, "LetFunctionDeclarationContext"), None)
        if function is not None:
            self.functions[_declared(function)] = body = self.function(function)
            return body.base
        size = sum(self.size(e) for e in _top_expressions(statement))
        variable = next(nodes(statement, "LetVariableDeclarationContext"), None)
        if variable is not None and next(nodes(variable, "PipedOperatorContext"), None) is None:
            self.scalars[_declared(variable)] = size  # a scalar: pasted where used (a pipeline is a CTE)
        return size

    def function(self, declaration: ParserRuleContext) -> _Function:
        """The body's size as a function of its parameters' sizes. duckdb-kql pastes each argument
        wherever its parameter is used (probe 12: a parameter used 32 times), and the estimate is
        linear in the sizes of the parts, so one estimate per parameter, with that parameter made
        longer, gives how much each one weighs."""
        parameters = [p.getText() for p in nodes(declaration, "ParameterNameContext")]
        body = list(_top_expressions(declaration))
        outer = dict(self.scalars)
        try:
            self.scalars.update(dict.fromkeys(parameters, 1))
            base = sum(self.size(e) for e in body)
            weights = []
            for name in parameters:
                self.scalars[name] = 1 + _PROBE
                weights.append(max((sum(self.size(e) for e in body) - base) // _PROBE, 1))
                self.scalars[name] = 1
        finally:
            self.scalars = outer
        return _Function(base, tuple(weights))

    def size(self, expression: ParserRuleContext) -> int:
        parts = list(self.parts(expression))
        if not parts:
            return len(text(expression, self.query))
        template, cursor = [], expression.start.start
        for i, (node, _) in enumerate(parts):
            template += [self.query[cursor : node.start.start], f"__p{i}"]
            cursor = node.stop.stop + 1
        template.append(self.query[cursor : expression.stop.stop + 1])
        base, factors = _measure("".join(template), len(parts))
        return base + sum(f * size for f, (_, size) in zip(factors, parts, strict=True))

    def parts(self, node: ParserRuleContext) -> Iterator[tuple[ParserRuleContext, int]]:
        """Each sub-expression, name and call of a let function directly in `node`, with its size."""
        for child in node.children or ():
            if not isinstance(child, ParserRuleContext):
                continue
            kind = type(child).__name__
            if kind == _EXPRESSION:
                yield child, self.size(child)
            elif kind == _NAME:
                yield child, self.scalars.get(child.getText(), len(child.getText()))
            elif kind == _CALL and child.getChild(0).getText() in self.functions:
                yield child, self.call(self.functions[child.getChild(0).getText()], child)
            else:
                yield from self.parts(child)

    def call(self, function: _Function, call: ParserRuleContext) -> int:
        arguments = [self.size(e) for e in _top_expressions(call)]
        weights = list(function.weights) + [UNKNOWN_FACTOR] * max(len(arguments) - len(function.weights), 0)
        return function.base + sum(w * a for w, a in zip(weights, arguments, strict=False))


@dataclass(frozen=True)
class _Function:
    base: int  # the body's size with every parameter one character long
    weights: tuple[int, ...]  # per parameter: how many times its argument is pasted


_PROBE = 1_000  # how much longer a parameter is made to weigh it


def _declared(node: ParserRuleContext) -> str:
    return str(node.getChild(1).getText())  # let NAME = …


def _top_expressions(node: ParserRuleContext) -> Iterator[ParserRuleContext]:
    """The outermost expressions under `node`."""
    for child in node.children or ():
        if isinstance(child, ParserRuleContext):
            if type(child).__name__ == _EXPRESSION:
                yield child
            else:
                yield from _top_expressions(child)


@lru_cache(maxsize=4096)
def _measure(template: str, parts: int) -> tuple[int, tuple[int, ...]]:
    """(characters of SQL besides the parts, how often each part is pasted) for one template."""
    schema = {"__e": [f"__p{i}" for i in range(parts)]}
    sql = _translated(f"__e | project __x = {template}", schema) or _translated(
        f"__e | summarize __x = {template}",
        schema,  # an aggregation
    )
    if sql is None:  # a template alone may not type-check: assume the worst
        return UNKNOWN_FACTOR * len(template), (UNKNOWN_FACTOR,) * parts
    factors = tuple(max(sql.count(f'"__p{i}"'), 1) for i in range(parts))
    pasted = sum(f * len(f'"__p{i}"') for i, f in enumerate(factors))
    return max(len(sql) - pasted, 0), factors


def _translated(kql: str, schema: dict[str, list[str]]) -> str | None:
    try:
        return str(duckdb_kql.to_sql(kql, schema=schema, allow_write=False))
    except Exception:  # a template that cannot be translated alone, for whatever reason
        return None
