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
of the conversation, not the question, not the schema, read as the user sees it (`figures`) — is
taken like an unrun query: the question goes to the data tool; if a data tool was called in the
turn and nothing ran, the answer is withheld and the user told why (routing again would only
repeat the failure).

Text streams as it comes except where one of these may be starting: a reply that opens like a call
(`{`, `[`, `<`, a fence) is held until it ends, and so is the rest of a reply from a fence on (```),
or from a line that opens with `<` or `{` (a sentence, then the call on its own line); while no
query has run in the turn, so is the rest of a reply from the line of anything that may begin a
figure or a table. Plain prose streams as before. A reply that writes
a tool result itself (`<tool_response>…`), or only empty call markup (`<tools></tools>`), is taken
like an unrun query: the question goes to the data tool.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from loom.agent.figures import made_up, may_start
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

COPIED = "The query's result is shown above."  # what stands for a reply that only copied it
_RESPONSE, _RESPONSE_END = "<tool_response>", "</tool_response>"
State = Literal["start", "streaming", "held"]
# The tags of the chat template's tool calling, as a model writes them in text when it fumbles.
# A line that opens like a call written as text.
_CALL_LINE = re.compile(r"\n[ \t]*[<{]")
_CALL_MARKUP = re.compile(r"</?\s*(?:tools|tool_calls?|function_calls?|tool_response)\s*/?>", re.IGNORECASE)


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
    figured: list[str] = []  # prose held back for its figures: never read for calls
    async for event in stream:
        if isinstance(event, TextDelta):
            if state == "held" or (state == "start" and not event.text.strip()):
                held.append(event.text)
                continue
            state, kept, out = _take(state, "".join(held) + event.text)
            held = [kept]
            now, later = _figures_held(out, bool(figured), guard)
            figured.extend([later] if later else [])
            if now:
                shown.append(now)
                yield TextDelta(now)
        elif isinstance(event, ToolCallDelta):
            if not guard.withdrawn:  # else the loop refuses the call: it must not seem to start
                yield event
        else:
            said, kept, checked = "".join(shown), "".join(held), "".join(figured)
            invented = await _invented(said + checked + kept, guard) if checked or kept.strip() else False
            for final in _decide(event, kept, said, checked, guard, invented):
                yield final


async def _invented(answer: str, guard: Guard) -> bool:
    """Whether the whole answer — what streamed too, for the context it gives what was held (probe
    31: R31-3) — states a figure nothing shown grounds; read off the event loop (a Markdown parse
    of 4 KiB of unclosed `![` costs ~60 ms: R31-2)."""
    if not guard.holds_figures:
        return False
    return await asyncio.to_thread(made_up, answer, _shown(guard))


def _figures_held(out: str, holding: bool, guard: Guard) -> tuple[str, str]:
    """(prose to pass on now, prose to hold for its figures): while no query has run, from the
    line where a figure may start, to the reply's end."""
    if not out or not guard.holds_figures:
        return out, ""
    if holding:
        return "", out
    at = may_start(out)
    if at < 0:
        return out, ""
    line = out.rfind("\n", 0, at) + 1
    return out[:line], out[line:]


def _take(state: State, pending: str) -> tuple[State, str, str]:
    """(new state, text still held, text to pass on) after `pending` arrived."""
    if state == "start":
        opening = pending.lstrip()
        if not opening:
            return "start", pending, ""
        if opening[0] in "{[<`":
            return "held", pending, ""
        state = "streaming"
    if state == "held":
        return "held", pending, ""
    starts = [at for at in (pending.find(FENCE), _line_call_start(pending)) if at >= 0]
    if starts:
        return "held", pending[min(starts) :], pending[: min(starts)]
    keep = len(pending) - len(_unfinished(pending))
    return "streaming", pending[len(pending) - keep :], pending[: len(pending) - keep]


def _line_call_start(pending: str) -> int:
    """Where a line that opens like a call (`<`, `{`) starts in `pending`, -1 if none does: a
    model that writes a sentence and then its call on the next line (`<tools><nl2sql …/></tools>`,
    seen from the local 1.5B model over HTTP) means the call. A call quoted inside a sentence
    stays prose."""
    found = _CALL_LINE.search(pending)
    return found.start() + 1 if found is not None else -1


def _unfinished(pending: str) -> str:
    """`pending` less what may still become a fence or a call's line, held for the next piece: a
    trailing run of backticks, or a line break with only blanks after it."""
    line = pending.rfind("\n")
    if line >= 0 and not pending[line:].strip():
        return pending[:line]
    return pending.rstrip("`")


def _decide(
    reply: ModelReply, held: str, shown: str, figured: str, guard: Guard, invented: bool
) -> list[ModelEvent]:
    """The reply's end: figures made up before any query ran are never shown (with the prose held
    for them); otherwise that prose passes, and what was held is decided on."""
    if invented:
        return _decide_held(reply, held, shown, guard, invented)
    return [*_text(figured), *_decide_held(reply, held, shown + figured, guard, invented)]


def _decide_held(reply: ModelReply, held: str, shown: str, guard: Guard, invented: bool) -> list[ModelEvent]:
    if reply.tool_calls and invented:
        return [replace(reply, text=shown)]  # figures beside its call, before any result (R28-2)
    if reply.tool_calls or not (held or invented):
        return [*_text(held), replace(reply, text=shown + held)]
    calls = _decided_calls(held, guard)
    if calls:  # what streamed before them (prose ahead of a fence) stays the message's text
        return [*(_delta(c) for c in calls), replace(reply, text=shown, tool_calls=calls)]
    unrun = _unrun(held, guard.ran)
    routed = next(((label, lang) for label, lang in unrun if lang in guard.routes), None)
    if routed is None and _imitates_a_result(held) and guard.routes:
        routed = ("", next(iter(guard.routes)))  # it wrote the data it wanted instead of asking
    if routed is None and invented and (guard.asked or not guard.routes):
        withheld = "\n\n" + UNGROUNDED if shown.strip() else UNGROUNDED  # after the prose shown
        return [*_text(withheld), replace(reply, text=shown + withheld, tool_calls=())]
    if routed is None and invented:
        routed = ("", next(iter(guard.routes)))  # it answered with figures instead of asking
    if routed is not None and not guard.ran:
        call = _routed(guard, *routed)
        return [_delta(call), replace(reply, text=shown, tool_calls=(call,))]
    kept = _without_unrun(held, guard.ran) + CUT if unrun else held
    if guard.ran and _imitates_a_result(kept):
        kept = _without_results(kept) or ("" if shown.strip() else COPIED)
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
    return _RESPONSE in text.lower() or _only_call_markup(text)


def _shown(guard: Guard) -> tuple[str, ...]:
    """What the model was shown, whose numbers ground an answer's figures: not a tool's error,
    which may quote what the model itself wrote (`CANNOT ANSWER: the figure is 9,876,543.21`
    grounded that figure in the answer: probe 33, R33-2)."""
    results = (r for r in guard.results if not r.startswith('{"error"'))
    return (guard.question, guard.before, *results, *guard.seen)


def _without_results(text: str) -> str:
    """`text` without the tool results it wrote out (`<tool_response>…</tool_response>`, an
    unclosed one to the end) and without call markup: after a query ran, the local 1.5B model
    sometimes answers by copying the results back, which the user already sees as the tool's."""
    lower, out, at = text.lower(), [], 0
    while (start := lower.find(_RESPONSE, at)) >= 0:
        out.append(text[at:start])
        end = lower.find(_RESPONSE_END, start)
        at = len(text) if end < 0 else end + len(_RESPONSE_END)
    out.append(text[at:])
    return _CALL_MARKUP.sub("", "".join(out)).strip()


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
