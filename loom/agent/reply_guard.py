"""What a model writes that must not reach the user as it is, held back while it streams.

Two things a small model does with a data question would otherwise be shown as the answer:
- it writes the tool call as text (`text_calls`): that is read as the call, and never shown
  (unless it copied the call from a tool result: data that looks like a call stays text);
- it answers in prose around a query it wrote but never ran, often with figures it made up. A
  query the user sees must be one that ran (the product's first rule), so an answer showing one
  that did not is not passed on: before any query has run in the turn, the question goes to the
  data tool for that language instead (a routed call the model then answers from); after one has,
  the unrun query is cut from the answer and the user is told so.

A third is an answer that states figures when no query has run in the turn: the local 1.5B model,
asked "What is the total revenue by year?", wrote a table of years and totals it made up. A figure
(three digits or more, or a decimal) that appears in nothing the model was shown — no tool result
of the conversation, not the question, not the schema — is taken like an unrun query: the question
goes to the data tool; if a data tool was called in the turn and nothing ran, the answer is withheld
and the user told why (routing again would only repeat the failure).

Text streams as it comes except where one of these may be starting: a reply that opens like a call
(`{`, `[`, `<`, a fence) is held until it ends, and from a fence on (```) the rest of a reply is
held until it ends; while no query has run in the turn, so is the rest of a reply from the line
of its first figure or table. Plain prose streams as before. A reply that writes a tool result itself
(`<tool_response>…`), or only empty call markup (`<tools></tools>`), is taken like an unrun query:
the question goes to the data tool.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
import uuid
from bisect import bisect_left
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import islice
from typing import Literal

from loom.agent.model import ModelEvent, ModelReply, TextDelta, ToolCall, ToolCallDelta
from loom.agent.text_calls import echoed_calls, text_calls
from loom.tools.fenced import blocks

FENCE = "```"
CUT = "\n\n(A query the model wrote but did not run was left out: only queries that ran are shown.)"
UNGROUNDED = (
    "The model's answer gave figures that no query in this conversation returned, so it was withheld. "
    "Ask again, naming the table or source if you can."
)
# A fence's label → the query language it holds.
QUERY_FENCES: Mapping[str, str] = {
    **dict.fromkeys(("sql", "tsql", "t-sql", "sqlite", "duckdb", "postgresql", "postgres", "mysql"), "sql"),
    **dict.fromkeys(("sparksql", "databricks", "spark"), "sql"),
    "kql": "kql",
    "kusto": "kql",
    "dax": "dax",
    "gremlin": "gremlin",
}

State = Literal["start", "streaming", "held"]
# The tags of the chat template's tool calling, as a model writes them in text when it fumbles.
_CALL_MARKUP = re.compile(r"</?\s*(?:tools|tool_calls?|function_calls?|tool_response)\s*/?>", re.IGNORECASE)
# A number starts a word: the 2 of `nl2sql` or `Q4` is not a figure.
# Thousands may be separated by commas or the spaces typesetting uses (no-break, thin, narrow).
_NUMBER = re.compile("(?<!\\w)\\d(?:[\\d,\u00a0\u2009\u202f]*\\d)?(?:\\.\\d+)?")
_SEPARATORS = str.maketrans("", "", ",\u00a0\u2009\u202f")
# Where holding starts: a digit, a character reference (`&#x39;`), a superscript, subscript or
# enclosed digit (plain digits once normalised), or a table row.
_FIGURE_OR_TABLE = re.compile(
    "(?<!\\w)\\d|&#|[\u00b2\u00b3\u00b9\u2070-\u209f\u2460-\u24ff\u2776-\u2793]|^[ \t]*\\|", re.MULTILINE
)
MOST_FIGURES = 2_000  # numbers of a reply checked one by one; past that it is taken as made up
MOST_KNOWN = 20_000  # numbers of what the model was shown that ground them (sorted: ~5 ms)
MOST_PLACES = 6  # decimals compared: a figure written to more is compared at six


@dataclass(frozen=True)
class Guard:
    """What the guard needs to know about the round."""

    offered: Collection[str]  # tools offered this round
    routes: Mapping[str, str]  # query language → the data tool that answers it
    question: str  # the user's message, which a routed call asks
    ran: frozenset[str]  # queries that ran in this turn, normalised (`normal`)
    written_for: Mapping[str, str] = field(default_factory=dict)  # dialect → the one source using it
    results: tuple[str, ...] = ()  # the tool results the model was shown (for `echoed_calls`)
    before: str = ""  # the user's question before this one, which a routed follow-up carries
    seen: tuple[str, ...] = ()  # the other texts the model was shown: instructions, questions, answers
    asked: bool = False  # a tool was called in this turn (whether or not a query ran)
    withdrawn: bool = False  # tools were offered before in the turn, and no longer: no call is shown

    @property
    def holds_figures(self) -> bool:
        """Whether an answer's figures are checked: only while no query has run in the turn."""
        return not self.ran and bool(self.routes or self.asked)


