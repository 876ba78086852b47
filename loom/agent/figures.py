"""The figures an answer states, read as the user sees them, and whether anything shown grounds them.

A model answering before any query has run may state figures it made up (the local 1.5B model wrote
a table of years and revenue no query had returned). `made_up` says whether an answer states a
figure — a number of three digits or more, or with decimals — found in nothing the model was shown.
The answer is read as a Markdown client renders it, with a real Markdown parser (markdown-it, the
CommonMark reference's port): each probe of a lighter reading found another way to split a figure's
digits in the source but not on screen — emphasis and zero-width characters (probe 28: R28-2),
character references and combining accents (probe 29: R29-2), inline HTML, comments and links, a
figure glued to a word (probe 30: R30-1). What is shown is the rendered text, compatibility forms
made plain (superscript and full-width digits) and marks no one sees removed.

Bounded, as every scan on the event loop: an answer over MOST_RENDERED characters (4 KiB), or with over
MOST_FIGURES numbers, is not read figure by figure but taken as made up if it holds any digit (a
no-query answer that long is not what a data agent writes); each figure is looked up among the
first MOST_KNOWN numbers shown, sorted once (rounding each of them to each figure's places cost a
second of the event loop: probe 28, R28-1).
"""

from __future__ import annotations

import html
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from html.parser import HTMLParser
from itertools import islice

from markdown_it import MarkdownIt
from markdown_it.token import Token

# Characters of an answer read through the Markdown parser, off the event loop: 4 KiB of
# unclosed `![` cost ~60 ms of CPU (16 KiB cost 250 ms, on the loop: probe 31, R31-2).
MOST_RENDERED = 4_096
MOST_FIGURES = 2_000  # numbers of an answer checked one by one
MOST_KNOWN = 20_000  # numbers of what the model was shown that ground them (sorted: ~5 ms)
MOST_PLACES = 6  # decimals compared: a figure written to more is compared at six
MOST_SQUEEZED = 4_096  # characters of each of the user's last two messages also read squeezed

# A number: not inside another (a digit or a decimal point before it), thousands separated by
# commas or the spaces typesetting uses (no-break, thin, narrow). A letter before it does not
# matter: `USD9876543` shows a figure.
_NUMBER = re.compile("(?<![\\d.])\\d(?:[\\d,\u00a0\u2009\u202f]*\\d)?(?:\\.\\d+)?")
_SEPARATORS = str.maketrans("", "", ",\u00a0\u2009\u202f")
# Where a figure may start in the source: any digit, a character reference, a superscript,
# subscript or enclosed digit, or a table row. Holding from there costs only streaming.
_MAY_START = re.compile(
    "\\d|&|[\u00b2\u00b3\u00b9\u2070-\u209f\u2460-\u24ff\u2776-\u2793]|^[ \t]*\\|", re.MULTILINE
)
_MARKDOWN = MarkdownIt("commonmark")
# What `squeezed` takes out, with the marks and format characters of `_unseen`: letters, and the
# characters Markdown and HTML write markup with.
_LETTERS = re.compile(r"[^\W\d_]+")
_MARKUP = str.maketrans("", "", "*_~`[]()<>!#|\\/\"'={}:")


def may_start(text: str) -> int:
    """Where in `text` a figure, or a table that may hold figures, may start (-1: nowhere yet)."""
    found = _MAY_START.search(text)
    at = found.start() if found is not None else -1
    if text.isascii():
        return at
    other = _digit_like().search(text, 0, at if at >= 0 else len(text))  # Ethiopic, Brahmi… (R33-1)
    return other.start() if other is not None else at


@cache
def _digit_like() -> re.Pattern[str]:
    """Any character with a digit's value beyond ASCII's, where holding starts too."""
    return re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_digits())) + "]")


def made_up(answer: str, shown: Iterable[str]) -> bool:
    """Whether `answer` states a figure found in none of the texts the model was `shown`, rounded
    as it is written (12,673.45 shown grounds "12,673" and "12,673.5"). Two readings, and a figure
    in either counts: the text a CommonMark client shows (`rendered`), and the source with its
    letters and markup characters taken out (`squeezed`), which keeps the digits of a list's start
    number, of an attribute or of a link definition, all shown by some client though no text of
    the parse (probe 31: R31-1)."""
    if len(answer) > MOST_RENDERED:
        return may_start(answer) >= 0
    numbers = [*_numbers(rendered(answer), MOST_FIGURES + 1), *_numbers(squeezed(answer), MOST_FIGURES + 1)]
    if len(numbers) > 2 * MOST_FIGURES:
        return True
    figures = {n for n in numbers if len(n.replace(".", "")) >= 3 or "." in n}
    if not figures:
        return False
    texts = tuple(shown)
    # A date the user wrote grounds it squeezed too: the user's words only, and their first
    # MOST_SQUEEZED characters (squeezing all that was shown, NFKD and all, held the interpreter
    # ~1 s a check for a history of `ﷺ`, one character that expands to 18: probe 32, R32-4).
    asked = [squeezed(t[:MOST_SQUEEZED]) for t in texts[:2]]
    known = _known((*texts, *asked))
    missing = [f for f in figures if f not in known]  # most are written as shown
    if not missing:
        return False
    values = sorted(_value(k) for k in known)
    return any(not _rounds_to(f, values) for f in missing)


