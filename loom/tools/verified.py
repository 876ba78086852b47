"""Matching a question to the verified-query library by lexical similarity.

Deliberately simple and explainable: content words (lower-cased, light plural stemming, stop words
dropped), each weighted by how rare it is in the library (IDF). The score is the smaller of two
coverages: how much of the verified question the asked one covers, and the reverse, so a word on
either side that the other lacks ("by quantity" against "by revenue") pulls the score down; a
verified answer to a different question is worse than no answer. Near-identical spellings
(one typo in a long word) count as the same word.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

from loom.engines.sources import VerifiedQuery

_STOP = frozenset(
    "a all amount an and are as at be by can could did do does each every find for from get give got "
    "had has have how i in is it list made make many me much my number of on or our per placed please show "
    "tell that the their there these this those to total us was we were what when where which who "
    "with would you your".split()
)
_WORD = re.compile(r"[a-z0-9]+")
# "How many" asks for a count: its words are stop words, but the intent is not ("how many products
# per category" is not "revenue by product category"), so it is kept as the word `count`. A terse
# question without it ("orders per channel") may still mean the verified count: see `rank`.
COUNT = "count"
_COUNTING = re.compile(r"\bhow many\b|\bnumber of\b")


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> set[str]:
    counted = _COUNTING.sub(" count ", text.lower())
    return {_stem(w) for w in _WORD.findall(counted) if w not in _STOP}


@lru_cache(maxsize=65536)  # a library's vocabulary is small; questions reuse its words
def _same(a: str, b: str) -> bool:
    if a > b:  # SequenceMatcher is not quite symmetric; a typo relation must be
        a, b = b, a
    # The length and first-letter checks skip SequenceMatcher for pairs that cannot be one typo apart.
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 2 or a[0] != b[0]:
        return a == b
    return SequenceMatcher(None, a, b).ratio() >= 0.85


@dataclass(frozen=True)
class Match:
    verified: VerifiedQuery
    score: float


class VerifiedIndex:
    """The library of one or more sources, ready to score questions against."""

    ALIKE_CACHE = 4096

    def __init__(self, library: Sequence[VerifiedQuery]) -> None:
        self.library = list(library)
        self._words = [content_words(v.question) for v in self.library]
        df = Counter(w for words in self._words for w in words)
        n = max(len(self.library), 1)
        self._idf = {w: math.log(1 + n / c) for w, c in df.items()}
        self._unseen = math.log(1 + n)
        self._totals = [sum(self._idf[w] for w in words) for words in self._words]
        self._alike: dict[str, frozenset[str]] = {}

    def _weight(self, word: str) -> float:
        return self._idf.get(word, self._unseen)

    def _spellings(self, word: str) -> frozenset[str]:
        """The library's words that are `word` or one typo from it (computed once per word)."""
        found = self._alike.get(word)
        if found is None:
            if len(self._alike) >= self.ALIKE_CACHE:
                self._alike.clear()
            found = frozenset(v for v in self._idf if v == word or _same(word, v))
            self._alike[word] = found
        return found

    def rank(self, question: str) -> list[Match]:
        """Every verified question with its score: the smaller of the two IDF-weighted coverages."""
        asked = {w: self._spellings(w) for w in content_words(question)}
        asked_total = sum(self._weight(w) for w in asked)
        reached = frozenset().union(*asked.values())  # library words some asked word stands for
        scored = []
        for verified, words, total in zip(self.library, self._words, self._totals, strict=True):
            if COUNT in words and COUNT not in asked:  # counting is asked for, or left unsaid
                words, total = words - {COUNT}, total - self._idf[COUNT]
            score = 0.0
            if asked and words:
                covers = sum(self._weight(w) for w, alike in asked.items() if not alike.isdisjoint(words))
                covered = sum(self._idf[o] for o in words if o in reached)
                score = min(covers / asked_total, covered / total)
            scored.append(Match(verified, score))
        return sorted(scored, key=lambda m: m.score, reverse=True)

    @staticmethod
    @lru_cache(maxsize=64)
    def of(library: tuple[VerifiedQuery, ...]) -> VerifiedIndex:
        """The index of a library, built once per distinct library."""
        return VerifiedIndex(library)

    def best(self, question: str, threshold: float) -> Match | None:
        ranked = self.rank(question)
        return ranked[0] if ranked and ranked[0].score >= threshold else None
