"""Tool calls a model wrote as text instead of through the `tools` API.

Small open models often answer a tool-calling request with the call itself in their text: bare JSON,
a ```json block, the `<tool_call>…</tool_call>` tags of their chat template, or — seen from
Qwen2.5-Coder-1.5B on every data question of the smoke suite — a `<tools>` block holding the JSON,
sometimes with doubled braces (`{{…}}}`), a tag named after the tool with its arguments as
attributes (`<nl2sql question="…" />`), or a generic call tag naming it (`<call function="nl2sql"
arguments='{"question": "…"}'/>`, then a table it made up; `<tool-call name="graph_search" …/>`,
then an answer it made up). The endpoint passes all of these on as
plain text. Every JSON object in the text that is a call of a tool the turn offered is read as that
call (the same call written twice counts once); anything else stays text. The reply guard asks only
about text that opened like a call, or that follows a fence: prose that mentions a call is not run;
nor is a call the model copied from data (`echoed_calls`: one found in a tool result it was shown),
which is data that looks like a call, not the model's decision.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser

from loom.agent.model import ToolCall

# Every scan here is bounded: it runs on the event loop, over a reply of up to
# LOOM_MODEL_MAX_REPLY_CHARS and over every tool result of the turn. Tried at every brace of
# 262,000 `{`, the JSON decoder took 17 s (each failure counts lines from the start of the text),
# and HTMLParser 47 s over 50,000 characters of `<a ` (probe 22: R22-7, R22-8); bounded per table
# cell, the check of one result for echoed calls still cost 300 ms (probe 23: R23-3). So one text
# (a reply, or a result with all its cells) has one `Budget`, and a result is checked once.
WINDOW = 16_384  # the most of the text one call may span: a name and a few arguments
TAG_WINDOW = 4_096  # the same for a tag (a name and an attribute or two)
TRY_CHARS = 1_024  # what a try costs at the least (its window is copied): 512 tries a text at most
# The rest of a start tag, to its `>`: quoted values may hold one. The alternatives start with
# different characters, so the match cannot backtrack.
_TAG_REST = re.compile(r"""(?:[^>"']|"[^"]*"|'[^']*')*>""")
# Tags that name the tool in an attribute rather than in the tag (`<call function="nl2sql" …>`).
CALL_TAGS = ("call", "function", "tool_call", "tool-call", "function_call", "invoke", "tool")
_NAME_ATTRS = ("function", "name", "tool")
_ARGUMENT_ATTRS = ("arguments", "parameters", "args")


@dataclass
class Budget:
    """What the scans of one text may spend: characters the JSON decoder reads, and characters of
    tags the HTML parser reads (each ~1 µs), a tag and a piece (a table cell) counted at their cost
    at the least: a parser run is ~35 µs however short its tag (probe 24: R24-3). A call is found
    long before either runs out."""

    decode_chars: int = 512 * 1024
    tag_chars: int = 16 * 1024

    @property
    def spent(self) -> bool:
        return self.decode_chars <= 0 or self.tag_chars <= 0


TAG_COST = 256  # characters of the tag budget a parser run costs at the least
PIECE_COST = 64  # characters of the decode budget looking at one piece of a result costs


def text_calls(text: str, offered: Collection[str]) -> tuple[ToolCall, ...]:
    """The calls of offered tools written in `text`, in order (none when there are none)."""
    budget = Budget()
    calls = _distinct(_call(item, offered) for item in _json_objects(text, budget))
    # The tag form only when no JSON call was written: the 1.5B model often writes both, the
    # JSON one being the call it means.
    return calls or _distinct(_call(item, offered) for item in _tag_calls(text, offered, budget))


def _distinct(found: Iterable[ToolCall | None]) -> tuple[ToolCall, ...]:
    """The calls in order, the same call written twice once."""
    calls: list[ToolCall] = []
    seen: set[tuple[str, str]] = set()
    for call in found:
        if call is not None and (call.name, call.arguments) not in seen:
            seen.add((call.name, call.arguments))
            calls.append(call)
    return tuple(calls)


def echoed_calls(results: Iterable[str], offered: Collection[str]) -> frozenset[tuple[str, str]] | None:
    """(name, arguments) of each call of an offered tool written inside tool results: in the text,
    or in any string value of it when it is JSON (a table cell holding a call). None when a result
    could not be read in full within its budget: then any call may be one copied from it."""
    found: set[tuple[str, str]] = set()
    for text in results:
        echoes = _echoes(text, frozenset(offered))
        if echoes is None:
            return None
        found.update(echoes)
    return frozenset(found)


@lru_cache(maxsize=256)  # a turn's results are the same at each of its replies
def _echoes(text: str, offered: frozenset[str]) -> frozenset[tuple[str, str]] | None:
    budget, reader = Budget(), _Tags(offered)
    found: set[tuple[str, str]] = set()
    for piece in (text, *_strings(_parsed(text))):
        budget.decode_chars -= PIECE_COST
        if budget.spent:
            return None
        # Both forms, whichever text_calls would read: a cell holding a tag-form call is data
        # too (probe 12: R12-7, a cell `<nl2sql question="…" />` quoted back ran as a call).
        calls = (
            *_distinct(_call(i, offered) for i in _json_objects(piece, budget)),
            *_distinct(_call(i, offered) for i in _tag_calls(piece, offered, budget, reader)),
        )
        found.update((c.name, c.arguments) for c in calls)
    return None if budget.spent else frozenset(found)


def _parsed(text: str) -> object:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None


def _strings(item: object) -> Iterator[str]:
    """Every string inside `item` that may hold a call, walked without recursion (a result nested
    as deep as the JSON decoder allows would overflow the stack)."""
    stack = [item]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "{" in value or "<" in value:
                yield value
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))


