"""Gremlin query strings, parsed into a tree of steps.

People and models write Gremlin the way the Groovy console takes it: `g.V().has('code','AUS')
.out('route').values('city')`, anonymous steps bare inside `repeat`, `where` or `union`
(`repeat(out('route'))`), predicates bare (`is(gt(3))`), enums bare (`order().by('x', desc)`),
Groovy's number suffixes (`limit(10L)`), and a terminal step (`toList()`). One parser reads all of
it, with positions, so the validator (what may run) and the normaliser (what the engine takes) look
at the same tree. Python's own tokenizer lexes it — Gremlin's tokens (names, quoted strings,
numbers, brackets) are Python's — and literals are read with `ast.literal_eval`; nothing is ever
evaluated. A closure (`{ it -> … }`) or any token the grammar has no place for is a parse error
that names its position.

The grammar, as written here:

    query     := traversal
    traversal := ('g' | '__') ('.' step)+  |  step ('.' step)*        (a bare step: anonymous)
    step      := NAME '(' [arg (',' arg)*] ')'
    arg       := literal | '-' NUMBER | list | map | traversal | predicate | enum
    predicate := [('P' | 'TextP') '.'] PREDICATE '(' [arg (',' arg)*] ')' ('.' ('and'|'or') '(' arg ')')*
    enum      := [ENUM_CLASS '.'] NAME                                  (no brackets after it)
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from dataclasses import dataclass, field
from typing import Union

# Predicates Gremlin writes bare or as P.x / TextP.x.
PREDICATES = frozenset(
    {"eq", "neq", "lt", "lte", "gt", "gte", "inside", "outside", "between", "within", "without"}
)
TEXT_PREDICATES = frozenset(
    {"containing", "notContaining", "startingWith", "notStartingWith", "endingWith", "notEndingWith",
     "regex", "notRegex"}
)  # fmt: skip
ENUM_CLASSES = frozenset(
    {"T", "Order", "Scope", "Column", "Pop", "Direction", "Operator", "Cardinality", "Pick"}
)
NUMBER_SUFFIXES = frozenset({"L", "l", "d", "D", "f", "F", "m", "M", "b", "B", "i", "I", "s", "S"})
MAX_TOKENS = 4_000  # a query longer than this is not one a person or a model writes
MAX_DEPTH = 64  # nesting of anonymous traversals and brackets


class GremlinSyntaxError(ValueError):
    """The query does not parse; `at` is the character offset of the problem."""

    def __init__(self, message: str, at: int) -> None:
        super().__init__(message)
        self.message, self.at = message, at


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool | None
    at: int


@dataclass(frozen=True)
class ListArg:
    items: list[Arg]
    at: int


@dataclass(frozen=True)
class MapArg:
    pairs: list[tuple[Arg, Arg]]
    at: int


@dataclass(frozen=True)
class Enum:
    """`desc`, `Order.desc`, `T.id`, `local`…: `owner` is the class when it was written."""

    name: str
    owner: str | None
    at: int


@dataclass(frozen=True)
class Predicate:
    """`gt(3)`, `P.within('a','b')`, `TextP.containing('x')`, joined by `.and(…)`/`.or(…)`."""

    name: str
    owner: str | None
    args: list[Arg]
    at: int
    joined: list[tuple[str, Arg]] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    name: str
    args: list[Arg]
    at: int


@dataclass(frozen=True)
class Traversal:
    """`g.V()…` (source "g"), `__.out()…` (source "__"), or a bare `out()…` (source "")."""

    source: str
    steps: list[Step]
    at: int

    def walk(self) -> list[Step]:
        """Every step of this traversal and of the traversals nested in its arguments."""
        found: list[Step] = []
        stack: list[Traversal] = [self]
        while stack:
            traversal = stack.pop()
            for step in traversal.steps:
                found.append(step)
                stack.extend(_nested(step.args))
        return found


Arg = Union[Literal, ListArg, MapArg, Enum, Predicate, Traversal]  # noqa: UP007 (a recursive alias)


def _nested(args: list[Arg]) -> list[Traversal]:
    out: list[Traversal] = []
    pending = list(args)
    while pending:
        arg = pending.pop()
        if isinstance(arg, Traversal):
            out.append(arg)
        elif isinstance(arg, ListArg):
            pending.extend(arg.items)
        elif isinstance(arg, MapArg):
            pending.extend(v for pair in arg.pairs for v in pair)
        elif isinstance(arg, Predicate):
            pending.extend(arg.args)
            pending.extend(a for _, a in arg.joined)
    return out


@dataclass(frozen=True)
class _Token:
    kind: str  # NAME, STRING, NUMBER, OP, END
    text: str
    at: int


def parse(query: str) -> Traversal:
    """The query's tree; GremlinSyntaxError, with the offending position, when it does not parse."""
    parser = _Parser(_tokens(query))
    traversal = parser.traversal(depth=0)
    parser.expect_end()
    return traversal


