"""Schema linking: the tables and columns of a large catalog worth showing the model for a question.

Models invent column names when shown hundreds of tables, and a prompt cannot hold them all. Each
column is scored by several signals, tables by their own names and their best columns, then:
the best tables (relative to the top score) are kept, the tables on the shortest foreign-key path
between them are added so the kept ones can still be joined, and within each kept table its key
columns plus its well-scored columns are kept. Every score carries its reasons, for explanation.

Signals: BM25 over names (split snake_case/camelCase, lightly stemmed), descriptions and synonyms;
identifiers quoted verbatim (BIRD-style evidence writes `first_name`); cell values the question
names (a `ValueIndex`); and embeddings only when an `Embedder` is given (none is configured by
default, and nothing is downloaded).
"""

from __future__ import annotations

import math
import re
from collections import Counter, deque
from collections.abc import Iterable

from pydantic import BaseModel, Field

from loom.engines.contracts import Catalog, ColumnInfo, Embedder, ForeignKey, TableInfo
from loom.engines.sql.keys import primary_key
from loom.engines.sql.linking_text import expanded_terms, identifier_terms, split_words, stem, terms
from loom.engines.sql.linking_values import ValueIndex

__all__ = ["Embedder", "LinkBudget", "LinkedSchema", "ScoredColumn", "ScoredTable", "ValueIndex", "link"]

K1, B = 1.2, 0.75
NAME_WEIGHT = 3  # a name word counts as this many description words
IDENTIFIER_BONUS = 6.0  # the question or evidence spells the column's name exactly
PHRASE_BONUS = 3.0  # all words of a multi-word name appear, in order
VALUE_BONUS = 4.0  # the question names a value the column holds
EMBEDDING_WEIGHT = 4.0  # cosine similarity is in [-1, 1]; this puts it on the BM25 scale
TABLE_SHARE = 0.5  # how much of its best column's score a table inherits
GENERIC = frozenset({"nam", "id", "titl", "cod", "typ", "valu", "key", "number"})  # stemmed
STRONG_VALUE = 0.34  # a one-word value held by at most three columns
STRONG_EMBEDDING = 0.9  # within 10 % of the closest column


class LinkBudget(BaseModel, frozen=True):
    """Upper bounds and relative cut-offs; key columns count against `max_columns` too."""

    max_tables: int = 12
    max_columns: int = 80
    min_table_score: float = Field(0.25, description="keep tables scoring ≥ this × the best table")
    min_column_score: float = Field(0.5, description="keep columns scoring ≥ this × the best column")


DEFAULT_BUDGET = LinkBudget()


class ScoredColumn(BaseModel):
    score: float = 0.0
    reasons: list[str] = Field(default_factory=list)
    words: float = Field(0.0, description="the BM25 part of the score")
    strong: bool = Field(False, description="named verbatim, a value it holds, or a close embedding")
    generic: bool = Field(False, description="matched only by words that fit any table (name, id…)")


class ScoredTable(BaseModel):
    score: float = 0.0
    reasons: list[str] = Field(default_factory=list)
    words: float = Field(0.0, description="the BM25 part of the score, over the table's name")
    columns: dict[str, ScoredColumn] = Field(default_factory=dict)


class LinkedSchema(BaseModel):
    """The chosen tables (pruned to the chosen columns), the keys joining them, and why."""

    tables: list[TableInfo]
    foreign_keys: list[ForeignKey]
    scores: dict[str, ScoredTable]

    def to_catalog(self) -> Catalog:
        """For `loom.tools.schema_prompt.render_schema`."""
        return Catalog(tables=self.tables)


def link(
    question: str,
    catalog: Catalog,
    foreign_keys: list[ForeignKey],
    *,
    evidence: str = "",
    values: ValueIndex | None = None,
    embedder: Embedder | None = None,
    budget: LinkBudget = DEFAULT_BUDGET,
) -> LinkedSchema:
    """Choose the tables and columns of `catalog` to show a model for `question` (and `evidence`)."""
    text = f"{question}\n{evidence}".strip()
    scores = _score_columns(text, catalog, values, embedder)
    _score_tables(text, catalog, scores)
    cutoffs = _Cutoffs(scores, foreign_keys, budget)
    chosen = _choose_tables(scores, foreign_keys, budget, cutoffs)
    kept_keys = [fk for fk in foreign_keys if fk.table in chosen and fk.ref_table in chosen]
    columns = _choose_columns(catalog, chosen, scores, kept_keys, budget, cutoffs)
    tables = [_pruned(t, columns[t.name]) for t in _in_order(catalog, chosen)]
    return LinkedSchema(
        tables=tables, foreign_keys=kept_keys, scores={t.name: scores[t.name] for t in tables}
    )