def normal(query: str) -> str:
    return " ".join(query.strip().rstrip(";").split()).casefold()


async def guarded(stream: AsyncIterator[ModelEvent], guard: Guard) -> AsyncIterator[ModelEvent]:
    """The stream with what must not be shown held back, and its final reply rewritten to match."""
    state: State = "start"
    # Pieces, joined only when needed: a held reply joined again per delta cost 150 s of CPU for
    # 10 MB sent a few characters at a time (probe 21: R21-2).
    held: list[str] = []
    shown: list[str] = []
    async for event in stream:
        if isinstance(event, TextDelta):
            if state == "held" or (state == "start" and not event.text.strip()):
                held.append(event.text)
                continue
            state, kept, out = _take(state, "".join(held) + event.text, guard.holds_figures)
            held = [kept]
            if out:
                shown.append(out)
                yield TextDelta(out)
        elif isinstance(event, ToolCallDelta):
            if not guard.withdrawn:  # else the loop refuses the call: it must not seem to start
                yield event
        else:
            for final in _decide(event, "".join(held), "".join(shown), guard):
                yield final


def _take(state: State, pending: str, figures: bool = False) -> tuple[State, str, str]:
    """(new state, text still held, text to pass on) after `pending` arrived; with `figures`, the
    text from the line of its first digit on is held too."""
    if state == "start":
        opening = pending.lstrip()
        if not opening:
            return "start", pending, ""
        if opening[0] in "{[<`":
            return "held", pending, ""
        state = "streaming"
    if state == "held":
        return "held", pending, ""
    fence = pending.find(FENCE)
    digit = _first_digit(pending) if figures else -1
    if digit >= 0 and (fence < 0 or digit < fence):
        line = pending.rfind("\n", 0, digit) + 1
        return "held", pending[line:], pending[:line]
    if fence >= 0:
        return "held", pending[fence:], pending[:fence]
    keep = len(pending) - len(pending.rstrip("`"))  # a fence may be arriving a backtick at a time
    return "streaming", pending[len(pending) - keep :], pending[: len(pending) - keep]


def _decide(reply: ModelReply, held: str, shown: str, guard: Guard) -> list[ModelEvent]:
    if reply.tool_calls and held and guard.holds_figures and _ungrounded(held, guard):
        return [replace(reply, text=shown)]  # figures beside its call, before any result (R28-2)
    if reply.tool_calls or not held:
        return [*_text(held), replace(reply, text=shown + held)]
    calls = _decided_calls(held, guard)
    if calls:  # what streamed before them (prose ahead of a fence) stays the message's text
        return [*(_delta(c) for c in calls), replace(reply, text=shown, tool_calls=calls)]
    unrun = _unrun(held, guard.ran)
    routed = next(((label, lang) for label, lang in unrun if lang in guard.routes), None)
    if routed is None and _imitates_a_result(held) and guard.routes:
        routed = ("", next(iter(guard.routes)))  # it wrote the data it wanted instead of asking
    made_up = routed is None and guard.holds_figures and _ungrounded(held, guard)
    if made_up and (guard.asked or not guard.routes):
        withheld = "\n\n" + UNGROUNDED if shown.strip() else UNGROUNDED  # after the prose shown
        return [*_text(withheld), replace(reply, text=shown + withheld, tool_calls=())]
    if made_up:
        routed = ("", next(iter(guard.routes)))  # it answered with figures instead of asking
    if routed is not None and not guard.ran:
        call = _routed(guard, *routed)
        return [_delta(call), replace(reply, text=shown, tool_calls=(call,))]
    kept = _without_unrun(held, guard.ran) + CUT if unrun else held
    return [*_text(kept), replace(reply, text=shown + kept, tool_calls=())]


def _decided_calls(held: str, guard: Guard) -> tuple[ToolCall, ...]:
    """The calls written in `held`, less those copied from a tool result."""
    calls = text_calls(held, guard.offered)
    if not calls or not guard.results:
        return calls
    echoed = echoed_calls(guard.results, guard.offered)
    if echoed is None:  # a result too costly to read in full: any call may be copied from it
        return ()
    return tuple(c for c in calls if (c.name, c.arguments) not in echoed)


def _imitates_a_result(text: str) -> bool:
    """A reply that writes a tool result itself (`<tool_response>{…}`: the local 1.5B model, asked
    a follow-up, copied the shape of the last result) answers from data no tool returned; or one
    that is only call markup with nothing in it (`<tools></tools>`: the same model, offered
    `nl2kql`, meant to call it and did not say with what)."""
    return "<tool_response>" in text.lower() or _only_call_markup(text)


def _first_digit(text: str) -> int:
    """Where the first figure, or a table that may hold figures, starts (-1: neither yet)."""
    found = _FIGURE_OR_TABLE.search(text)
    return found.start() if found is not None else -1


