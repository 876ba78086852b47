"""Citations that cite nothing: an answer's `[n]` when no passage `n` was handed out in its turn.

The local 1.5B model, asked what a term means, wrote "I'll search the policies" and a definition
ending in `[1]` without calling the search: the mark looked like a source it never read. The
answer has streamed by then; the user is told, after it, which marks stand on no passage.
"""

from __future__ import annotations

import re

_MARK = re.compile(r"\[(\d{1,3})\](?!\()")  # [n], not a Markdown link's [text](url)


def unbacked(text: str, handed_out: int) -> list[int]:
    """The citation numbers in `text` beyond the `handed_out` passages of the turn, in order."""
    marks = sorted({int(m) for m in _MARK.findall(text)})
    return [n for n in marks if n < 1 or n > handed_out]


def unbacked_notice(marks: list[int]) -> str:
    shown = ", ".join(f"[{n}]" for n in marks)
    return (
        f"Note: {shown} above cites no passage — no document search in this turn returned one, "
        "so that part of the answer does not come from the documents."
    )