# --- scoring columns ----------------------------------------------------------------------------


def _vocabulary(catalog: Catalog) -> frozenset[str]:
    """Words the schema itself uses: what run-together names (`flightno`) are split into."""
    names = [t.name for t in catalog.tables] + [c.name for t in catalog.tables for c in t.columns]
    return frozenset(w for name in names for w in split_words(name) if len(w) >= 3)


def _column_doc(column: ColumnInfo, vocabulary: frozenset[str]) -> list[str]:
    # The table's name stays out: it would lift every column of a table the question names.
    return identifier_terms(column.name, vocabulary) * NAME_WEIGHT + terms(column.description)


def _entity(table: str) -> str:
    return table.rsplit(".", 1)[-1]


def _score_columns(
    text: str, catalog: Catalog, values: ValueIndex | None, embedder: Embedder | None
) -> dict[str, ScoredTable]:
    scores = {
        t.name: ScoredTable(columns={c.name: ScoredColumn() for c in t.columns}) for t in catalog.tables
    }
    places = [(t, c) for t in catalog.tables for c in t.columns]
    vocabulary = _vocabulary(catalog)
    bm25 = _bm25(expanded_terms(text), [_column_doc(c, vocabulary) for _, c in places])
    question = set(expanded_terms(text))
    for (table, column), value in zip(places, bm25, strict=True):
        target = scores[table.name].columns[column.name]
        target.words = value
        target.generic = question.isdisjoint(set(identifier_terms(column.name, vocabulary)) - GENERIC)
        _add(target, value, f"words {value:.2f}")
    _score_names(text, places, scores)
    if values is not None:
        _score_values(text, values, scores, vocabulary)
    if embedder is not None:
        _score_embeddings(embedder, text, places, scores)
    return scores


def _add(target: ScoredColumn | ScoredTable, value: float, reason: str) -> None:
    if value > 0:
        target.score += value
        target.reasons.append(reason)


def _score_names(
    text: str, places: list[tuple[TableInfo, ColumnInfo]], scores: dict[str, ScoredTable]
) -> None:
    """Names written out: `first_name` or `colour.colour` verbatim, `first name(s)` as a phrase."""
    raw = {w.lower() for w in re.findall(r"[\w.]+", text)} | {w.lower() for w in re.findall(r"\w+", text)}
    spoken = " ".join(stem(w) for w in split_words(text))
    for table, column in places:
        target = scores[table.name].columns[column.name]
        name = column.name.lower()
        dotted = f"{_entity(table.name).lower()}.{name}"
        if dotted in raw or (_compound(column.name) and name in raw):
            _add(target, IDENTIFIER_BONUS, "named verbatim")
            target.strong = True
            continue
        words = [stem(w) for w in split_words(column.name)]
        if len(words) > 1 and re.search(rf"\b{re.escape(' '.join(words))}\b", spoken):
            _add(target, PHRASE_BONUS, "named as a phrase")
            target.strong = True


def _compound(name: str) -> bool:
    """Names no one writes by accident in prose: `first_name`, `eyeColour`."""
    return "_" in name or " " in name or name != name.lower()


def _score_values(
    text: str, values: ValueIndex, scores: dict[str, ScoredTable], vocabulary: frozenset[str]
) -> None:
    for (table, column), phrases in values.matches(text).items():
        target = scores.get(table, ScoredTable()).columns.get(column)
        if target is None:
            continue
        # A phrase many columns hold ("yes", "red") is weak evidence for any one of them, and so
        # is a single word the schema uses in its names ("power" in a database of superpowers).
        weight = max(len(p.split()) / values.spread(p) / (2 if p in vocabulary else 1) for p in phrases)
        _add(target, VALUE_BONUS * min(weight, 1.5), "holds " + ", ".join(repr(p) for p in phrases[:3]))
        target.strong = target.strong or weight >= STRONG_VALUE


