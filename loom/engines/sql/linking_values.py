"""Cell values for schema linking: which columns hold a value the question names ("Texas", "Angela").

Built once per source (tools/sql_schema.py keeps it): sampling distinct values costs one query per
text column, far more than linking a question. The catalog's own sample values are the cheap fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from loom.engines.contracts import Catalog, Engine, QueryError
from loom.engines.sql.linking_text import STOPWORDS, normalized

log = logging.getLogger(__name__)

ValueFetcher = Callable[[str, str, int], list[Any]]  # (table, column, limit) → distinct values
MAX_VALUES = 1000  # per column: all of a low-cardinality column, the most frequent of others
MAX_PHRASE_WORDS = 6

# Questions name places in full while tables keep codes: "Texas" must find a column of 'TX'.
US_STATES = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca",
    "colorado": "co", "connecticut": "ct", "delaware": "de", "florida": "fl", "georgia": "ga",
    "hawaii": "hi", "idaho": "id", "illinois": "il", "indiana": "in", "iowa": "ia", "kansas": "ks",
    "kentucky": "ky", "louisiana": "la", "maine": "me", "maryland": "md", "massachusetts": "ma",
    "michigan": "mi", "minnesota": "mn", "mississippi": "ms", "missouri": "mo", "montana": "mt",
    "nebraska": "ne", "nevada": "nv", "new hampshire": "nh", "new jersey": "nj", "new mexico": "nm",
    "new york": "ny", "north carolina": "nc", "north dakota": "nd", "ohio": "oh", "oklahoma": "ok",
    "oregon": "or", "pennsylvania": "pa", "rhode island": "ri", "south carolina": "sc",
    "south dakota": "sd", "tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt",
    "virginia": "va", "washington": "wa", "west virginia": "wv", "wisconsin": "wi", "wyoming": "wy",
}  # fmt: skip
VALUE_ALIASES = US_STATES


class ValueIndex:
    """Normalized cell value → the (table, column) pairs holding it."""

    def __init__(self, entries: dict[str, set[tuple[str, str]]] | None = None) -> None:
        self._entries = entries or {}

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def build(cls, catalog: Catalog, fetch: ValueFetcher | None = None) -> ValueIndex:
        """From the catalog's sample values and, with `fetch`, the distinct values of text columns."""
        index = cls()
        for table in catalog.tables:
            for column in table.columns:
                index.add(table.name, column.name, column.sample_values)
                if fetch is not None and column.type == "string":
                    index.add(table.name, column.name, fetch(table.name, column.name, MAX_VALUES))
        return index

    def add(self, table: str, column: str, values: Iterable[Any]) -> None:
        for value in values:
            key = normalized(str(value)) if isinstance(value, str) else ""
            if _indexable(key):
                self._entries.setdefault(key, set()).add((table, column))

    def matches(self, text: str) -> dict[tuple[str, str], list[str]]:
        """Columns holding a phrase of `text` as a whole value, with the phrases found."""
        found: dict[tuple[str, str], list[str]] = {}
        for phrase in _phrases(text):
            for place in self._entries.get(phrase, ()):
                found.setdefault(place, []).append(phrase)
        return found

    def spread(self, phrase: str) -> int:
        """How many columns hold the phrase: a value found everywhere says little."""
        return len(self._entries.get(phrase, ()))


def _indexable(key: str) -> bool:
    # Numbers and one-letter codes match too much of any question to mean anything.
    return len(key) >= 2 and not key.replace(" ", "").isdigit() and key not in STOPWORDS


def _phrases(text: str) -> set[str]:
    words = normalized(text).split()
    phrases = {
        " ".join(words[i : i + n]) for n in range(1, MAX_PHRASE_WORDS + 1) for i in range(len(words) - n + 1)
    }
    return phrases | {VALUE_ALIASES[p] for p in phrases if p in VALUE_ALIASES}


def engine_fetcher(engine: Engine, timeout_s: float = 5.0) -> ValueFetcher:
    """Distinct values through the engine itself, so the same read-only checks and limits apply."""

    def fetch(table: str, column: str, limit: int) -> list[Any]:
        col = '"' + column.replace('"', '""') + '"'
        name = ".".join('"' + p.replace('"', '""') + '"' for p in table.split("."))
        sql = (
            f"SELECT {col} FROM {name} WHERE {col} IS NOT NULL GROUP BY {col} "
            f"ORDER BY count(*) DESC LIMIT {limit}"
        )
        # Written in the engine's own dialect, whatever dialect the source's model writes.
        try:
            result = engine.execute(sql, max_rows=limit, timeout_s=timeout_s, dialect=engine.dialect)
        except QueryError as e:  # a column's values are a hint for linking: the question goes on
            log.warning("values of %s.%s not read for linking: %s", table, column, e.message)
            return []
        return [row[0] for row in result.rows]

    return fetch
