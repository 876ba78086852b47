"""Spider's hardness levels (easy, medium, hard, extra) for a query, re-implemented over sqlglot.

Spider's `evaluation.py` (`Evaluator.eval_hardness`) parses a gold query with its own `process_sql`
and counts, in the outermost SELECT only:

- **component 1**: one each for WHERE, GROUP BY, ORDER BY and LIMIT; one per JOIN; one per OR and
  one per LIKE among the conditions of the JOIN … ON, WHERE and HAVING clauses;
- **component 2**: one per subquery used as a value in those conditions (`x IN (SELECT …)`,
  `x > (SELECT …)`), plus one when the query is a UNION / INTERSECT / EXCEPT;
- **others**: one each for more than one aggregate, more than one selected expression, more than
  one WHERE condition, more than one GROUP BY key.

and reads the level off them (`level`). Its parser's quirks are kept, because the labels are meant to
equal the official ones:

- of a set operation, the left-most SELECT is "the query"; the ORDER BY / LIMIT of the whole set
  operation belong, in `process_sql`, to its last SELECT, so they are not counted;
- a subquery in FROM counts as a joined table, not as component 2;
- the aggregate count reads the first field of each WHERE and HAVING condition, which is its NOT
  flag, not an aggregate: so a `NOT IN` / `NOT LIKE` / `NOT BETWEEN` in WHERE or HAVING counts as an
  aggregate, `HAVING count(*) > 1` does not, and each AND/OR joining HAVING conditions does.

A select item counts as an aggregate when it is MAX/MIN/COUNT/SUM/AVG of something (Spider's five);
ORDER BY keys count every such function in the key (`ORDER BY sum(a) - sum(b)`: two).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp, parse_one

Level = Literal["easy", "medium", "hard", "extra"]
LEVELS: tuple[Level, ...] = ("easy", "medium", "hard", "extra")
AGGREGATES = (exp.Max, exp.Min, exp.Count, exp.Sum, exp.Avg)


@dataclass(frozen=True)
class Counts:
    component1: int
    component2: int
    others: int


def hardness(query: str, dialect: str = "sqlite") -> Level:
    """The Spider hardness of `query`; sqlglot's ParseError when it does not parse."""
    return level(counts(parse_one(query, read=dialect)))


def level(c: Counts) -> Level:
    """Spider's thresholds, in its order."""
    c1, c2, others = c.component1, c.component2, c.others
    if c1 <= 1 and others == 0 and c2 == 0:
        return "easy"
    if (others <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and others < 2 and c2 == 0):
        return "medium"
    if (
        (others > 2 and c1 <= 2 and c2 == 0)
        or (2 < c1 <= 3 and others <= 2 and c2 == 0)
        or (c1 <= 1 and others == 0 and c2 <= 1)
    ):
        return "hard"
    return "extra"


def counts(tree: exp.Expr) -> Counts:
    tree = _unwrap(tree)
    select = _leftmost(tree)
    conditions = _Conditions.of(select)
    component1 = (
        sum(select.args.get(k) is not None for k in ("where", "group", "order", "limit"))
        + len(select.args.get("joins") or [])
        + conditions.ors
        + sum(isinstance(_unnot(leaf), exp.Like) for leaf in conditions.leaves)
    )
    component2 = sum(len(list(_subqueries(leaf))) for leaf in conditions.leaves) + isinstance(
        tree, exp.SetOperation
    )
    return Counts(component1, component2, _others(select))


def _unwrap(tree: exp.Expr) -> exp.Expr:
    while isinstance(tree, exp.Subquery | exp.Paren):
        tree = tree.this
    return tree


def _leftmost(tree: exp.Expr) -> exp.Select:
    while isinstance(tree, exp.SetOperation):
        tree = _unwrap(tree.this)
    if not isinstance(tree, exp.Select):
        raise ValueError(f"not a SELECT: {tree.sql()[:80]}")
    return tree


def _unnot(node: exp.Expr) -> exp.Expr:
    return node.this if isinstance(node, exp.Not) else node


@dataclass(frozen=True)
class _Conditions:
    """The conditions of JOIN … ON, WHERE and HAVING as `process_sql` lists them: leaves joined by
    AND/OR (a BETWEEN is one leaf)."""

    leaves: list[exp.Expr]
    ors: int
    where: list[exp.Expr]
    having: list[exp.Expr]
    having_connectives: int

    @classmethod
    def of(cls, select: exp.Select) -> _Conditions:
        on = [j.args["on"] for j in select.args.get("joins") or [] if j.args.get("on") is not None]
        where, having = _clause(select, "where"), _clause(select, "having")
        parts = [_flatten(c) for c in [*on, *where, *having]]
        leaves = [leaf for found, _ in parts for leaf in found]
        ors = sum(o for _, o in parts)
        where_leaves = [leaf for c in where for leaf in _flatten(c)[0]]
        having_leaves = [leaf for c in having for leaf in _flatten(c)[0]]
        return cls(leaves, ors, where_leaves, having_leaves, max(len(having_leaves) - 1, 0))


def _clause(select: exp.Select, name: str) -> list[exp.Expr]:
    clause = select.args.get(name)
    return [clause.this] if clause is not None else []


def _flatten(condition: exp.Expr) -> tuple[list[exp.Expr], int]:
    """The leaves of an AND/OR tree (through parentheses), and how many ORs join them."""
    condition = _unwrap(condition) if isinstance(condition, exp.Paren) else condition
    if isinstance(condition, exp.And | exp.Or):
        left, left_ors = _flatten(condition.this)
        right, right_ors = _flatten(condition.expression)
        return left + right, left_ors + right_ors + isinstance(condition, exp.Or)
    return [condition], 0


def _subqueries(node: exp.Expr) -> Iterator[exp.Expr]:
    """The subqueries directly inside a condition (not those nested in them)."""
    for child in node.walk(prune=lambda n: n is not node and isinstance(n, exp.Query | exp.Subquery)):
        if child is not node and isinstance(child, exp.Query | exp.Subquery):
            yield child


def _aggregates(node: exp.Expr) -> int:
    own = node.walk(prune=lambda n: n is not node and isinstance(n, exp.Query | exp.Subquery))
    return sum(isinstance(n, AGGREGATES) for n in own)


def _others(select: exp.Select) -> int:
    conditions = _Conditions.of(select)
    group = select.args.get("group")
    keys = list(group.expressions) if group is not None else []
    order = select.args.get("order")
    aggregates = (
        sum(isinstance(e.unalias(), AGGREGATES) for e in select.expressions)
        + sum(isinstance(leaf, exp.Not) for leaf in conditions.where)  # Spider reads the NOT flag
        + sum(_aggregates(k) for k in keys)
        + (sum(_aggregates(o.this) for o in order.expressions) if order is not None else 0)
        + sum(isinstance(leaf, exp.Not) for leaf in conditions.having)
        + conditions.having_connectives  # and each 'and'/'or' between HAVING conditions
    )
    return (aggregates > 1) + (len(select.expressions) > 1) + (len(conditions.where) > 1) + (len(keys) > 1)