def _score_embeddings(
    embedder: Embedder, text: str, places: list[tuple[TableInfo, ColumnInfo]], scores: dict[str, ScoredTable]
) -> None:
    docs = [f"{_entity(t.name)} {c.name} {c.description}" for t, c in places]
    similarities = _similarities(embedder, text, docs)
    best = max(similarities, default=0.0)
    for (table, column), sim in zip(places, similarities, strict=True):
        target = scores[table.name].columns[column.name]
        _add(target, EMBEDDING_WEIGHT * sim, f"embedding {sim:.2f}")
        target.strong = target.strong or (best > 0 and sim >= STRONG_EMBEDDING * best)


def _similarities(embedder: Embedder, text: str, docs: list[str]) -> list[float]:
    vectors = embedder.embed([text, *docs])
    query = vectors[0]
    return [_cosine(query, v) for v in vectors[1:]]


def _cosine(a: list[float], b: list[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


def _bm25(query: list[str], docs: list[list[str]]) -> list[float]:
    """Okapi BM25 of one query against each document; repeated query words count once each."""
    if not docs:
        return []
    frequency = Counter(word for doc in docs for word in set(doc))
    average = sum(len(d) for d in docs) / len(docs) or 1.0
    wanted = Counter(query)
    idf = {w: math.log(1 + (len(docs) - frequency[w] + 0.5) / (frequency[w] + 0.5)) for w in wanted}
    results = []
    for doc in docs:
        counts = Counter(doc)
        norm = K1 * (1 - B + B * len(doc) / average)
        results.append(sum(idf[w] * counts[w] * (K1 + 1) / (counts[w] + norm) for w in wanted if w in counts))
    return results


# --- choosing tables ----------------------------------------------------------------------------


def _score_tables(text: str, catalog: Catalog, scores: dict[str, ScoredTable]) -> None:
    docs = [terms(_entity(t.name)) * NAME_WEIGHT + terms(t.description) for t in catalog.tables]
    for table, value in zip(catalog.tables, _bm25(expanded_terms(text), docs), strict=True):
        scored = scores[table.name]
        scored.words = value
        _add(scored, value, f"table words {value:.2f}")
        best = max(scored.columns.items(), key=lambda item: item[1].score, default=None)
        if best is not None and best[1].score > 0:
            _add(scored, TABLE_SHARE * best[1].score, f"column {best[0]}")


class _Cutoffs:
    """What counts as relevant: strong signals always, words relative to the best words found."""

    def __init__(self, scores: dict[str, ScoredTable], keys: list[ForeignKey], budget: LinkBudget) -> None:
        # A referencing column (`bond.molecule_id`) is join plumbing: naming it names the table it
        # references, not every table that carries it. Closure brings those in when needed.
        self.plumbing = {(fk.table, c) for fk in keys for c in fk.columns}
        table_words = max((t.words for t in scores.values()), default=0.0)
        column_words = max((c.words for t in scores.values() for c in t.columns.values()), default=0.0)
        self.table = max(budget.min_table_score * table_words, 1e-9)
        # Tables are chosen on a lower bar than columns: a missing table costs a whole join, a
        # missing column one name, and a table's key columns are all it adds by itself.
        self.table_column = max(budget.min_table_score * column_words, 1e-9)
        self.column = max(budget.min_column_score * column_words, 1e-9)

    def column_ok(self, column: ScoredColumn) -> bool:
        return column.strong or column.words >= self.column

    def table_ok(self, name: str, table: ScoredTable) -> bool:
        return table.words >= self.table or any(
            self._names_table(c) and (name, column) not in self.plumbing
            for column, c in table.columns.items()
        )

    def _names_table(self, column: ScoredColumn) -> bool:
        # "name" and "title" fit a column in every table: alone, they choose none of them.
        return column.strong or (column.words >= self.table_column and not column.generic)


def _choose_tables(
    scores: dict[str, ScoredTable], keys: list[ForeignKey], budget: LinkBudget, cutoffs: _Cutoffs
) -> list[str]:
    ranked = sorted(scores, key=lambda name: -scores[name].score)
    wanted = [name for name in ranked if cutoffs.table_ok(name, scores[name])] or ranked[:1]
    graph = _graph(keys)
    chosen: list[str] = []
    for name in wanted:
        added = [n for n in _bridge(graph, chosen, name) if n not in chosen]
        if len(chosen) + len(added) <= budget.max_tables:
            chosen += added
    for name in chosen:
        if name not in wanted:
            scores[name].reasons.append("joins the chosen tables")
    return chosen


def _graph(keys: Iterable[ForeignKey]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for fk in keys:
        graph.setdefault(fk.table, set()).add(fk.ref_table)
        graph.setdefault(fk.ref_table, set()).add(fk.table)
    return graph


def _distances(graph: dict[str, set[str]], starts: Iterable[str]) -> dict[str, int]:
    distance = {name: 0 for name in starts}
    queue = deque(distance)
    while queue:
        node = queue.popleft()
        for neighbour in graph.get(node, ()):
            if neighbour not in distance:
                distance[neighbour] = distance[node] + 1
                queue.append(neighbour)
    return distance


def _bridge(graph: dict[str, set[str]], chosen: list[str], target: str) -> list[str]:
    """`target` and every table on a shortest path from the chosen ones to it.

    Every shortest path, not one: a member reaches an event through attendance or through
    expenses and budgets; only the question says which join is meant, and the model can only
    choose it if both are shown. With no path, `target` stays, unjoinable, rather than being lost.
    """
    if not chosen or target in chosen:
        return [target]
    there, back = _distances(graph, chosen), _distances(graph, [target])
    if target not in there:
        return [target]
    length = there[target]
    between = [n for n in there if n in back and there[n] + back[n] == length and n not in chosen]
    return sorted(between, key=lambda n: there[n])


# --- choosing columns ---------------------------------------------------------------------------


def _choose_columns(
    catalog: Catalog,
    chosen: list[str],
    scores: dict[str, ScoredTable],
    keys: list[ForeignKey],
    budget: LinkBudget,
    cutoffs: _Cutoffs,
) -> dict[str, list[str]]:
    picked = _key_columns(catalog, chosen, keys, scores)
    room = budget.max_columns - sum(len(v) for v in picked.values())
    candidates = [(t, c, s) for t in chosen for c, s in scores[t].columns.items() if cutoffs.column_ok(s)]
    for table, column, _ in sorted(candidates, key=lambda x: -x[2].score):
        if room <= 0:
            break
        if column not in picked[table]:
            picked[table].append(column)
            room -= 1
    return picked


def _key_columns(
    catalog: Catalog, chosen: list[str], keys: list[ForeignKey], scores: dict[str, ScoredTable]
) -> dict[str, list[str]]:
    """Key guesses, the columns of the keys joining kept tables (without them, no join), and each
    table's label (`name`, `title`, `colour.colour`): what a question about the table shows."""
    found: dict[str, list[str]] = {name: [] for name in chosen}
    for name in chosen:
        table = catalog.table(name)
        found[name] += [c for c in (primary_key(table), _label(table)) if c] if table else []
    for fk in keys:
        found[fk.table] += [c for c in fk.columns if c not in found[fk.table]]
        found[fk.ref_table] += [c for c in fk.ref_columns if c not in found[fk.ref_table]]
    for name, columns in found.items():
        for column in dict.fromkeys(columns):
            scores[name].columns[column].reasons.append("key or label")
    return {name: list(dict.fromkeys(columns)) for name, columns in found.items()}


def _label(table: TableInfo) -> str | None:
    stem_words = split_words(_entity(table.name))
    for column in table.columns:
        words = split_words(column.name)
        if words == stem_words or "name" in words or "title" in words:
            return column.name
    return None


def _in_order(catalog: Catalog, chosen: list[str]) -> list[TableInfo]:
    return [t for t in catalog.tables if t.name in set(chosen)]


def _pruned(table: TableInfo, columns: list[str]) -> TableInfo:
    kept = set(columns)
    return table.model_copy(update={"columns": [c for c in table.columns if c.name in kept]})
