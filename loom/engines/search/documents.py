"""What an index is built from: documents read from files — text, Markdown (with YAML front
matter), HTML and PDF — or from a JSONL file in BEIR's form (`_id`, `title`, `text`, other fields
kept as metadata), each with an id, a title, its text and metadata fields.

A file's id is its path relative to the folder given (stable across builds, so an update finds
what changed); a JSONL line's is its `_id`. A file that cannot be read (a PDF without a text
layer, a broken file) is reported and skipped; the rest are read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".text", ".rst"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
PDF_SUFFIXES = frozenset({".pdf"})
SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
MetaValue = str | int | float | bool | list[str]


class UnreadableDocument(Exception):
    """A file that could not be read as a document; the message says why, in a line."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    metadata: dict[str, MetaValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """One document to (re)index: where it comes from, and a fingerprint that changes with it."""

    id: str
    fingerprint: str
    path: Path
    line: str | None = None  # a JSONL line's own text

    def read(self) -> Document:
        if self.line is not None:
            return jsonl_document(json.loads(self.line))
        return read_file(self.path, self.id)


def entries(source: Path) -> Iterator[Entry]:
    """Every document under `source` (a file, a folder of files, or a .jsonl file), in a stable order."""
    if source.is_file() and source.suffix.lower() in (".jsonl", ".ndjson"):
        yield from _jsonl_entries(source)
    elif source.is_file():
        yield _file_entry(source, source.name)
    elif source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            if path.suffix.lower() in SUFFIXES and not any(part.startswith(".") for part in path.parts):
                yield _file_entry(path, path.relative_to(source).as_posix())
            elif path.suffix.lower() in (".jsonl", ".ndjson"):
                yield from _jsonl_entries(path)
    else:
        raise FileNotFoundError(f"no such file or folder: {source}")


def _file_entry(path: Path, key: str) -> Entry:
    stat = path.stat()
    return Entry(key, f"{stat.st_size}:{stat.st_mtime_ns}", path)


def _jsonl_entries(path: Path) -> Iterator[Entry]:
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key = str(item["_id"])
            except (ValueError, KeyError, TypeError):
                log.warning("%s line %d is not a JSON object with an _id: skipped", path.name, number)
                continue
            yield Entry(key, hashlib.sha1(line.encode()).hexdigest(), path, line)


def jsonl_document(item: dict[str, object]) -> Document:
    """A BEIR line: `_id`, `title`, `text`; `metadata` (an object) and any other fields as metadata."""
    extra = {k: v for k, v in item.items() if k not in ("_id", "title", "text", "metadata")}
    nested = item.get("metadata")
    if isinstance(nested, dict):
        extra = {**nested, **extra}
    return Document(
        str(item["_id"]), str(item.get("title") or ""), str(item.get("text") or ""), metadata_of(extra)
    )


def read_file(path: Path, key: str) -> Document:
    suffix = path.suffix.lower()
    try:
        if suffix in PDF_SUFFIXES:
            return _pdf(path, key)
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UnreadableDocument(f"{key}: {e.strerror or e}") from None
    if suffix in MARKDOWN_SUFFIXES:
        return _markdown(raw, key)
    if suffix in HTML_SUFFIXES:
        return _html(raw, key)
    return Document(key, _first_line(raw) or Path(key).stem, raw)


def _markdown(raw: str, key: str) -> Document:
    metadata: dict[str, object] = {}
    text = raw
    if raw.startswith("---"):
        head, sep, body = raw[3:].partition("\n---")
        if sep:
            try:
                loaded = yaml.safe_load(head)
            except yaml.YAMLError:
                loaded = None
            if isinstance(loaded, dict):
                metadata, text = loaded, body.partition("\n")[2]
    title = str(metadata.pop("title", "") or "") or _heading(text) or Path(key).stem
    return Document(key, title, text, metadata_of(metadata))


def _html(raw: str, key: str) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    for hidden in soup(["script", "style", "noscript", "template"]):
        hidden.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    heading = soup.find("h1")
    body = soup.body or soup
    text = body.get_text("\n", strip=True)
    return Document(
        key, title or (heading.get_text(" ", strip=True) if heading else "") or Path(key).stem, text
    )


def _pdf(path: Path, key: str) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str(reader.metadata.title or "") if reader.metadata else ""
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as e:
        raise UnreadableDocument(f"{key}: not a readable PDF ({type(e).__name__})") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise UnreadableDocument(f"{key}: the PDF has no text layer (a scan needs OCR first)")
    return Document(key, title or _first_line(text) or Path(key).stem, text)


def metadata_of(raw: dict[str, object]) -> dict[str, MetaValue]:
    """Fields an index can filter on: text, numbers, booleans, lists of text; others as text."""
    out: dict[str, MetaValue] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if isinstance(value, bool | int | float | str):
            out[str(key)] = value
        elif isinstance(value, list):
            out[str(key)] = [str(v) for v in value if v is not None]
        else:
            out[str(key)] = str(value)  # dates from YAML, nested objects: as text
    return out


def _heading(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def _first_line(text: str) -> str:
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line[:200]
