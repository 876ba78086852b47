"""Tokens → the syntax tree: a query (`DEFINE … EVALUATE … ORDER BY …`) or one expression (a
measure's). Precedence climbing over DAX's operator table, highest first: `^`, sign, `* /`, `+ -`,
`&`, comparisons and `IN`, `NOT`, `&&`, `||`.
"""

from __future__ import annotations

from loom.engines.contracts import QueryError
from loom.engines.dax.lexer import Token, syntax_error, tokens
from loom.engines.dax.syntax import (
    Binary,
    Bracket,
    Call,
    ColumnRef,
    Define,
    Empty,
    Evaluate,
    Name,
    Node,
    Number,
    OrderKey,
    Query,
    TableConstructor,
    Text,
    Unary,
    VarBlock,
)
from loom.engines.sql.screen import MAX_QUERY_CHARS, too_complex

MAX_DEPTH = 200  # nested calls and parentheses: past this the query is too complex, not a crash
_BINARY = {"||": 1, "&&": 2, "=": 4, "==": 4, "<>": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "IN": 4,
           "&": 5, "+": 6, "-": 6, "*": 7, "/": 7, "^": 9}  # fmt: skip
_NOT, _SIGN = 3, 8
_DEFINITIONS = ("MEASURE", "VAR", "COLUMN", "TABLE")


def parse_query(text: str) -> Query:
    return _Parser(text).query()


def is_query(text: str) -> bool:
    """Whether `text` is, whole, a DAX query."""
    try:
        parse_query(text)
    except QueryError:
        return False
    return True