def _json_objects(text: str, budget: Budget) -> Iterator[object]:
    """Each JSON object in `text` of up to WINDOW characters, outermost first, while the budget
    lasts; text that is not JSON is skipped."""
    decoder = json.JSONDecoder()
    at = text.find("{")
    while at >= 0 and budget.decode_chars > 0:
        window = text[at : at + min(WINDOW, budget.decode_chars)]
        try:
            item, length = decoder.raw_decode(window)
        except json.JSONDecodeError as e:
            budget.decode_chars -= max(e.pos + 1, TRY_CHARS)  # what it read before it failed
            at = text.find("{", at + 1)  # `{{…}}`: the object may start at the next brace
            continue
        except RecursionError:  # nested past the decoder's depth: not a call (probe 12)
            return
        budget.decode_chars -= max(length, TRY_CHARS)
        yield item
        at = text.find("{", at + length)


def _tag_calls(
    text: str, offered: Collection[str], budget: Budget, reader: _Tags | None = None
) -> list[dict[str, object]]:
    """Calls written as tags named after a tool, the arguments as attributes
    (`<nl2sql question="…" source="sales" />`), as {"name", "arguments"} items. Only the tags
    that open with an offered tool's name go to the HTML parser, each alone."""
    if "<" not in text:
        return []
    reader = reader or _Tags(frozenset(offered))
    reader.found = []
    for tag in _tags_of(text, offered, budget):
        reader.feed(tag)
        reader.close()
        reader.reset()
    return reader.found


def _tags_of(text: str, offered: Collection[str], budget: Budget) -> list[str]:
    """Each start tag `<tool …>` in `text`, in order, while the budget lasts. A tag does not start
    inside another: `<nl2sql <nl2sql … >` is one, not one per name."""
    names = (*offered, *CALL_TAGS)
    starts = sorted(at for name in names for at in _finds(text, "<" + name, budget.tag_chars // 8))
    tags: list[str] = []
    after = 0
    for at in starts:
        if at < after or budget.tag_chars <= 0:
            continue
        rest = _TAG_REST.match(text, at + 1, at + min(TAG_WINDOW, budget.tag_chars))
        if rest is None:
            budget.tag_chars -= TAG_WINDOW // 16  # the regex's look for a `>` (~16 times cheaper)
            continue
        tags.append(text[at : rest.end()])
        budget.tag_chars -= max(rest.end() - at, TAG_COST)
        after = rest.end()
    return tags


def _finds(text: str, sought: str, most: int) -> Iterator[int]:
    at = text.find(sought)
    for _ in range(most):
        if at < 0:
            return
        yield at
        at = text.find(sought, at + 1)


class _Tags(HTMLParser):
    """Reads tags only: no entities beyond HTML's own are expanded, nothing is fetched."""

    def __init__(self, offered: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.offered = offered
        self.found: list[dict[str, object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v for k, v in attrs if v is not None}
        if tag in self.offered and named:
            self.found.append({"name": tag, "arguments": named})
        elif tag in CALL_TAGS:
            self.found.extend(_named_call(named))

    handle_startendtag = handle_starttag


def _named_call(named: dict[str, str]) -> list[dict[str, object]]:
    """The call a generic tag names (`<call function="nl2sql" arguments='{…}'/>`): its arguments
    the JSON of an arguments attribute, or else the tag's other attributes."""
    name = next((named.pop(k) for k in _NAME_ATTRS if k in named), None)
    arguments: object = next((named.pop(k) for k in _ARGUMENT_ATTRS if k in named), named)
    return [{"name": name, "arguments": arguments}] if name else []


def _call(item: object, offered: Collection[str]) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    function = item.get("function") if isinstance(item.get("function"), dict) else item
    assert isinstance(function, dict)
    name = function.get("name")
    arguments = function.get("arguments", function.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or name not in offered or not isinstance(arguments, dict):
        return None
    return ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=name, arguments=json.dumps(arguments))
