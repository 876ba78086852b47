"""OData `$filter` expressions — what Azure AI Search takes — turned into a tantivy query for the
embedded index, so one filter means the same on both.

The expression is parsed by odata-query's grammar; the tree is then translated node by node, each
name checked against the index's fields: `eq`/`ne`/`gt`/`ge`/`lt`/`le`, `and`/`or`/`not`, `in`
(`dept in ('a', 'b')`), `search.in(dept, 'a,b')` and `tags/any(t: t eq 'x')`. Anything else is
refused, saying what: nothing is matched by a filter it did not understand.
"""

from __future__ import annotations

from difflib import get_close_matches

import tantivy
from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

from loom.engines.contracts import Problem, QueryError

MAX_FILTER_CHARS = 2_000
BUILT_IN = {"id": "text", "chunk_id": "text"}
Occur = tantivy.Occur
Scalar = str | int | float | bool


def filter_query(text: str, fields: dict[str, str], schema: tantivy.Schema) -> tantivy.Query:
    return _Translate({**fields, **BUILT_IN}, schema).node(parse_filter(text))


def parse_filter(text: str) -> ast._Node:
    """The OData expression's tree; `invalid_filter` when it is too long, empty or does not parse."""
    if len(text) > MAX_FILTER_CHARS:
        raise _refused(f"the filter is over {MAX_FILTER_CHARS:,} characters")
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(text))
    except (ODataException, ValueError, TypeError) as e:
        raise _refused(f"the filter does not parse as OData: {str(e).splitlines()[0][:200]}") from None
    if tree is None:
        raise _refused("the filter is empty")
    return tree


class _Translate:
    def __init__(self, fields: dict[str, str], schema: tantivy.Schema) -> None:
        self.fields, self.schema = fields, schema

    def node(self, node: ast._Node) -> tantivy.Query:
        if isinstance(node, ast.BoolOp):
            occur = Occur.Must if isinstance(node.op, ast.And) else Occur.Should
            return tantivy.Query.boolean_query(
                [(occur, self.node(node.left)), (occur, self.node(node.right))]
            )
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return _not(self.node(node.operand))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call) and node.func.namespace == ("search",) and node.func.name == "in":
            return self.search_in(node)
        if isinstance(node, ast.CollectionLambda) and isinstance(node.operator, ast.Any):
            return self.any(node)
        raise _refused(
            f"a filter may not use {type(node).__name__} here; use comparisons joined by and/or/not"
        )

    def compare(self, node: ast.Compare) -> tantivy.Query:
        name = self.name(node.left)
        if isinstance(node.comparator, ast.In):
            if not isinstance(node.right, ast.List):
                raise _refused(f"{name} in (…) takes a list of values")
            return _any_of([self.term(name, self.value(v, name)) for v in node.right.val])
        value = self.value(node.right, name)
        if isinstance(node.comparator, ast.Eq):
            return self.term(name, value)
        if isinstance(node.comparator, ast.NotEq):
            return _not(self.term(name, value))
        return self.range(name, node.comparator, value)

    def search_in(self, node: ast.Call) -> tantivy.Query:
        if len(node.args) not in (2, 3) or not isinstance(node.args[1], ast.String):
            raise _refused("search.in takes a field and a string of values: search.in(dept, 'a,b')")
        name = self.name(node.args[0])
        separators = (
            node.args[2].val if len(node.args) == 3 and isinstance(node.args[2], ast.String) else ", "
        )
        values = [v for v in _split(node.args[1].val, separators) if v]
        return _any_of([self.term(name, self.typed(v, name)) for v in values])

    def any(self, node: ast.CollectionLambda) -> tantivy.Query:
        name = self.name(node.owner)
        if node.lambda_ is None:
            return tantivy.Query.exists_query(name)
        variable = node.lambda_.identifier.name
        expression = node.lambda_.expression
        if not (isinstance(expression, ast.Compare) and isinstance(expression.comparator, ast.Eq)):
            raise _refused(f"{name}/any(…) takes one comparison: {name}/any(t: t eq 'x')")
        if not (isinstance(expression.left, ast.Identifier) and expression.left.name == variable):
            raise _refused(f"in {name}/any(…), compare the variable {variable}")
        return self.term(name, self.value(expression.right, name))

    def name(self, node: ast._Node) -> str:
        if not isinstance(node, ast.Identifier) or node.namespace:
            raise _refused("the left side of a comparison is a field name")
        if node.name not in self.fields:
            near = get_close_matches(node.name, sorted(self.fields), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            listed = ", ".join(sorted(set(self.fields) - {"chunk_id"}))
            raise QueryError(
                "unknown_field",
                f"the index has no field {node.name!r}{hint}. Filter only on its fields ({listed}), or "
                "search again without a filter.",
                [Problem(code="unknown_field", message=f"no field {node.name!r}", suggestions=near)],
            )
        return node.name

    def value(self, node: ast._Node, name: str) -> Scalar:
        if isinstance(node, ast.String | ast.Integer | ast.Float | ast.Boolean):
            return self.typed(node.val, name)
        raise _refused(f"{name} is compared with a value (a quoted string, a number, true or false)")

    def typed(self, raw: object, name: str) -> Scalar:
        kind = self.fields[name]
        try:
            if kind == "int":
                return int(str(raw))
            if kind == "float":
                return float(str(raw))
            if kind == "bool":
                return str(raw).lower() == "true"
        except ValueError:
            raise _refused(
                f"{name} holds {'integers' if kind == 'int' else 'numbers'}: {raw!r} is not one"
            ) from None
        return str(raw)

    def term(self, name: str, value: Scalar) -> tantivy.Query:
        return tantivy.Query.term_query(self.schema, name, value)

    def range(self, name: str, comparator: ast._Node, value: Scalar) -> tantivy.Query:
        kind = self.fields[name]
        if kind not in ("int", "float"):
            raise _refused(f"{name} holds text: compare it with eq, ne or in, not a range")
        field_type = tantivy.FieldType.Integer if kind == "int" else tantivy.FieldType.Float
        lower = value if isinstance(comparator, ast.Gt | ast.GtE) else None
        upper = value if isinstance(comparator, ast.Lt | ast.LtE) else None
        return tantivy.Query.range_query(
            self.schema, name, field_type, lower, upper,
            include_lower=not isinstance(comparator, ast.Gt),
            include_upper=not isinstance(comparator, ast.Lt),
        )  # fmt: skip


def _not(query: tantivy.Query) -> tantivy.Query:
    return tantivy.Query.boolean_query([(Occur.Must, tantivy.Query.all_query()), (Occur.MustNot, query)])


def _any_of(queries: list[tantivy.Query]) -> tantivy.Query:
    return (
        tantivy.Query.boolean_query([(Occur.Should, q) for q in queries])
        if queries
        else tantivy.Query.empty_query()
    )


def _split(text: str, separators: str) -> list[str]:
    out, current = [], ""
    for char in text:
        if char in separators:
            out.append(current)
            current = ""
        else:
            current += char
    return [*out, current]


def _refused(message: str) -> QueryError:
    return QueryError("invalid_filter", message)