def _tokens(query: str) -> list[_Token]:
    lines = query.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out: list[_Token] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(query).readline):
            at = starts[token.start[0] - 1] + token.start[1] if token.start[0] <= len(lines) else len(query)
            kind = tokenize.tok_name[token.type]
            if kind in ("NEWLINE", "NL", "COMMENT", "INDENT", "DEDENT", "ENDMARKER"):
                continue
            if kind == "ERRORTOKEN" and not token.string.strip():
                continue
            if kind not in ("NAME", "STRING", "NUMBER", "OP"):
                raise GremlinSyntaxError(f"unexpected {token.string!r}", at)
            out.append(_Token(kind, token.string, at))
            if len(out) > MAX_TOKENS:
                raise GremlinSyntaxError(f"the query has over {MAX_TOKENS:,} tokens", at)
    except (tokenize.TokenError, IndentationError, SyntaxError) as e:
        raise GremlinSyntaxError(
            f"the query does not parse: {e.args[0] if e.args else e}", len(query)
        ) from None
    out.append(_Token("END", "", len(query)))
    return out


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens, self.i = tokens, 0

    @property
    def now(self) -> _Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.now
        self.i += 1
        return token

    def expect(self, text: str) -> _Token:
        if self.now.text != text:
            raise GremlinSyntaxError(f"expected {text!r}, found {self.now.text or 'the end'!r}", self.now.at)
        return self.take()

    def expect_end(self) -> None:
        if self.now.kind != "END":
            raise GremlinSyntaxError(f"unexpected {self.now.text!r} after the traversal", self.now.at)

    def traversal(self, depth: int) -> Traversal:
        if depth > MAX_DEPTH:
            raise GremlinSyntaxError(f"nested deeper than {MAX_DEPTH}", self.now.at)
        start = self.now
        if start.kind != "NAME":
            raise GremlinSyntaxError(f"a traversal starts with g, __ or a step, not {start.text!r}", start.at)
        steps: list[Step] = []
        source = ""
        if start.text in ("g", "__") and self.peek().text == ".":
            source = self.take().text
            self.expect(".")
        steps.append(self.step(depth))
        while self.now.text == ".":
            self.take()
            steps.append(self.step(depth))
        return Traversal(source, steps, start.at)

    def step(self, depth: int) -> Step:
        name = self.now
        if name.kind != "NAME":
            raise GremlinSyntaxError(f"expected a step, found {name.text or 'the end'!r}", name.at)
        self.take()
        if self.now.text == "{":
            raise GremlinSyntaxError(f"a lambda or closure after {name.text!r} is not allowed", self.now.at)
        if self.now.text != "(":
            raise GremlinSyntaxError(f"expected '(' after the step {name.text!r}", self.now.at)
        return Step(name.text, self.arguments(depth), name.at)

    def arguments(self, depth: int) -> list[Arg]:
        self.expect("(")
        args: list[Arg] = []
        while self.now.text != ")":
            args.append(self.arg(depth + 1))
            if self.now.text != ",":
                break
            self.take()
        self.expect(")")
        return args

    def arg(self, depth: int) -> Arg:
        if depth > MAX_DEPTH:
            raise GremlinSyntaxError(f"nested deeper than {MAX_DEPTH}", self.now.at)
        token = self.now
        if token.kind == "STRING":
            return Literal(_string(self.take()), token.at)
        if token.kind == "NUMBER" or (token.text == "-" and self.peek().kind == "NUMBER"):
            return self.number()
        if token.text == "[":
            return self.bracketed(depth)
        if token.text == "{":
            raise GremlinSyntaxError("a lambda or closure is not allowed", token.at)
        if token.kind == "NAME":
            return self.named(depth)
        raise GremlinSyntaxError(f"unexpected {token.text or 'end'!r} in the arguments", token.at)

    def number(self) -> Literal:
        start = self.now
        sign = -1 if start.text == "-" else 1
        if sign < 0:
            self.take()
        token = self.take()
        if (
            self.now.kind == "NAME"
            and self.now.text in NUMBER_SUFFIXES
            and self.now.at == token.at + len(token.text)
        ):
            self.take()  # Groovy's 10L, 2.5d: the value is the same
        try:
            value = ast.literal_eval(token.text)
        except (ValueError, SyntaxError):
            raise GremlinSyntaxError(f"not a number: {token.text!r}", token.at) from None
        if not isinstance(value, int | float):
            raise GremlinSyntaxError(f"not a number: {token.text!r}", token.at)
        return Literal(sign * value, start.at)

    def bracketed(self, depth: int) -> ListArg | MapArg:
        start = self.expect("[")
        if self.now.text == ":":  # Groovy's empty map, [:]
            self.take()
            self.expect("]")
            return MapArg([], start.at)
        items: list[Arg] = []
        pairs: list[tuple[Arg, Arg]] = []
        while self.now.text != "]":
            item = self.arg(depth + 1)
            if self.now.text == ":":
                self.take()
                pairs.append((item, self.arg(depth + 1)))
            else:
                items.append(item)
            if self.now.text != ",":
                break
            self.take()
        self.expect("]")
        if pairs and items:
            raise GremlinSyntaxError("a list and a map mixed in one bracket", start.at)
        return MapArg(pairs, start.at) if pairs else ListArg(items, start.at)

    def named(self, depth: int) -> Arg:
        token = self.now
        if token.text in ("true", "false", "null"):
            self.take()
            return Literal({"true": True, "false": False, "null": None}[token.text], token.at)
        if token.text == "__" and self.peek().text == ".":
            return self.traversal(depth)
        owner = None
        if self.peek().text == "." and (token.text in ENUM_CLASSES or token.text in ("P", "TextP")):
            owner = self.take().text
            self.take()
        name = self.now
        if name.kind != "NAME":
            raise GremlinSyntaxError(f"expected a name after {owner}.", name.at)
        if owner in ("P", "TextP") or (
            owner is None and _is_predicate(name.text) and self.peek().text == "("
        ):
            return self.predicate(owner, depth)
        if owner is not None or self.peek().text != "(":
            self.take()
            if owner is None and self.now.text == ".":
                raise GremlinSyntaxError(f"{name.text!r} is not a step or an enum Gremlin knows", name.at)
            return Enum(name.text, owner, token.at)
        return self.traversal(depth)

    def predicate(self, owner: str | None, depth: int) -> Predicate:
        name = self.take()
        predicate = Predicate(name.text, owner, self.arguments(depth), name.at)
        while self.now.text == "." and self.peek().text in ("and", "or"):
            self.take()
            joiner = self.take().text
            self.expect("(")
            predicate.joined.append((joiner, self.arg(depth + 1)))
            self.expect(")")
        return predicate