def squeezed(text: str) -> str:
    """`text` with character references decoded, compatibility forms plain, and letters, marks and
    markup characters taken out: what is left of a figure whose digits markup split."""
    plain = unicodedata.normalize("NFKD", html.unescape(text) if "&" in text else text)
    return _LETTERS.sub("", plain.translate(_MARKUP).translate(_unseen()).translate(_digits()))


def rendered(markdown: str) -> str:
    """The text a CommonMark client shows for `markdown`: character references decoded, markup
    (emphasis, links, inline HTML and comments) gone, compatibility forms plain, combining marks
    and format characters removed."""
    text = "".join(_shown(_MARKDOWN.parse(markdown)))
    if text.isascii():
        return text
    return unicodedata.normalize("NFKD", text).translate(_unseen()).translate(_digits())


def _shown(tokens: Sequence[Token]) -> Iterator[str]:
    for token in tokens:
        if token.type == "inline":
            yield from _inline(token.children or [])
        elif token.type in ("fence", "code_block"):
            yield token.content
        elif token.type == "html_block":
            yield _html_text(token.content)
        yield "\n" if token.block else ""


def _inline(children: Sequence[Token]) -> Iterator[str]:
    for child in children:
        if child.type in ("text", "code_inline"):
            yield child.content
        elif child.type in ("softbreak", "hardbreak"):
            yield "\n"
        elif child.type == "image":  # its alt text, shown when it does not load
            yield from _inline(child.children or [])
        # html_inline (a tag or a comment) shows nothing itself; the text between tags is text


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _html_text(block: str) -> str:
    reader = _HtmlText()
    reader.feed(block)
    reader.close()
    return "".join(reader.parts)


@cache
def _unseen() -> dict[int, None]:
    """Combining marks and format characters (Unicode categories Mn, Me, Cf: accents, zero-width
    spaces and joiners, direction marks, tags), to delete. All lie in planes 0, 1 and 14 (checked
    against the whole range in tests/agent/test_figures.py); built once, ~12 ms."""
    ranges = (range(0x80, 0x20000), range(0xE0000, 0xE1000))
    return {c: None for r in ranges for c in r if unicodedata.category(chr(c)) in ("Mn", "Me", "Cf")}


@cache
def _digits() -> dict[int, str]:
    """Characters with a digit's value that no compatibility form makes plain (circled, dingbat,
    Ethiopic digits: `❾❽❼` showed a made-up figure, probe 32: R32-2), to their ASCII digit."""
    return {
        c: str(unicodedata.digit(chr(c)))
        for c in range(0x80, 0x20000)
        if unicodedata.digit(chr(c), None) is not None
    }


def _rounds_to(figure: str, values: list[float]) -> bool:
    """Whether one of the sorted `values`, rounded to the figure's places, is the figure."""
    places = _places(figure)
    target = round(_value(figure), places)
    half = 0.5 * 10.0**-places * (1 + 1e-9) + abs(target) * 1e-12  # a rounding's reach, and float error
    at = bisect_left(values, target - half)
    return any(round(v, places) == target for v in islice(values, at, at + 8) if v <= target + half)


def _value(number: str) -> float:
    return float(number) if len(number) < 400 else float("inf")  # past 10^400 nothing is finite


def _known(shown: Iterable[str]) -> set[str]:
    """The numbers in what the model was shown, as written (the first MOST_KNOWN)."""
    known: set[str] = set()
    left = MOST_KNOWN
    for text in shown:
        found = _numbers(text, left)
        known.update(found)
        left -= len(found)
        if left <= 0:
            break
    return known


def _numbers(text: str, most: int | None = None) -> list[str]:
    """The numbers in `text` as written, without thousands separators (the first `most`)."""
    return [m.group().translate(_SEPARATORS) for m in islice(_NUMBER.finditer(text), most)]


def _places(figure: str) -> int:
    return min(len(figure.partition(".")[2]), MOST_PLACES)
