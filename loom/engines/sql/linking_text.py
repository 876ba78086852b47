"""Words for schema linking: identifiers and questions cut into comparable, lightly stemmed tokens."""

from __future__ import annotations

import re

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[a-z]+|\d+")

STOPWORDS = frozenset(
    """a an the of in on at to for from by with and or not no is are was were be been being do does did
    has have had what which who whom whose when where why how many much all any each every some that this
    these those there their its it they them he she his her we our you your i me my as than then so
    such also only just both either more most less least into out up down over under about between
    please show list give find tell return display get see know want refer refers referred mean means
    per via if else e g ie etc one""".split()
)

# Question words → words a schema uses for the same idea. Kept small and generic on purpose:
# domain vocabulary belongs in table and column descriptions, not here.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "old": ("age",), "older": ("age",), "oldest": ("age",), "young": ("age",), "younger": ("age",),
    "youngest": ("age",), "tall": ("height",), "taller": ("height",), "tallest": ("height",),
    "heavy": ("weight",), "heaviest": ("weight",), "born": ("birth",), "birthday": ("birth",),
    "called": ("name",), "named": ("name",), "who": ("name",), "title": ("name",),
    "cost": ("price",), "costs": ("price",), "expensive": ("price",), "cheap": ("price",),
    "cheapest": ("price",), "paid": ("salary", "amount"), "earn": ("salary",), "earns": ("salary",),
    "revenue": ("amount", "sales"), "sales": ("amount",), "spent": ("amount", "cost"),
    "spend": ("amount", "cost"), "client": ("customer",), "clients": ("customer",),
    "buyer": ("customer",), "staff": ("employee",), "worker": ("employee",), "nation": ("country",),
    "town": ("city",), "when": ("date", "year", "time"), "year": ("date",), "month": ("date",),
    "day": ("date",), "long": ("length", "duration"), "longest": ("length", "duration"),
    "male": ("gender", "sex"), "female": ("gender", "sex"), "men": ("gender", "sex"),
    "women": ("gender", "sex"), "where": ("location", "city", "country", "address"),
    "live": ("address", "city"), "lives": ("address", "city"), "located": ("location", "address"),
    "big": ("size", "capacity"), "biggest": ("size", "capacity"), "largest": ("size", "capacity"),
    "population": ("people",), "phone": ("tel",), "mail": ("email",), "kind": ("type",),
    "category": ("type",), "sort": ("type",), "color": ("colour",), "colour": ("color",),
    "weigh": ("weight",), "weighs": ("weight",), "lighter": ("weight",), "heavier": ("weight",),
    "gender": ("sex",), "sex": ("gender",), "earliest": ("date", "year"), "latest": ("date", "year"),
    "recent": ("date", "year"), "surname": ("last",),
}  # fmt: skip

# Abbreviations schemas use, spelled out on the schema side so questions in plain words meet them.
ABBREVIATIONS: dict[str, str] = {
    "fname": "first name", "lname": "last name", "dob": "date birth", "no": "number", "num": "number",
    "nbr": "number", "qty": "quantity", "amt": "amount", "desc": "description", "addr": "address",
    "dept": "department", "emp": "employee", "mpg": "miles per gallon", "dest": "destination",
    "src": "source", "yr": "year", "cnt": "count", "pct": "percent", "avg": "average", "max": "maximum",
    "min": "minimum", "indep": "independence", "dt": "date", "tel": "phone", "pop": "population",
}  # fmt: skip
# Words short enough to end a run-together identifier (`flightno`, `countrycode`).
COMPOUND_PARTS = frozenset("id no num code name year date type key count number".split())
_YEAR = re.compile(r"^(1[89]|20)\d\d$")


def split_words(text: str) -> list[str]:
    """`customerKey`, `customer_key`, `Customer Key` → ['customer', 'key']."""
    return _WORD.findall(_CAMEL.sub(" ", text).lower())


def stem(word: str) -> str:
    """Light suffix stripping so `states`, `state` and `stated` meet; never below three letters."""
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", "e"), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) + len(keep) >= 2 and not word.endswith("ss"):
            word = word[: len(word) - len(suffix)] + keep
            break
    return word[:-1] if word.endswith("e") and len(word) >= 3 else word


def terms(text: str) -> list[str]:
    """Stemmed content words, in order (stopwords dropped)."""
    return [stem(w) for w in split_words(text) if w not in STOPWORDS]


def expanded_terms(text: str) -> list[str]:
    """`terms` plus the synonyms of the words found, for the question side only.

    A number that reads as a year ("in 2014") asks for a year or date column."""
    words = [w for w in split_words(text) if w not in STOPWORDS]
    extra = [s for w in words for s in SYNONYMS.get(w, SYNONYMS.get(w.removesuffix("s"), ()))]
    extra += ["year" for w in words if _YEAR.match(w)]
    # "high schoolers" also reads as `highschooler`: schemas run words together.
    joined = [a + b for a, b in zip(words, words[1:], strict=False) if a.isalpha() and b.isalpha()]
    return [stem(w) for w in words] + [stem(s) for s in extra] + [stem(j) for j in joined]


def identifier_terms(name: str, vocabulary: frozenset[str] = frozenset()) -> list[str]:
    """Terms of a schema name: run-together words split (`flightno` → flight no) when both halves
    are known words, abbreviations spelled out (`fname` → first name); the original kept too."""
    words: list[str] = []
    for word in split_words(name):
        parts = _split_compound(word, vocabulary)
        words += [word, *parts] if len(parts) > 1 else [word]
        for part in parts:
            words += ABBREVIATIONS.get(part, "").split()
    return [stem(w) for w in words if w not in STOPWORDS or w in ABBREVIATIONS]


def _split_compound(word: str, vocabulary: frozenset[str]) -> list[str]:
    known = vocabulary | COMPOUND_PARTS | ABBREVIATIONS.keys()
    for i in range(2, len(word) - 1):
        head, tail = word[:i], word[i:]
        if head in known and tail in known and len(head) + len(tail) >= 5:
            return [head, tail]
    return [word]


def normalized(text: str) -> str:
    """Lowercase words separated by single spaces: how cell values and question phrases compare."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))