def _is_predicate(name: str) -> bool:
    return name in PREDICATES or name in TEXT_PREDICATES


def _string(token: _Token) -> str:
    if token.text[:1] not in ("'", '"') or token.text[:3] in ('"""', "'''"):
        raise GremlinSyntaxError(f"not a plain quoted string: {token.text[:20]!r}", token.at)
    try:
        value = ast.literal_eval(token.text)
    except (ValueError, SyntaxError):
        raise GremlinSyntaxError(f"not a plain quoted string: {token.text[:20]!r}", token.at) from None
    if not isinstance(value, str):
        raise GremlinSyntaxError(f"not a plain quoted string: {token.text[:20]!r}", token.at)
    return value


# --- rendering: the tree as one canonical string -----------------------------------------------

# The class of each enum value people write bare (`desc`, `local`, `keys`…).
ENUM_OWNERS = {
    **dict.fromkeys(("asc", "desc", "shuffle", "incr", "decr"), "Order"),
    **dict.fromkeys(("local", "global"), "Scope"),
    **dict.fromkeys(("keys", "values"), "Column"),
    **dict.fromkeys(("id", "label", "key", "value"), "T"),
    **dict.fromkeys(("first", "last", "all", "mixed"), "Pop"),
    **dict.fromkeys(("OUT", "IN", "BOTH"), "Direction"),
    **dict.fromkeys(("sum", "min", "max", "mult", "div", "minus", "assign", "addAll", "sumLong"), "Operator"),
}
RENAMED_ENUMS = {"incr": "asc", "decr": "desc"}  # TinkerPop 3.3's names for them
TERMINAL_STEPS = frozenset({"toList", "toSet", "next", "hasNext", "toBulkSet"})


