"""Documents cut into passages, the unit an index ranks and an answer cites.

A passage holds whole paragraphs up to `size` characters (a longer paragraph is cut between
sentences, or words); each passage after the first starts with the last `overlap` characters of
the one before (cut at a word), so a sentence that straddles a cut is found whole in one of them.
A JSONL document in BEIR's form is already a passage and is kept as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loom.engines.search.documents import Document, MetaValue

DEFAULT_SIZE = 1_200
DEFAULT_OVERLAP = 150
_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    id: str  # the source document's id
    chunk_id: str  # `<id>#<n>`: stable while the document is unchanged
    title: str
    text: str
    metadata: dict[str, MetaValue]


def chunk(document: Document, size: int = DEFAULT_SIZE, overlap: int = DEFAULT_OVERLAP) -> list[Chunk]:
    if size < 100 or not 0 <= overlap < size // 2:
        raise ValueError("a chunk is at least 100 characters, with an overlap under half its size")
    texts = _pack(_pieces(document.text, size), size, overlap)
    return [
        Chunk(document.id, f"{document.id}#{n}", document.title, text, document.metadata)
        for n, text in enumerate(texts or [""])
        if text or n == 0
    ]


def whole(document: Document) -> list[Chunk]:
    """The document as one passage (BEIR's corpora are passages already)."""
    return [Chunk(document.id, f"{document.id}#0", document.title, document.text, document.metadata)]


def _pieces(text: str, size: int) -> list[str]:
    """Paragraphs, and the sentences (or words) of any longer than `size`."""
    pieces: list[str] = []
    for paragraph in (" ".join(p.split()) for p in _PARAGRAPHS.split(text)):
        if len(paragraph) <= size:
            pieces.extend([paragraph] if paragraph else [])
            continue
        for sentence in _SENTENCES.split(paragraph):
            pieces.extend(_words(sentence, size) if len(sentence) > size else [sentence])
    return pieces


def _words(text: str, size: int) -> list[str]:
    out, current = [], ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > size:
            out.append(current)
            current = ""
        current = f"{current} {word}" if current else word[:size]
    return out + ([current] if current else [])


def _pack(pieces: list[str], size: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > size:
            chunks.append(current)
            tail = _tail(current, overlap)
            current = f"{tail} {piece}" if tail and len(tail) + 1 + len(piece) <= size else piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    return chunks + ([current] if current else [])


def _tail(text: str, overlap: int) -> str:
    if overlap == 0:
        return ""
    tail = text[-overlap:]
    cut = tail.find(" ")
    return tail[cut + 1 :] if 0 <= cut < len(tail) - 1 else ""
