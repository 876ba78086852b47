"""The figures an answer states, read as a Markdown client shows them, and what grounds them."""

from __future__ import annotations

import builtins
import sys
import unicodedata

import pytest

from loom.agent import figures
from loom.agent.figures import made_up, rendered

SHOWN = ("What was revenue in 2024, and on 12/31/2024?", '{"rows": [[2024, 12673.56]]}')


@pytest.mark.parametrize(
    "answer",
    [
        "Revenue was 9,876,543.21.",
        # Split in the source, whole on screen (probes 28-30: R28-2, R29-2, R30-1).
        "Revenue was 1**23**45**67**.**89**.",
        "Orders: 4\u200b87\u200b32.",
        "Revenue was 4\u202f873\u202f219.",
        "Revenue was &#57;&#56;&#55;&#54;&#53;&#52;&#51;.21.",
        "Revenue was &#x39;&#x38;&#x37;,&#x36;54.",
        "Revenue was 9\u03018\u03017\u03016\u03015\u03014\u0301.",
        "Revenue was 98\u2077\u2076\u2075\u2074\u00b3.",
        "Revenue was 9<!-- -->8<!-- -->7<!-- -->6<!-- -->5<!-- -->4<!-- -->3.",
        "Revenue was 98<b></b>76<b></b>54<b></b>3.",
        "Revenue was 98<wbr>76<wbr>54<wbr>3.",
        "Revenue was [98](#)[76](#)[54](#)3.",
        "Revenue was _9876543_.",
        "Revenue was __9876543__ dollars.",
        "Revenue was USD9876543.",
        "Revenue was \u31649876543.",
        "Revenue was &sup1;&sup2;&sup3; thousand.",
        "<div>Revenue was 98<span>7654</span>3</div>\n",
        "| year | revenue |\n|---|---|\n| 2024 | 9,876,543 |",
        # Shown by clients though no text of the parse (probe 31: R31-1).
        "9876543. dollars was the total revenue in 2024.",
        "Total revenue in 2024 (USD):\n\n987654321) dollars",
        'Total: <ol start="9876543"><li>dollars</li></ol>',
        '<input value="9876543" readonly> dollars',
        "Total revenue was\n[USD]: 9876543",
        # Digits with no compatibility form, and format characters inside an attribute (probe 32).
        "Revenue was \u277e\u277d\u277c,\u277b\u277a\u2779.",
        "Revenue was \u1371\u1370\u136f.",
        '<input value="98\u180e76\u180e54\u180e3"> dollars',
    ],
)
def test_a_figure_shown_nowhere_is_made_up_however_it_is_written(answer: str) -> None:
    assert made_up(answer, SHOWN)


@pytest.mark.parametrize(
    "answer",
    [
        "I can answer questions about sales and customers.",
        "Revenue was 12,673.6 in 2024.",  # in the result, rounded as written
        "That is about 12,674.",
        "The top 3 are listed above.",  # too small to be a figure
        "Use nl2sql for Q4 questions.",
        "Revenue was **12,673.56** in _2024_.",
        "Sales on 12/31/2024 were in the question.",  # a date the user wrote, squeezed or not
    ],
)
def test_figures_found_in_what_the_model_was_shown_are_not_made_up(answer: str) -> None:
    assert not made_up(answer, SHOWN)


def test_the_text_read_is_what_a_commonmark_client_shows() -> None:
    assert rendered("**a** [b](http://x) <i>c</i><!-- d --> `e` &amp; &#57;").strip() == "a b c e & 9"


def test_the_check_is_bounded_whatever_the_answer_and_what_was_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    # Probe 28 (R28-1): every number shown (a 32 KB message of `1 1 1 …`, in the question and again
    # in the history) was rounded to every figure's places: ~1 s of the event loop a reply.
    many = "1 " * 16_000 + " ".join(str(n) for n in range(100_000))
    assert len(figures._known((many, many, many))) <= figures.MOST_KNOWN
    rounded: list[float] = []

    def counted(value: float, places: int = 0) -> float:
        rounded.append(value)
        return builtins.round(value, places)

    monkeypatch.setattr(figures, "round", counted, raising=False)
    answer = " ".join("9." + "1" * places for places in range(1, 65))  # a figure at each of 64 places
    assert made_up(answer, (many, many))
    assert len(rounded) <= 64 * 9  # each figure and the few values near it, not every value shown
    assert figures._places("1." + "1" * 40) == figures.MOST_PLACES
    # Too long, or too many numbers, to read one by one: made up if it holds a digit at all.
    assert made_up("x " * figures.MOST_RENDERED + "7", ())
    assert not made_up("x " * figures.MOST_RENDERED, ())
    assert made_up(" ".join(["2024"] * (figures.MOST_FIGURES + 1)), SHOWN)


def test_the_characters_removed_are_exactly_unicodes_combining_and_format_characters() -> None:
    every = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ("Mn", "Me", "Cf")}
    assert set(figures._unseen()) == every


def test_only_the_users_last_words_are_read_squeezed_and_only_their_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Probe 32 (R32-4): every text shown was squeezed, NFKD and all; a history of `\ufdfa` (one
    # character, 18 once decomposed) held the interpreter ~1 s a check.
    read: list[int] = []
    squeeze = figures.squeezed

    def recorded(text: str) -> str:
        read.append(len(text))
        return squeeze(text)

    monkeypatch.setattr(figures, "squeezed", recorded)
    long = "\ufdfa" * 262_144
    assert made_up("Revenue was 9,876.", ("q " * 30_000, long, long, long))
    assert len(read) == 3 and max(read) <= max(figures.MOST_SQUEEZED, len("Revenue was 9,876."))


def test_every_character_with_a_digits_value_is_read_as_that_digit() -> None:
    every = {
        c
        for c in range(sys.maxunicode + 1)
        if not ("0" <= chr(c) <= "9") and unicodedata.digit(chr(c), None) is not None
    }
    assert set(figures._digits()) == every


def test_holding_starts_at_any_character_with_a_digits_value() -> None:
    # Probe 33 (R33-1): Ethiopic digits were read as a figure once held, but nothing held them.
    ethiopic = "Total was \u1371\u1370\u136f,\u136e\u136d\u136c"
    assert figures.may_start(ethiopic) == len("Total was ")
    assert figures.may_start("caf\u00e9 au lait") == -1
