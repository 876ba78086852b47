"""Build or update an index folder from documents (`loom index build`).

An update re-reads only the documents whose fingerprint changed (a file's size and modification
time; a JSONL line's hash), removes the passages of documents that are gone, and keeps the rest.
A change the index cannot take in place — other chunking, another embedding model, a metadata
field that is new or changed type — rebuilds it whole, into a fresh folder swapped in at the end,
so a failed build leaves the previous index as it was.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tantivy

from loom.engines.contracts import Embedder
from loom.engines.search.chunks import Chunk, chunk, whole
from loom.engines.search.documents import Entry, UnreadableDocument, entries
from loom.engines.search.store import DocumentState, Manifest, field_type, open_index, usable_field
from loom.engines.search.vectors import Vectors

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)
EMBED_BATCH = 64


@dataclass
class BuildReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    passages: int = 0
    rebuilt: bool = False
    embedding_model: str | None = None  # the model whose vectors the passages have
    skipped: list[str] = field(default_factory=list)  # why, one line per document
    seconds: float = 0.0


@dataclass(frozen=True)
class BuildOptions:
    size: int
    overlap: int
    embedder: Embedder | None = None
    embedding_model: str | None = None


def build_index(
    source: Path, out: Path, options: BuildOptions, progress: Progress | None = None, *, whole: bool = False
) -> BuildReport:
    """Build `out` from `source`, or update it in place; `whole` rebuilds it even when it could be
    updated (into a fresh folder: the index in `out` serves until the new one replaces it)."""
    started = time.perf_counter()
    listed = list(entries(source))
    known = None if whole else _known(out, options)
    report = BuildReport(rebuilt=known is None)
    manifest = known or Manifest(chunk_size=options.size, chunk_overlap=options.overlap,
                                 embedding_model=options.embedding_model)  # fmt: skip
    wanted = {e.id: e for e in listed}
    changed = [
        e
        for e in listed
        if e.id not in manifest.documents or manifest.documents[e.id].fingerprint != e.fingerprint
    ]
    removed = [d for d in manifest.documents if d not in wanted]
    chunks = _read(changed, options, report, progress)
    fields = _fields(manifest.fields, chunks)
    if known is not None and fields != manifest.fields:
        log.info("metadata fields changed: the index is rebuilt whole")
        return build_index(source, out, options, progress, whole=True)
    report.added = sum(1 for e in changed if e.id not in manifest.documents and e.id in chunks)
    report.updated = sum(1 for e in changed if e.id in manifest.documents)
    report.removed, report.unchanged = len(removed), len(listed) - len(changed)
    target = out if known is not None else out.parent / f".{out.name}.building"
    if known is None:
        shutil.rmtree(target, ignore_errors=True)
    manifest.fields = fields
    _write(target, manifest, chunks, [e.id for e in changed] + removed, create=known is None)
    _vectors(target, options, chunks, [e.id for e in changed] + removed, progress)
    for doc_id in removed:
        manifest.documents.pop(doc_id, None)
    for entry in changed:
        if entry.id in chunks:
            manifest.documents[entry.id] = DocumentState(entry.fingerprint, len(chunks[entry.id]))
        else:
            manifest.documents.pop(entry.id, None)  # unreadable now: its old passages went too
    manifest.save(target)
    if known is None:
        _swap(target, out)
    report.passages = sum(d.chunks for d in manifest.documents.values())
    report.embedding_model = manifest.embedding_model
    report.seconds = time.perf_counter() - started
    return report


def _known(out: Path, options: BuildOptions) -> Manifest | None:
    """The index in `out` when it can be updated in place with these options."""
    if not (out / "manifest.json").is_file():
        return None
    try:
        manifest = Manifest.load(out)
    except Exception:  # a damaged index is rebuilt, not patched
        return None
    same = (manifest.chunk_size, manifest.chunk_overlap, manifest.embedding_model) == (
        options.size, options.overlap, options.embedding_model
    )  # fmt: skip
    return manifest if same else None


def _read(
    changed: Sequence[Entry], options: BuildOptions, report: BuildReport, progress: Progress | None
) -> dict[str, list[Chunk]]:
    out: dict[str, list[Chunk]] = {}
    for n, entry in enumerate(changed, start=1):
        try:
            document = entry.read()
        except UnreadableDocument as e:
            log.warning("skipped %s", e)
            report.skipped.append(str(e))
            continue
        out[entry.id] = (
            whole(document) if entry.line is not None else chunk(document, options.size, options.overlap)
        )
        if progress:
            progress("reading", n, len(changed))
    return out


def _fields(known: dict[str, str], chunks: dict[str, list[Chunk]]) -> dict[str, str]:
    seen: dict[str, list[object]] = {}
    for passages in chunks.values():
        for key, value in passages[0].metadata.items():
            if usable_field(key):
                seen.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    fields = dict(known)
    for key, values in seen.items():
        kind = field_type(values)
        fields[key] = kind if key not in known or known[key] == kind else "text"
    return fields


def _write(
    target: Path, manifest: Manifest, chunks: dict[str, list[Chunk]], gone: list[str], *, create: bool
) -> None:
    index = open_index(target, manifest.fields, create=create)
    writer = index.writer(heap_size=128_000_000, num_threads=1)
    for doc_id in gone:
        writer.delete_documents_by_term("id", doc_id)
    for passages in chunks.values():
        for passage in passages:
            writer.add_document(_document(passage, manifest.fields))
    writer.commit()
    writer.wait_merging_threads()


def _document(passage: Chunk, fields: dict[str, str]) -> tantivy.Document:
    values: dict[str, object] = {
        "id": passage.id, "chunk_id": passage.chunk_id, "title": passage.title, "text": passage.text
    }  # fmt: skip
    for key, value in passage.metadata.items():
        kind = fields.get(key)
        if kind is None:
            continue
        items = value if isinstance(value, list) else [value]
        values[key] = (
            [str(v) for v in items] if kind == "text" else [float(v) if kind == "float" else v for v in items]
        )
    return tantivy.Document(**values)


def _vectors(
    target: Path,
    options: BuildOptions,
    chunks: dict[str, list[Chunk]],
    gone: list[str],
    progress: Progress | None,
) -> None:
    if options.embedder is None:
        return
    vectors = Vectors.load(target) or Vectors.empty()
    vectors = vectors.without(set(gone))
    passages = [p for ps in chunks.values() for p in ps]
    for start in range(0, len(passages), EMBED_BATCH):
        batch = passages[start : start + EMBED_BATCH]
        embedded = options.embedder.embed([f"{p.title}\n{p.text}" for p in batch])
        vectors = vectors.with_added([p.chunk_id for p in batch], embedded)
        if progress:
            progress("embedding", min(start + EMBED_BATCH, len(passages)), len(passages))
    vectors.save(target)


def _swap(built: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        built.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        built.rename(out)
