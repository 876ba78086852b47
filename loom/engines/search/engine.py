"""LocalIndex: the embedded index as a Retriever — BM25 over passages' titles and text (tantivy,
English stemming), an OData filter applied inside the search, and, when the index holds vectors
and the same embedding model is configured, hybrid ranking by reciprocal rank fusion.

Each row is a passage: `id` (the source document), `chunk_id`, `title`, `text`, `score`, then the
index's metadata fields. The question is analysed as the index's text was (lowercase, stems) and
its terms joined by OR: a question is words, not query syntax, so nothing in it is an operator.
"""

from __future__ import annotations

import threading
import time
from itertools import islice
from pathlib import Path

import tantivy

from loom.engines.bounds import MAX_RESULT_BYTES, bounded_rows
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
from loom.engines.search.store import Manifest, open_index, schema_for
from loom.engines.search.vectors import Vectors

MAX_QUERY_CHARS = 2_000
MAX_TOP = 1_000
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
        same_model = embedder is not None and embedding_model == self.manifest.embedding_model
        self._vectors = Vectors.load(folder) if same_model else None
        self._embedder = embedder if same_model else None
        self._lock = threading.Lock()

    def search(self, query: str, *, top: int, timeout_s: float, filter: str | None = None) -> ResultSet:
        started = time.perf_counter()
        terms = _terms(query)
        top = max(1, min(top, MAX_TOP))
        restrict = filter_query(filter, self.manifest.fields, self._schema) if filter else None
        ranked = self._bm25(terms, restrict, max(top, CANDIDATES) if self._vectors else top)
        if self._vectors is not None and self._embedder is not None:
            ranked = self._hybrid(query, ranked, restrict)
        return self._result(ranked[:top], query, filter, started)

    def _bm25(self, terms: list[str], restrict: tantivy.Query | None, limit: int) -> list[tuple[str, float]]:
        should = [
            (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, field, term))
            for term in terms
            for field in ("title", "text")
        ]
        query = tantivy.Query.boolean_query(should)
        if restrict is not None:
            query = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, restrict)])
        searcher = self._index.searcher()
        hits = searcher.search(query, limit).hits
        return [(searcher.doc(address)["chunk_id"][0], float(score)) for score, address in hits]

    def _hybrid(
        self, query: str, lexical: list[tuple[str, float]], restrict: tantivy.Query | None
    ) -> list[tuple[str, float]]:
        assert self._vectors is not None and self._embedder is not None
        semantic = self._vectors.nearest(self._embedder.embed([query])[0], CANDIDATES * 4)
        if restrict is not None:
            allowed = self._matching(restrict)
            semantic = [(c, s) for c, s in semantic if c in allowed]
        fused: dict[str, float] = {}
        for ranking in (lexical, semantic[:CANDIDATES]):
            for rank, (chunk_id, _) in enumerate(ranking, start=1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
        return sorted(fused.items(), key=lambda item: -item[1])

    def _matching(self, restrict: tantivy.Query) -> set[str]:
        searcher = self._index.searcher()
        hits = searcher.search(restrict, max(1, searcher.num_docs)).hits
        return {searcher.doc(address)["chunk_id"][0] for _, address in hits}

    def _result(
        self, ranked: list[tuple[str, float]], query: str, filter: str | None, started: float
    ) -> ResultSet:
        searcher = self._index.searcher()
        extra = sorted(self.manifest.fields)
        rows: list[list[Value]] = []
        for chunk_id, score in ranked:
            hit = searcher.search(tantivy.Query.term_query(self._schema, "chunk_id", chunk_id), 1).hits
            if not hit:
                continue
            doc = searcher.doc(hit[0][1])
            rows.append([_one(doc, "id"), chunk_id, _one(doc, "title"), _one(doc, "text"), round(score, 6)]
                        + [_value(doc, name) for name in extra])  # fmt: skip
        listed = iter(rows)
        bounded = bounded_rows(
            lambda n: list(islice(listed, n)), max_rows=len(rows) or 1, max_bytes=MAX_RESULT_BYTES
        )
        columns = [Column(name=n, type=t) for n, t in (("id", "string"), ("chunk_id", "string"),
                   ("title", "string"), ("text", "string"), ("score", "float"))]  # fmt: skip
        columns += [Column(name=n, type=_TYPES[self.manifest.fields[n]]) for n in extra]
        shown = query if not filter else f"{query}  [filter: {filter}]"
        return bounded.result(columns, engine=self.name, query=shown, started=started)

    def catalog(self) -> Catalog:
        columns = [ColumnInfo(name=n, type=t) for n, t in (("id", "string"), ("chunk_id", "string"),
                   ("title", "string"), ("text", "string"))]  # fmt: skip
        columns += [ColumnInfo(name=n, type=_TYPES[k]) for n, k in sorted(self.manifest.fields.items())]
        passages = sum(d.chunks for d in self.manifest.documents.values())
        return Catalog(tables=[TableInfo(name=self.folder.name, columns=columns, row_count=passages)])

    def close(self) -> None:
        pass


def _terms(query: str) -> list[str]:
    if not query.strip():
        raise QueryError("invalid_query", "the search is empty: say what to look for")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError("invalid_query", f"the search is over {MAX_QUERY_CHARS:,} characters: shorten it")
    terms = list(dict.fromkeys(_ANALYZER.analyze(query)))
    if not terms:
        raise QueryError("invalid_query", "the search has no words to look for")
    return terms


def _one(doc: tantivy.Document, name: str) -> str:
    values = doc.to_dict().get(name) or [""]
    return str(values[0])


def _value(doc: tantivy.Document, name: str) -> Value:
    values = doc.to_dict().get(name) or []
    return None if not values else values[0] if len(values) == 1 else list(values)
