"""DAX text → tokens: numbers, strings, names, 'quoted names', [bracketed names], operators.

Comments (`//`, `--`, `/* */`) are skipped. Keywords (EVALUATE, VAR, …) are names here; the
parser decides where a name is a keyword, as DAX does (a table may be called `Order`).
"""

from __future__ import annotations

from dataclasses import dataclass

from loom.engines.contracts import QueryError

OPERATORS = ("&&", "||", "==", "<>", "<=", ">=", "+", "-", "*", "/", "^", "&", "=", "<", ">", "(", ")",
             ",", "{", "}", ".")  # fmt: skip


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "string", "name", "quoted", "bracket", "op", "end"
    text: str  # the value: a string's or a name's without quotes, an operator as written
    pos: int


def syntax_error(text: str, pos: int, message: str) -> QueryError:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return QueryError("parse_error", f"DAX syntax error at line {line}, column {column}: {message}")


def tokens(text: str) -> list[Token]:
    out: list[Token] = []
    i = 0
    while True:
        i = _skip_space(text, i)
        if i >= len(text):
            out.append(Token("end", "", i))
            return out
        token, i = _token(text, i)
        out.append(token)


def _skip_space(text: str, i: int) -> int:
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith(("//", "--"), i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise syntax_error(text, i, "a /* comment is not closed")
            i = end + 2
        else:
            return i
    return i


def _token(text: str, i: int) -> tuple[Token, int]:
    c = text[i]
    if c.isdigit() or (c == "." and i + 1 < len(text) and text[i + 1].isdigit()):
        return _number(text, i)
    if c == '"':
        value, end = _quoted(text, i, '"', '"', "a string")
        return Token("string", value, i), end
    if c == "'":
        value, end = _quoted(text, i, "'", "'", "a quoted table name")
        return Token("quoted", value, i), end
    if c == "[":
        value, end = _quoted(text, i, "[", "]", "a [name]")
        return Token("bracket", value, i), end
    if c.isalpha() or c == "_":
        return _name(text, i)
    for op in OPERATORS:
        if text.startswith(op, i):
            return Token("op", op, i), i + len(op)
    raise syntax_error(text, i, f"unexpected character {c!r}")


def _number(text: str, i: int) -> tuple[Token, int]:
    start = i
    while i < len(text) and (text[i].isdigit() or text[i] == "."):
        i += 1
    if i < len(text) and text[i] in "eE":
        j = i + 1
        if j < len(text) and text[j] in "+-":
            j += 1
        if j < len(text) and text[j].isdigit():
            i = j
            while i < len(text) and text[i].isdigit():
                i += 1
    literal = text[start:i]
    if literal.count(".") > 1:
        raise syntax_error(text, start, f"{literal!r} is not a number")
    return Token("number", literal, start), i


def _quoted(text: str, i: int, opening: str, closing: str, what: str) -> tuple[str, int]:
    """The text between `opening` and `closing`, a doubled closing character standing for one."""
    parts: list[str] = []
    j = i + 1
    while True:
        end = text.find(closing, j)
        if end < 0:
            raise syntax_error(text, i, f"{what} starting here is not closed with {closing}")
        parts.append(text[j:end])
        if text.startswith(closing, end + 1):  # doubled: one of it, inside the name or string
            parts.append(closing)
            j = end + 2
            continue
        return "".join(parts), end + 1


def _name(text: str, i: int) -> tuple[Token, int]:
    """A name; dots join its parts when a letter follows (`PERCENTILE.INC`, `INFO.TABLES`)."""
    start = i
    while i < len(text):
        if text[i].isalnum() or text[i] == "_":
            i += 1
        elif text[i] == "." and i + 1 < len(text) and text[i + 1].isalpha():
            i += 1
        else:
            break
    return Token("name", text[start:i], start), i
