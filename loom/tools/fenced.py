"""Pulling the query out of a model's reply: the first fenced block in the wanted language.

This only finds the text; whether it is safe to run is decided by the engine's parser.
"""

from __future__ import annotations

FENCE = "```"


def blocks(reply: str) -> list[tuple[str, str]]:
    """(info string, body) for each complete fenced block, in order."""
    found: list[tuple[str, str]] = []
    parts = reply.split(FENCE)
    # Odd-indexed parts are inside fences; a trailing unclosed fence has no closing part.
    for i in range(1, len(parts) - 1, 2):
        info, _, body = parts[i].partition("\n")
        found.append((info.strip().lower(), body.strip()))
    return found


def extract_query(reply: str, language: str) -> str | None:
    """The body of the first ```<language> block, else of the first unlabeled block, else None."""
    found = blocks(reply)
    for info, body in found:
        if info == language and body:
            return body
    for info, body in found:
        if not info and body:
            return body
    return None
