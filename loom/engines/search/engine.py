"""LocalIndex: the embedded index as a Retriever — BM25 over passages' titles and text (tantivy,
English stemming), an OData filter applied inside the search, and, when the index holds vectors
and the same embedding model is configured, hybrid ranking by reciprocal rank fusion.

Each row is a passage: `id` (the source document), `chunk_id`, `title`, `text`, `score`, then the
index's metadata fields. The question is analysed as the index's text was (lowercase, stems) and
its terms joined by OR: a question is words, not query syntax, so nothing in it is an operator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tantivy

from loom.engines.contracts import (
    Catalog,
    Column,
    ColumnInfo,
    Embedder,
    QueryError,
    ResultSet,
    TableInfo,
    Value,
)
from loom.engines.search.filters import filter_query
from loom.engines.search.passages import MAX_TOP, PASSAGE_COLUMNS, checked_query, passage_result
from loom.engines.search.store import IndexUnreadable, Manifest, open_index, schema_for
from loom.engines.search.vectors import Vectors

RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al., 2009)
CANDIDATES = 100  # from each ranking, for fusion
_ANALYZER = (
    tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
    .filter(tantivy.Filter.remove_long(40))
    .filter(tantivy.Filter.lowercase())
    .filter(tantivy.Filter.stemmer("english"))
    .build()
)  # what the `en_stem` tokenizer does to the indexed text
_TYPES = {"text": "string", "int": "integer", "float": "float", "bool": "boolean"}


class LocalIndex:
    name = "index"

    def __init__(
        self, folder: Path, embedder: Embedder | None = None, embedding_model: str | None = None
    ) -> None:
        self.folder = folder
        self.manifest = Manifest.load(folder)
        self._schema = schema_for(self.manifest.fields)
        self._index = open_index(folder, self.manifest.fields)
        self._check_count()
        same_model = embedder is not None and embedding_model == self.manifest.embedding_model
        self._vectors = Vectors.load(folder) if same_model else None
        self._embedder = embedder if same_model else None

    def _check_count(self) -> None:
        """An index whose files lost passages (a segment deleted by hand) would answer from part of
        them without a word; it is refused instead."""
        held = self._index.searcher().num_docs
        listed = sum(d.chunks for d in self.manifest.documents.values())
        if held != listed:
            raise IndexUnreadable(
                f"{self.folder.name} holds {held:,} passages where its manifest lists {listed:,}: rebuild it"
            )

    def search(self, query: str, *, top: int, timeout_s: float, filter: str | None = None) -> ResultSet:
        started = time.perf_counter()
        terms = _terms(query)
        top = max(1, min(top, MAX_TOP))
        restrict = filter_query(filter, self.manifest.fields, self._schema) if filter else None
        searcher = self._index.searcher()
        hits = self._bm25(searcher, terms, restrict, max(top, CANDIDATES) if self._vectors else top)
        if self._vectors is not None and self._embedder is not None:
            hits = self._hybrid(searcher, query, hits, restrict)
        return self._result(hits[:top], query, filter, started)

    def _bm25(
        self, searcher: tantivy.Searcher, terms: list[str], restrict: tantivy.Query | None, limit: int
    ) -> list[Hit]:
        should = [
            (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, field, term))
            for term in terms
            for field in ("title", "text")
        ]
        query = tantivy.Query.boolean_query(should)
        if restrict is not None:
            query = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, restrict)])
        return [
            Hit(float(score), searcher.doc(address).to_dict())
            for score, address in searcher.search(query, limit).hits
        ]

    def _hybrid(
        self, searcher: tantivy.Searcher, query: str, lexical: list[Hit], restrict: tantivy.Query | None
    ) -> list[Hit]:
        """Reciprocal rank fusion of the BM25 ranking and the vector one (filtered alike)."""
        assert self._vectors is not None and self._embedder is not None
        semantic = [c for c, _ in self._vectors.nearest(self._embedder.embed([query])[0], CANDIDATES * 4)]
        if restrict is not None:
            allowed = {h.chunk_id for h in self._all(searcher, restrict)}
            semantic = [c for c in semantic if c in allowed]
        held = {h.chunk_id: h for h in lexical}
        fused: dict[str, float] = {}
        for ranking in ([h.chunk_id for h in lexical], semantic[:CANDIDATES]):
            for rank, chunk_id in enumerate(ranking, start=1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
        out = []
        for chunk_id, score in sorted(fused.items(), key=lambda item: -item[1]):
            found = held.get(chunk_id) or self._by_chunk(searcher, chunk_id)
            if found is not None:
                out.append(Hit(score, found.doc))
        return out

    def _all(self, searcher: tantivy.Searcher, query: tantivy.Query) -> list[Hit]:
        hits = searcher.search(query, max(1, searcher.num_docs)).hits
        return [Hit(float(score), searcher.doc(address).to_dict()) for score, address in hits]

    def _by_chunk(self, searcher: tantivy.Searcher, chunk_id: str) -> Hit | None:
        hits = searcher.search(tantivy.Query.term_query(self._schema, "chunk_id", chunk_id), 1).hits
        return Hit(0.0, searcher.doc(hits[0][1]).to_dict()) if hits else None

    def _result(self, hits: list[Hit], query: str, filter: str | None, started: float) -> ResultSet:
        extra = sorted(self.manifest.fields)
        rows: list[list[Value]] = [
            [h.first("id"), h.chunk_id, h.first("title"), h.first("text"), round(h.score, 6)]
            + [h.value(name) for name in extra]
            for h in hits
        ]
        columns = [Column(name=n, type=_TYPES[self.manifest.fields[n]]) for n in extra]
        return passage_result(rows, columns, engine=self.name, query=query, filter=filter, started=started)

    def catalog(self) -> Catalog:
        columns = [ColumnInfo(name=n, type=t) for n, t in PASSAGE_COLUMNS if n != "score"]
        columns += [ColumnInfo(name=n, type=_TYPES[k]) for n, k in sorted(self.manifest.fields.items())]
        passages = sum(d.chunks for d in self.manifest.documents.values())
        return Catalog(tables=[TableInfo(name=self.folder.name, columns=columns, row_count=passages)])

    def close(self) -> None:
        pass


def _terms(query: str) -> list[str]:
    terms = list(dict.fromkeys(_ANALYZER.analyze(checked_query(query))))
    if not terms:
        raise QueryError("invalid_query", "the search has no words to look for")
    return terms


@dataclass(frozen=True)
class Hit:
    score: float
    doc: dict[str, list[object]]  # the stored fields, each a list of values

    @property
    def chunk_id(self) -> str:
        return self.first("chunk_id")

    def first(self, name: str) -> str:
        return str((self.doc.get(name) or [""])[0])

    def value(self, name: str) -> Value:
        values = self.doc.get(name) or []
        return None if not values else values[0] if len(values) == 1 else list(values)
