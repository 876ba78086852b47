"""What must be refused at the token level, before the text is parsed.

A tree cannot show a second statement, input too large or too deep to parse safely, or invisible and
look-alike characters; and when parsing fails, the tokens still tell a refused statement or function
apart from a plain syntax error.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlglot.tokens import Token, TokenType

from loom.engines.contracts import QueryError
from loom.engines.sql.access import forbidden_message, not_read_only_message
from loom.engines.sql.rules import RULES, is_forbidden

# Input limits. sqlglot's parser recurses ~24 Python frames per nesting level and fails near 40
# levels at the default recursion limit; the caller's own stack counts too, so 20 leaves room. Gold
# benchmark queries reach depth 7, 123 tokens and 819 characters: the limits are far above real use
# and keep the worst case to a few milliseconds.
MAX_QUERY_CHARS = 20_000
MAX_TOKENS = 5_000
MAX_NESTING = 20


@dataclass(frozen=True)
class InputLimits:
    chars: int = MAX_QUERY_CHARS
    tokens: int = MAX_TOKENS


# SQL that duckdb-kql wrote from a KQL query already held to MAX_QUERY_CHARS: its translation
# repeats each argument of tostring()/strcat() about eight times (probe 11: an 82-byte strcat became
# 20,380 characters), so it gets five times the room; nesting stays bounded for the parser's stack.
WRITTEN = InputLimits()  # by a person or a model
TRANSLATED = InputLimits(chars=5 * MAX_QUERY_CHARS, tokens=5 * MAX_TOKENS)
_limits: ContextVar[InputLimits] = ContextVar("input_limits", default=WRITTEN)


def input_limits() -> InputLimits:
    """The limits for the SQL being checked now: a person's or a model's, unless `translated()`."""
    return _limits.get()


@contextmanager
def translated() -> Iterator[None]:
    """Within it, SQL is held to the limits for machine-written translations."""
    token = _limits.set(TRANSLATED)
    try:
        yield
    finally:
        _limits.reset(token)


# Words that begin a statement sqlglot may not parse at all (WAITFOR, BULK INSERT, EXPORT…): when
# parsing fails on one, the answer is "not read-only", which tells the model more than a syntax error.
_STATEMENT_WORDS = frozenset({
    "add", "alter", "analyze", "attach", "backup", "begin", "bulk", "cache", "call", "checkpoint",
    "clear", "copy", "create", "dbcc", "deallocate", "declare", "delete", "deny", "detach", "drop",
    "exec", "execute", "export", "fsck", "grant", "import", "insert", "install", "kill", "list",
    "load", "merge", "msck", "optimize", "pragma", "reconfigure", "refresh", "reset", "restore",
    "revoke", "set", "shutdown", "truncate", "uncache", "update", "use", "vacuum", "waitfor",
})  # fmt: skip

_STRING_TOKENS = frozenset(t for t in TokenType if t.name.endswith("STRING"))
_OPENERS = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE})
_CLOSERS = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END})

# Letters that look like ASCII ones (Cyrillic and Greek); NFKC already folds fullwidth forms.
_HOMOGLYPHS = str.maketrans(
    "АВЕЅІЈКМНОРСТХУаеіјосрхуѕԁһӏΑΒΕΖΗΙΚΜΝΟΡΤΥΧοικνρτυχ",
    "ABESIJKMHOPCTXYaeijocpxysdhlABEZHIKMNOPTYXoikvptux",
)


def screen_tokens(tokens: Sequence[Token]) -> None:
    most = input_limits().tokens
    if len(tokens) > most:
        raise too_complex(f"it has {len(tokens):,} tokens; the limit is {most:,}")
    depth = 0
    for token in tokens:
        if token.token_type in _OPENERS:
            depth += 1
            if depth > MAX_NESTING:
                raise too_complex(
                    f"it nests parentheses or CASE more than {MAX_NESTING} deep, at line {token.line}"
                )
        elif token.token_type in _CLOSERS:
            depth -= 1
        if token.token_type not in _STRING_TOKENS and not token.text.isascii():
            _screen_characters(token)


def _screen_characters(token: Token) -> None:
    """Invisible and look-alike characters outside string literals: they make the text a person reads
    differ from the text a parser reads, so the query is refused with where and what they are. Inside
    a quoted name a look-alike is only a name (`"area_m²"`), so only invisible ones count there."""
    quoted = token.token_type == TokenType.IDENTIFIER
    for ch in token.text:
        if unicodedata.category(ch) in ("Cf", "Cc", "Zl", "Zp"):
            raise _bad_character(token, ch, "an invisible character")
        folded = unicodedata.normalize("NFKC", ch)
        if not quoted and folded != ch and folded.isascii():
            raise _bad_character(token, ch, f"a look-alike of {folded!r}")
    skeleton = token.text.translate(_HOMOGLYPHS)
    if not quoted and skeleton != token.text and (skeleton.isascii() or _mixes_scripts(token.text)):
        raise QueryError(
            "parse_error",
            f"{token.text!r} at line {token.line}, column {token.col} mixes look-alike letters from "
            f"another alphabet (it reads like {skeleton!r}); write SQL keywords and names in plain "
            "letters, and double-quote a name that really is spelled this way.",
        )


def _mixes_scripts(word: str) -> bool:
    scripts = {unicodedata.name(ch, "?").split(" ", 1)[0] for ch in word if ch.isalpha()}
    return len(scripts) > 1


def _bad_character(token: Token, ch: str, what: str) -> QueryError:
    name = unicodedata.name(ch, "unnamed")
    return QueryError(
        "parse_error",
        f"The query contains U+{ord(ch):04X} {name}, {what}, at line {token.line}, column {token.col}; "
        "retype the query in plain text.",
    )


def too_complex(why: str) -> QueryError:
    return QueryError(
        "too_complex",
        f"The query is too large or too deeply nested to check ({why}). Write a shorter query: "
        "name intermediate results with WITH, and filter or aggregate in fewer steps.",
    )


def split_statements(tokens: Sequence[Token]) -> list[list[Token]]:
    """Statements separated by `;` at the token level, so a second one is refused before parsing."""
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def token_refusal(tokens: Sequence[Token], dialect: str) -> QueryError | None:
    """A refusal more useful than "syntax error" for text sqlglot cannot parse: a statement that is
    not a query (`WAITFOR DELAY …`), or a forbidden function (`OPENROWSET(BULK …)`)."""
    first = next((t.text.lower() for t in tokens if t.token_type != TokenType.L_PAREN), "")
    if first in _STATEMENT_WORDS:
        return QueryError("not_read_only", not_read_only_message(first.upper()))
    rules = RULES[dialect]
    for token, following in zip(tokens, tokens[1:], strict=False):
        if following.token_type == TokenType.L_PAREN and is_forbidden(token.text.lower(), rules):
            return QueryError("forbidden_function", forbidden_message(token.text.lower()))
    return None