# The order enums by the names Cosmos DB's documentation uses (TinkerPop 3.4 has both spellings).
GROOVY_ENUMS = {"asc": "incr", "desc": "decr"}


def render(traversal: Traversal, *, groovy: bool = False) -> str:
    """The traversal as one string, a terminal step (`toList()`, `next()`) and Groovy's number
    suffixes left out (the engine collects the results).

    By default in the form the embedded engine (graphersal, whose scripts are Rhai) takes:
    anonymous traversals as `__.`, predicates as `P.`/`TextP.`, enums with their class, strings
    double-quoted, maps as `#{…}`. With `groovy`, in the form a Gremlin server (Cosmos DB) takes:
    strings single-quoted (no interpolation), maps as `[k: v]`, enums and `P` predicates bare as its
    documentation writes them."""
    steps = [s for s in traversal.steps if s.name not in TERMINAL_STEPS]
    body = ".".join(_step(s, groovy) for s in steps)
    head = traversal.source or "__"
    return f"{head}.{body}"


def _step(step: Step, groovy: bool) -> str:
    return f"{step.name}({', '.join(_arg(a, groovy) for a in step.args)})"


def _arg(arg: Arg, groovy: bool) -> str:
    if isinstance(arg, Literal):
        return _literal(arg.value, groovy)
    if isinstance(arg, ListArg):
        return "[" + ", ".join(_arg(a, groovy) for a in arg.items) + "]"
    if isinstance(arg, MapArg):
        pairs = ", ".join(f"{_key(k, groovy)}: {_arg(v, groovy)}" for k, v in arg.pairs)
        return f"[{pairs or ':'}]" if groovy else "#{" + pairs + "}"  # Rhai's map literal
    if isinstance(arg, Enum):
        return _enum(arg, groovy)
    if isinstance(arg, Predicate):
        return _predicate(arg, groovy)
    return render(arg, groovy=groovy)


def _enum(arg: Enum, groovy: bool) -> str:
    if groovy:
        return GROOVY_ENUMS.get(arg.name, arg.name)
    name = RENAMED_ENUMS.get(arg.name, arg.name)
    owner = arg.owner or ENUM_OWNERS.get(arg.name)
    return f"{owner}.{name}" if owner else name


def _predicate(arg: Predicate, groovy: bool) -> str:
    owner = arg.owner or ("TextP" if arg.name in TEXT_PREDICATES else "P")
    prefix = "" if groovy and owner == "P" else f"{owner}."
    text = f"{prefix}{arg.name}({', '.join(_arg(a, groovy) for a in arg.args)})"
    return text + "".join(f".{joiner}({_arg(a, groovy)})" for joiner, a in arg.joined)


def _literal(value: str | int | float | bool | None, groovy: bool) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and groovy:  # single-quoted: Groovy reads "…$x…" as a template
        return "'" + "".join(_GROOVY_ESCAPES.get(c) or _escaped(c) for c in value) + "'"
    if isinstance(value, str):  # double-quoted: the engine reads '…' as one character
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


_GROOVY_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    return f"\\u{ord(char):04x}" if ord(char) < 0x20 else char


def _key(arg: Arg, groovy: bool) -> str:
    if isinstance(arg, Literal) and isinstance(arg.value, str) and arg.value.isidentifier():
        return arg.value
    if groovy and isinstance(arg, Enum) and arg.owner is None:
        return arg.name  # Groovy's bare map key is a string
    if groovy:
        return _arg(arg, groovy) if isinstance(arg, Literal) else f"({_arg(arg, groovy)})"
    return _literal(str(arg.value) if isinstance(arg, Literal) else _arg(arg, groovy), groovy)