def _ungrounded(text: str, guard: Guard) -> bool:
    """Whether `text` states a figure found in nothing the model was shown, rounded as it is
    written (12,673.45 in a result grounds "12,673" and "12,673.5"). Digits split by emphasis or
    invisible characters (`1**23**45`, `4\u200b873`) are read as the figure they render. Bounded:
    a reply with more than MOST_FIGURES figures is not checked figure by figure but taken as made
    up; each figure is looked up among the first MOST_KNOWN numbers shown, sorted once (rounding
    each of them to each figure's places cost a second of the event loop: probe 28, R28-1)."""
    numbers = _numbers(_as_rendered(text), MOST_FIGURES + 1)
    figures = [f for f in numbers if len(f.replace(".", "")) >= 3 or "." in f]
    if len(numbers) > MOST_FIGURES:
        return True
    known = _known(guard)
    missing = [f for f in figures if f not in known]  # most are written as shown
    if not missing:
        return False
    values = sorted(_value(k) for k in known)
    return any(not _rounds_to(f, values) for f in missing)


def _rounds_to(figure: str, values: list[float]) -> bool:
    """Whether one of the sorted `values`, rounded to the figure's places, is the figure."""
    places = _places(figure)
    target = round(_value(figure), places)
    half = 0.5 * 10.0**-places * (1 + 1e-9) + abs(target) * 1e-12  # a rounding's reach, and float error
    at = bisect_left(values, target - half)
    return any(round(v, places) == target for v in islice(values, at, at + 8) if v <= target + half)


def _value(number: str) -> float:
    return float(number) if len(number) < 400 else float("inf")  # past 10^400 nothing is finite


def _as_rendered(text: str) -> str:
    """`text` as a Markdown client shows its figures: character references decoded (`&#57;` is 9),
    compatibility forms made plain (superscript and full-width digits), and emphasis marks,
    combining marks and invisible format characters removed, all of which split a figure's
    digits in the source but not on screen (probes 28 and 29: R28-2, R29-2)."""
    text = html.unescape(text) if "&" in text else text
    text = text.translate(_EMPHASIS)
    if text.isascii():
        return text
    return unicodedata.normalize("NFKD", text).translate(_unseen())


_EMPHASIS = str.maketrans("", "", "*_`~")


@cache
def _unseen() -> dict[int, None]:
    """Combining marks and format characters (Unicode categories Mn, Me, Cf: accents, zero-width
    spaces and joiners, direction marks, tags), to delete. All lie in planes 0, 1 and 14 (checked
    against the whole range in tests/agent/test_reply_guard.py); built once, ~12 ms."""
    ranges = (range(0x80, 0x20000), range(0xE0000, 0xE1000))
    return {c: None for r in ranges for c in r if unicodedata.category(chr(c)) in ("Mn", "Me", "Cf")}


def _known(guard: Guard) -> set[str]:
    """The numbers in what the model was shown, as written (the first MOST_KNOWN)."""
    known: set[str] = set()
    left = MOST_KNOWN
    for text in (guard.question, guard.before, *guard.results, *guard.seen):
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


def _only_call_markup(text: str) -> bool:
    return bool(_CALL_MARKUP.search(text)) and not _CALL_MARKUP.sub("", text).strip()


def _routed(guard: Guard, label: str, language: str) -> ToolCall:
    """The question, to the data tool for `language`; to the source the block was written for when
    its label names the dialect of exactly one of the turn's sources (```sqlite → the SQLite one).
    A follow-up carries the question before it: "And in 2025?" alone cannot be answered."""
    question = guard.question
    if guard.before:
        question += f"\n(The question before it: {guard.before})"
    arguments = {"question": question}
    if label in guard.written_for:
        arguments["source"] = guard.written_for[label]
    return ToolCall(f"call_{uuid.uuid4().hex[:24]}", guard.routes[language], json.dumps(arguments))


def _unrun(text: str, ran: frozenset[str]) -> list[tuple[str, str]]:
    """(label, language) of each query block in `text` that did not run."""
    return [
        (info, QUERY_FENCES[info])
        for info, body in blocks(text)
        if info in QUERY_FENCES and normal(body) not in ran
    ]


def _without_unrun(text: str, ran: frozenset[str]) -> str:
    """`text` without its query blocks that did not run (an unclosed block is left as written)."""
    parts = text.split(FENCE)
    out = [parts[0]]
    for i in range(1, len(parts)):
        if i % 2 == 0:
            out.append(parts[i])
        elif i == len(parts) - 1:
            out.append(FENCE + parts[i])
        elif not _is_unrun(parts[i], ran):
            out.append(FENCE + parts[i] + FENCE)
    return "".join(out).strip()


def _is_unrun(fenced: str, ran: frozenset[str]) -> bool:
    info, _, body = fenced.partition("\n")
    return info.strip().lower() in QUERY_FENCES and normal(body) not in ran


def _text(text: str) -> list[ModelEvent]:
    return [TextDelta(text)] if text else []


def _delta(call: ToolCall) -> ToolCallDelta:
    return ToolCallDelta(id=call.id, name=call.name, arguments=call.arguments)
