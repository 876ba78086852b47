"""The DAX syntax tree: what `parser.py` builds and the compiler walks.

Names are kept as written; DAX compares them without regard to case, and the binder (`model.py`)
does so too. A bracketed name alone (`[Revenue]`) may be a measure or a column of the row being
iterated: the parser cannot tell, so it is a `Bracket` until the compiler resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Node:
    pos: int = field(default=0, compare=False, kw_only=True)  # offset in the query text


@dataclass(frozen=True)
class Number(Node):
    value: int | float
    text: str  # as written: `1.50` is a decimal, `2` an integer


@dataclass(frozen=True)
class Text(Node):
    value: str


@dataclass(frozen=True)
class ColumnRef(Node):
    """`'Table'[Column]` or `Table[Column]`: a column of a model table (or of a query table)."""

    table: str
    column: str


@dataclass(frozen=True)
class Bracket(Node):
    """`[Name]` alone: a measure, or a column of the row being iterated."""

    name: str


@dataclass(frozen=True)
class Name(Node):
    """A bare or quoted name: a table, or a variable (`VAR x = …`)."""

    name: str
    quoted: bool = False


@dataclass(frozen=True)
class Call(Node):
    name: str  # upper case
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "-", "+", "NOT"
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # "+", "-", "*", "/", "^", "&", "=", "==", "<>", "<", "<=", ">", ">=", "&&", "||", "IN"
    left: Node
    right: Node


@dataclass(frozen=True)
class TableConstructor(Node):
    """`{1, 2}` or `{(1, "a"), (2, "b")}`: each row a tuple of scalar expressions."""

    rows: tuple[tuple[Node, ...], ...]


@dataclass(frozen=True)
class VarBlock(Node):
    """`VAR a = … VAR b = … RETURN body`."""

    bindings: tuple[tuple[str, Node], ...]
    body: Node


@dataclass(frozen=True)
class Empty(Node):
    """An argument left out (`TOPN(5, T, T[x], )`, `SWITCH(…, )`)."""


@dataclass(frozen=True)
class OrderKey:
    expr: Node
    descending: bool = False


@dataclass(frozen=True)
class Evaluate:
    table: Node
    order_by: tuple[OrderKey, ...] = ()
    start_at: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Define:
    """One definition after DEFINE: kind is MEASURE, VAR, COLUMN or TABLE."""

    kind: str
    name: str
    expr: Node
    table: str | None = None  # MEASURE and COLUMN belong to a table
    pos: int = 0


@dataclass(frozen=True)
class Query:
    defines: tuple[Define, ...]
    evaluates: tuple[Evaluate, ...]
