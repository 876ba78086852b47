"""An index folder: a tantivy index (`tantivy/`), the manifest that says what it holds
(`manifest.json`: the fields and their types, the chunking, each document's fingerprint and chunk
count, the embedding model), and, when an embedding model built it, the passages' vectors
(`vectors.npy`, unit length, in the order of `vector_ids.json`).

Passage fields: `id` (the source document's), `chunk_id`, `title`, `text` (English stemming, BM25),
and one field per metadata key, typed from the values seen (text kept whole for exact matches;
integers, floats, booleans as numbers for ranges). A key whose values disagree in type is text.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tantivy

FORMAT = 1
RESERVED = frozenset({"id", "chunk_id", "title", "text", "score"})
FieldType = str  # "text" | "int" | "float" | "bool"


class IndexUnreadable(Exception):
    """A folder that is not a readable index; the message says why in a line."""


@dataclass
class DocumentState:
    fingerprint: str
    chunks: int


@dataclass
class Manifest:
    fields: dict[str, FieldType] = field(default_factory=dict)
    chunk_size: int = 0
    chunk_overlap: int = 0
    documents: dict[str, DocumentState] = field(default_factory=dict)
    embedding_model: str | None = None
    format: int = FORMAT

    def save(self, folder: Path) -> None:
        temporary = folder / "manifest.json.tmp"
        temporary.write_text(json.dumps(asdict(self), ensure_ascii=False, sort_keys=True))
        os.replace(temporary, folder / "manifest.json")  # readers never see half a manifest

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / "manifest.json"
        if not path.is_file():
            raise IndexUnreadable(
                f"{folder.name} is not a search index (no manifest.json): build one with loom index build"
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            documents = {k: DocumentState(**v) for k, v in raw.pop("documents").items()}
            manifest = cls(documents=documents, **raw)
        except (ValueError, TypeError, KeyError) as e:
            raise IndexUnreadable(
                f"{folder.name}'s manifest.json is damaged ({type(e).__name__}); rebuild the index"
            ) from None
        if manifest.format != FORMAT:
            raise IndexUnreadable(
                f"{folder.name} was built by another version (format {manifest.format}); rebuild it"
            )
        return manifest


def schema_for(fields: dict[str, FieldType]) -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("title", stored=True, tokenizer_name="en_stem")
    builder.add_text_field("text", stored=True, tokenizer_name="en_stem")
    for name, kind in sorted(fields.items()):
        if kind == "int":
            builder.add_integer_field(name, stored=True, indexed=True, fast=True)
        elif kind == "float":
            builder.add_float_field(name, stored=True, indexed=True, fast=True)
        elif kind == "bool":
            builder.add_boolean_field(name, stored=True, indexed=True, fast=True)
        else:
            builder.add_text_field(name, stored=True, tokenizer_name="raw", fast=True)
    return builder.build()


def open_index(folder: Path, fields: dict[str, FieldType], *, create: bool = False) -> tantivy.Index:
    where = folder / "tantivy"
    if create:
        where.mkdir(parents=True, exist_ok=True)
    elif not (where / "meta.json").is_file():  # opening must not make an empty index in its place
        raise IndexUnreadable(f"{folder.name}'s tantivy/ folder holds no index: rebuild it")
    try:
        return tantivy.Index(schema_for(fields), path=str(where), reuse=not create)
    except ValueError as e:
        raise IndexUnreadable(
            f"{folder.name}'s index would not open: {str(e).splitlines()[0][:200]}"
        ) from None


def field_type(values: list[object]) -> FieldType:
    kinds = {type(v) for v in values}
    if kinds == {bool}:
        return "bool"
    if kinds == {int}:
        return "int"
    if kinds and kinds <= {int, float}:
        return "float"
    return "text"


def usable_field(name: str) -> bool:
    return (
        name not in RESERVED and tantivy.SchemaBuilder.is_valid_field_name(name) and not name.startswith("_")
    )