def parse_expression(text: str) -> Node:
    """One DAX expression, as a measure or a calculated column is written."""
    return _Parser(text).expression_only()


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_QUERY_CHARS:
            raise too_complex(f"it has {len(text):,} characters; the limit is {MAX_QUERY_CHARS:,}")
        self.text = text
        self.tokens = tokens(text)
        self.i = 0
        self.depth = 0

    # --- queries ---------------------------------------------------------------------------------

    def query(self) -> Query:
        if self._at_end():
            raise QueryError(
                "parse_error", "The query is empty: write EVALUATE followed by a table expression."
            )
        defines: list[Define] = []
        if self._keyword("DEFINE"):
            while self._peek_keyword(*_DEFINITIONS, "FUNCTION"):
                defines.append(self._definition())
        evaluates: list[Evaluate] = []
        while self._keyword("EVALUATE"):
            evaluates.append(self._evaluate())
        if not evaluates:
            raise self._error("a query starts with EVALUATE (or DEFINE … EVALUATE)")
        if not self._at_end():
            raise self._error(f"unexpected {self._describe(self._peek())} after the query")
        return Query(tuple(defines), tuple(evaluates))

    def expression_only(self) -> Node:
        if self._at_end():
            raise QueryError("parse_error", "The expression is empty.")
        node = self._expression()
        if not self._at_end():
            raise self._error(f"unexpected {self._describe(self._peek())} after the expression")
        return node

    def _definition(self) -> Define:
        token = self._next()
        kind = token.text.upper()
        if kind == "FUNCTION":
            raise QueryError(
                "unsupported_function", "DEFINE FUNCTION (user-defined functions) is not supported here."
            )
        if kind in ("MEASURE", "COLUMN"):
            ref = self._primary()
            if not isinstance(ref, ColumnRef):
                raise syntax_error(self.text, token.pos, f"{kind} is followed by Table[Name]")
            self._expect("=")
            return Define(kind, ref.column, self._expression(), ref.table, pos=token.pos)
        name = self._next()
        if name.kind not in ("name", "quoted"):
            raise syntax_error(self.text, name.pos, f"{kind} is followed by a name")
        self._expect("=")
        return Define(kind, name.text, self._expression(), pos=token.pos)

    def _evaluate(self) -> Evaluate:
        table = self._expression()
        order: list[OrderKey] = []
        if self._peek_keyword("ORDER"):
            self._next()
            if not self._keyword("BY"):
                raise self._error("ORDER is followed by BY")
            order.append(self._order_key())
            while self._accept(","):
                order.append(self._order_key())
        start: list[Node] = []
        if self._peek_keyword("START"):
            self._next()
            if not self._keyword("AT"):
                raise self._error("START is followed by AT")
            start.append(self._expression())
            while self._accept(","):
                start.append(self._expression())
        return Evaluate(table, tuple(order), tuple(start))

    def _order_key(self) -> OrderKey:
        expr = self._expression()
        if self._keyword("DESC"):
            return OrderKey(expr, True)
        self._keyword("ASC")
        return OrderKey(expr, False)

    # --- expressions -----------------------------------------------------------------------------

    def _expression(self, floor: int = 0) -> Node:
        self._enter()
        try:
            left = self._prefix()
            while True:
                op = self._binary_op()
                if op is None or _BINARY[op] <= floor:
                    return left
                token = self._next()
                # `^` is right-associative; the others left.
                right = self._expression(_BINARY[op] - (1 if op == "^" else 0))
                left = Binary(op, left, right, pos=token.pos)
        finally:
            self.depth -= 1

    def _binary_op(self) -> str | None:
        token = self._peek()
        if token.kind == "op" and token.text in _BINARY:
            return token.text
        if token.kind == "name" and token.text.upper() == "IN":
            return "IN"
        return None

    def _prefix(self) -> Node:
        token = self._peek()
        if token.kind == "op" and token.text in ("-", "+"):
            self._next()
            return Unary(token.text, self._expression(_SIGN), pos=token.pos)
        if token.kind == "name" and token.text.upper() == "NOT" and self._peek(1).text != "(":
            self._next()
            return Unary("NOT", self._expression(_NOT), pos=token.pos)
        if token.kind == "name" and token.text.upper() == "VAR":
            return self._var_block()
        return self._primary()

    def _var_block(self) -> Node:
        start = self._peek().pos
        bindings: list[tuple[str, Node]] = []
        while self._keyword("VAR"):
            name = self._next()
            if name.kind != "name":
                raise syntax_error(self.text, name.pos, "VAR is followed by a variable name")
            self._expect("=")
            bindings.append((name.text, self._expression()))
        if not self._keyword("RETURN"):
            raise self._error("VAR definitions end with RETURN and the expression to return")
        return VarBlock(tuple(bindings), self._expression(), pos=start)

    def _primary(self) -> Node:
        token = self._next()
        if token.kind == "number":
            return _number(token)
        if token.kind == "string":
            return Text(token.text, pos=token.pos)
        if token.kind == "bracket":
            return Bracket(token.text, pos=token.pos)
        if token.kind in ("name", "quoted"):
            return self._named(token)
        if token.kind == "op" and token.text == "(":
            inner = self._expression()
            self._expect(")")
            return inner
        if token.kind == "op" and token.text == "{":
            return self._table_constructor(token)
        raise syntax_error(self.text, token.pos, f"unexpected {self._describe(token)}")

    def _named(self, token: Token) -> Node:
        following = self._peek()
        if following.kind == "bracket" and following.pos == token.pos + _written_length(token):
            self._next()
            return ColumnRef(token.text, following.text, pos=token.pos)
        if token.kind == "name" and following.kind == "op" and following.text == "(":
            self._next()
            return Call(token.text.upper(), self._arguments(), pos=token.pos)
        if token.kind == "name" and token.text.upper() in ("TRUE", "FALSE"):
            return Call(token.text.upper(), (), pos=token.pos)
        return Name(token.text, quoted=token.kind == "quoted", pos=token.pos)

    def _arguments(self) -> tuple[Node, ...]:
        args: list[Node] = []
        if self._accept(")"):
            return ()
        while True:
            if self._peek().text in (",", ")") and self._peek().kind == "op":
                args.append(Empty(pos=self._peek().pos))
            else:
                args.append(self._expression())
            if self._accept(")"):
                return tuple(args)
            self._expect(",")

    def _table_constructor(self, opening: Token) -> Node:
        rows: list[tuple[Node, ...]] = []
        if self._accept("}"):
            return TableConstructor((), pos=opening.pos)
        while True:
            rows.append(self._row())
            if self._accept("}"):
                return TableConstructor(tuple(rows), pos=opening.pos)
            self._expect(",")

    def _row(self) -> tuple[Node, ...]:
        if not (self._peek().kind == "op" and self._peek().text == "("):
            return (self._expression(),)
        start = self.i
        self._next()
        values = [self._expression()]
        while self._accept(","):
            values.append(self._expression())
        if not self._accept(")"):
            self.i = start  # `{(1 + 2) * 3}`: a parenthesised expression, not a tuple
            return (self._expression(),)
        if len(values) == 1 and self._peek().text not in (",", "}"):
            self.i = start
            return (self._expression(),)
        return tuple(values)

    # --- tokens ----------------------------------------------------------------------------------

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise too_complex(f"it nests calls or parentheses more than {MAX_DEPTH} deep")

    def _peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def _next(self) -> Token:
        token = self._peek()
        if token.kind == "end":
            raise syntax_error(self.text, token.pos, "the query ends too early")
        self.i += 1
        return token

    def _at_end(self) -> bool:
        return self._peek().kind == "end"

    def _accept(self, op: str) -> bool:
        token = self._peek()
        if token.kind == "op" and token.text == op:
            self.i += 1
            return True
        return False

    def _expect(self, op: str) -> None:
        if not self._accept(op):
            raise self._error(f"expected {op!r}, found {self._describe(self._peek())}")

    def _peek_keyword(self, *words: str) -> bool:
        token = self._peek()
        return token.kind == "name" and token.text.upper() in words

    def _keyword(self, word: str) -> bool:
        if self._peek_keyword(word):
            self.i += 1
            return True
        return False

    def _error(self, message: str) -> QueryError:
        return syntax_error(self.text, self._peek().pos, message)

    @staticmethod
    def _describe(token: Token) -> str:
        return {
            "end": "the end of the query",
            "string": f'the string "{token.text[:40]}"',
            "bracket": f"[{token.text[:40]}]",
            "quoted": f"'{token.text[:40]}'",
        }.get(token.kind, repr(token.text[:40]))


def _number(token: Token) -> Number:
    text = token.text
    if "." in text or "e" in text.lower():
        return Number(float(text), text, pos=token.pos)
    return Number(int(text), text, pos=token.pos)


def _written_length(token: Token) -> int:
    """How many characters the token took in the text (a quoted name's quotes and doubled ones)."""
    if token.kind == "quoted":
        return len(token.text) + token.text.count("'") + 2
    return len(token.text)
