"""Execution-based scoring: run the gold query and the agent's, and compare what they return.

A re-implementation of the Spider test-suite execution evaluation (`exec_eval.py` of
taoyds/test-suite-sql-eval), read for its rules and written anew over our `ResultSet`:

- **Rows are a multiset** (bag semantics: duplicates count), compared in order only when the gold
  query orders its result. Spider decides that by looking for the text "order by" anywhere in the
  gold; here it is decided by parsing (`orders_result`): only an ORDER BY of the outermost query
  counts, so one inside a subquery does not make an unordered result "ordered".
- **Columns may come in any order.** A predicted result matches when some permutation of its
  columns makes it equal to the gold. Spider enumerates permutations after pruning with the value
  sets of 20 sampled rows; here each gold column is paired only with predicted columns holding the
  same multiset of values, columns identical in every row are tried once, and every partial
  assignment is checked on the columns assigned so far, so the search is exact and seldom tries
  more than the identity.
- **Ties are forgiven.** When the gold orders its rows, rows the ORDER BY cannot tell apart (equal
  keys) may come in any order among themselves, and under a LIMIT (or OFFSET) the rows kept from
  the tie group that the cut goes through may be any of that group. Spider handles neither: it
  compares ordered results row by row, so a database that breaks a tie differently fails. Here,
  when the plain comparison fails, the gold query is run again without its LIMIT/OFFSET and with
  its ORDER BY keys as extra output columns (`tie_probe`); that ranking says which rows tie, and the
  predicted rows must be a valid choice from it (`Ties`). A probe needs the keys as output columns
  (by name, position or the same expression) or appendable ones: under SELECT DISTINCT with a key
  that is not an output, or a set operation ordered by anything but its outputs, ties are not
  forgiven. A KQL gold ending in `top` or `sort` is probed the same way, on its syntax tree
  (`loom.engines.kql.ranking`). Without `ordered`, a cut tie is forgiven up to which of two
  partial tie groups (at an OFFSET and at the LIMIT) gave how many rows.
- **Both empty is a match**, whatever their columns (as Spider). Otherwise a different number of
  rows or of columns is a mismatch.
- **DISTINCT is not removed.** Spider's default mode deletes DISTINCT from both queries before
  running them, so a dropped DISTINCT that lets duplicates through still matches there; here the
  result the user would see is what is compared, as Spider's `--keep_distinct` mode does.

Values are compared after `canonical`: None is NULL (equal to NULL); booleans are 0/1 (SQLite has
no boolean); integers exactly; a float or Decimal equal to an integer *is* that integer (3 == 3.0);
other floats are rounded to 10 significant digits, and magnitudes under 1e-12 count as 0, so sums
accumulated in another order agree (values that differ by an ulp yet straddle a rounding boundary
would not: about one pair in 10^6); non-finite floats, dates, times and bytes take the engine's
JSON-safe form ('inf', ISO 8601, hex); text is exact ('1' is not 1).

`execution_match` runs both queries through an `Engine`. A gold query that fails, or whose result
is cut by the row or size cap, makes the case *unscoreable* — not a model failure; a predicted
query that is refused or fails is `failed`. A truncated result is never compared as if complete.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Literal, TypeVar

from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError

from loom.engines.contracts import Engine, QueryError, ResultSet, json_safe

Outcome = Literal["match", "mismatch", "failed", "unscoreable"]
Row = tuple[Hashable, ...]
_T = TypeVar("_T")
RunQuery = Callable[[str], ResultSet]  # runs one query with the caps set; QueryError when it cannot

SIGNIFICANT_DIGITS = 10
ZERO_BELOW = 1e-12
MAX_PERMUTATION_STEPS = 20_000  # partial column assignments tried before giving up
SCORING_MAX_BYTES = 256 * 1024 * 1024  # far above the chat's cap: a result is compared whole or not at all


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison, and why, in words a person can read."""

    outcome: Outcome
    reason: str = ""
    note: str = ""  # how a match was reached when it took more than equality (column order, ties)

    @property
    def match(self) -> bool:
        return self.outcome == "match"

    @property
    def scoreable(self) -> bool:
        """False when the gold side could not give a complete answer: the case says nothing of the model."""
        return self.outcome != "unscoreable"


# --- values ---------------------------------------------------------------------------------------


def canonical(value: object) -> Hashable:
    """The form a value is compared in (see the module docstring)."""
    kind = type(value)
    if kind is str or kind is int or value is None:  # most values: returned as they are
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, decimal.Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return _number(float(value))
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dt.date | dt.time | bytes):
        return str(json_safe(value))
    if isinstance(value, list | tuple | dict):
        return repr(json_safe(value))
    return str(value)


def _number(x: float) -> Hashable:
    if not math.isfinite(x):
        return str(x)  # 'inf', '-inf', 'nan': what the engines' JSON-safe form carries
    if abs(x) < ZERO_BELOW:
        return 0
    if not x.is_integer():
        x = float(f"{x:.{SIGNIFICANT_DIGITS}g}")
    return int(x) if x.is_integer() else x


def canonical_rows(rows: Sequence[Sequence[object]]) -> list[Row]:
    return [tuple(map(canonical, row)) for row in rows]


# --- which results are ordered --------------------------------------------------------------------


def _parse(query: str, dialect: str) -> exp.Expr | None:
    try:
        tree = parse_one(query, read=dialect)
    except (SqlglotError, ValueError):  # ValueError: not a dialect sqlglot knows (kql)
        return None
    while isinstance(tree, exp.Subquery):  # `(SELECT … ORDER BY …)` as the whole statement
        tree = tree.this
    return tree


def orders_result(query: str, dialect: str) -> bool:
    """Whether the outermost query has ORDER BY, or for KQL ends with a sort or top (an
    unparseable query: False)."""
    if dialect == "kql":
        from loom.engines.kql.validator import ends_ordered

        return ends_ordered(query)
    tree = _parse(query, dialect)
    return tree is not None and isinstance(tree.args.get("order"), exp.Order)


# --- ties -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TieProbe:
    """The gold query re-written to show its ranking: no LIMIT/OFFSET, ORDER BY keys as outputs.

    `keys[i]` is the gold output position of the i-th ORDER BY key, or None when the key was
    appended as an extra output column (the appended ones follow the gold's columns, in order)."""

    query: str
    keys: tuple[int | None, ...]
    offset: int


@dataclass(frozen=True)
class Ties:
    """The gold's ranking: every row it orders (before any LIMIT/OFFSET), each with its ORDER BY key.
    Rows with equal keys tie; `offset` is where the gold's own rows start in it."""

    rows: Sequence[Sequence[object]]
    keys: Sequence[Sequence[object]]
    offset: int = 0


def tie_probe(query: str, dialect: str) -> TieProbe | None:
    """The probe for an ordered gold query, or None when its ranking cannot be shown this way."""
    if dialect == "kql":
        from loom.engines.kql.ranking import ranking_probe

        shown = ranking_probe(query)
        return TieProbe(shown[0], (None,) * shown[1], 0) if shown is not None else None
    tree = _parse(query, dialect)
    order = tree.args.get("order") if tree is not None else None
    if tree is None or not isinstance(order, exp.Order):
        return None
    offset = _int_literal(tree.args.get("offset"))
    if offset is None:
        return None
    outputs = tree.selects if isinstance(tree, exp.Select | exp.SetOperation) else []
    keys = tuple(_output_position(o.this, outputs) for o in order.expressions)
    probe = tree.copy()
    probe.set("limit", None)
    probe.set("offset", None)
    extra = [o.this for o, k in zip(order.expressions, keys, strict=True) if k is None]
    if extra:
        if not isinstance(probe, exp.Select) or tree.args.get("distinct"):
            return None  # extra outputs would change what DISTINCT or a set operation keeps
        for i, key in enumerate(extra):
            probe.select(exp.alias_(key.copy(), f"_loom_tie_key_{i}"), copy=False)
    return TieProbe(probe.sql(dialect=dialect), keys, offset)


def _int_literal(node: exp.Expr | None) -> int | None:
    """0 for no node, the value of an integer literal, None for anything else."""
    if node is None:
        return 0
    value = node.expression if isinstance(node, exp.Offset | exp.Limit) else node
    if isinstance(value, exp.Literal) and value.is_int:
        return int(value.this)
    return None


def _output_position(key: exp.Expr, outputs: list[exp.Expr]) -> int | None:
    """Which result column the key is, when it is one (`ORDER BY 2`, an alias, the same expression)."""
    if isinstance(key, exp.Literal) and key.is_int:
        return int(key.this) - 1 if int(key.this) >= 1 else None
    if any(
        isinstance(o, exp.Star) or isinstance(o, exp.Column) and isinstance(o.this, exp.Star) for o in outputs
    ):
        return None  # `*` expands to columns the parse cannot count: only positions are known
    for i, output in enumerate(outputs):
        if key == output.unalias():
            return i
    if isinstance(key, exp.Column) and not key.table:
        named = [i for i, o in enumerate(outputs) if o.alias_or_name.lower() == key.name.lower()]
        if len(named) == 1:
            return named[0]
    return None


def _is_star(output: exp.Expr) -> bool:
    return (
        isinstance(output, exp.Star) or isinstance(output, exp.Column) and isinstance(output.this, exp.Star)
    )


def ties_from(probe: TieProbe, ranked: ResultSet, width: int) -> Ties:
    """The ranking the probe returned; `width` is the gold result's number of columns."""
    positions, extra = [], width
    for key in probe.keys:
        if key is None:
            positions.append(extra)
            extra += 1
        else:
            positions.append(key)
    rows = [row[:width] for row in ranked.rows]
    keys = [[row[p] for p in positions] for row in ranked.rows]
    return Ties(rows, keys, probe.offset)


# --- comparing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """A run of `size` consecutive predicted rows (all of them, when unordered): it must hold every
    row of `required`, and its other rows must come from `optional` (both multisets)."""

    size: int
    required: tuple[Row, ...]
    optional: tuple[Row, ...] = ()


def compare(gold: ResultSet, predicted: ResultSet, *, ordered: bool, ties: Ties | None = None) -> Verdict:
    """Whether `predicted` answers as `gold` does (see the module docstring); `ties`, from the gold's
    `tie_probe`, forgives rows the gold's ORDER BY cannot tell apart."""
    cut = _truncation(gold, predicted)
    if cut is not None:
        return cut
    want, got = canonical_rows(gold.rows), canonical_rows(predicted.rows)
    if len(want) != len(got):
        return Verdict("mismatch", f"{_rows(len(want))} expected, {len(got)} returned")
    if not want:
        return Verdict("match")
    width, got_width = len(want[0]), len(got[0])
    if width != got_width:
        return Verdict("mismatch", f"{_columns(width)} expected, {got_width} returned")
    blocks = _tied_blocks(want, ordered, ties) if ties is not None else None
    if blocks is None:
        blocks, ties = _plain_blocks(want, ordered), None
    identity = list(range(width))
    if _holds(blocks, got, identity):  # the common case, without building the search
        return Verdict("match", note=_how(identity, want, got, ordered, ties))
    found = _Search(blocks, got, width).permutation()
    if isinstance(found, str):
        return Verdict("mismatch", found)
    if found is None:
        return Verdict("mismatch", _explain(gold, want, got, ordered))
    return Verdict("match", note=_how(found, want, got, ordered, ties))


def _rows(n: int) -> str:
    return f"{n} row{'' if n == 1 else 's'}"


def _columns(n: int) -> str:
    return f"{n} column{'' if n == 1 else 's'}"


def _truncation(gold: ResultSet, predicted: ResultSet) -> Verdict | None:
    if gold.truncated:
        by = "row cap" if gold.truncated_by != "bytes" else "size cap"
        return Verdict(
            "unscoreable", f"the gold result was cut at {_rows(len(gold.rows))} by the {by}; raise the cap"
        )
    if not predicted.truncated:
        return None
    if predicted.truncated_by != "bytes" and len(predicted.rows) >= len(gold.rows):
        return Verdict(
            "mismatch", f"{_rows(len(gold.rows))} expected, more than {len(predicted.rows)} returned"
        )
    return Verdict("unscoreable", "the predicted result was cut by the size cap; it cannot be compared whole")


def _plain_blocks(want: list[Row], ordered: bool) -> list[_Block]:
    if ordered:
        return [_Block(1, (row,)) for row in want]
    return [_Block(len(want), tuple(want))]


def _tied_blocks(want: list[Row], ordered: bool, ties: Ties) -> list[_Block] | None:
    blocks = _tie_blocks(ties, len(want))
    if blocks is None or ordered:
        return blocks
    # Unordered: one block, with the rows of the tie groups the window cuts as its options.
    required = tuple(r for b in blocks for r in b.required)
    optional = tuple(r for b in blocks for r in b.optional)
    return [_Block(len(want), required, optional)]


def _tie_blocks(ties: Ties, n: int) -> list[_Block] | None:
    """One block per tie group the gold's window [offset, offset + n) reaches; None when the ranking
    does not cover the window."""
    rows, keys = canonical_rows(ties.rows), canonical_rows(ties.keys)
    start, end = ties.offset, ties.offset + n
    if len(rows) < end:
        return None
    blocks: list[_Block] = []
    for first, last in _groups(keys):
        inside = min(last, end) - max(first, start)
        if inside <= 0:
            continue
        group = tuple(rows[first:last])
        whole = first >= start and last <= end
        blocks.append(_Block(inside, group) if whole else _Block(inside, (), group))
    return blocks


def _groups(keys: list[Row]) -> Iterator[tuple[int, int]]:
    """[first, last) of each run of equal keys."""
    first = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[first]:
            yield first, i
            first = i


class _Search:
    """A permutation `perm` of the predicted columns (gold column i ← predicted column perm[i]) that
    makes every block hold; each partial assignment is checked on its columns before going on."""

    def __init__(self, blocks: list[_Block], got: list[Row], width: int) -> None:
        self.blocks, self.got, self.width = blocks, got, width
        self.steps = 0
        vectors = [tuple(r[j] for r in got) for j in range(width)]
        # Of columns identical in every row, only the first unused is tried: swapping them changes nothing.
        self.earlier_twins = [[t for t in range(j) if vectors[t] == vectors[j]] for j in range(width)]
        values = [Counter(v) for v in vectors]
        self.candidates = [self._candidates(i, values) for i in range(width)]

    def _candidates(self, i: int, values: list[Counter[Hashable]]) -> list[int]:
        required = Counter(r[i] for b in self.blocks for r in b.required)
        allowed = required + Counter(r[i] for b in self.blocks for r in b.optional)
        exact = not any(b.optional for b in self.blocks)
        fits = [
            j
            for j in range(self.width)
            if (_same(values[j], required) if exact else _within(required, values[j], allowed))
        ]
        return sorted(fits, key=lambda j: j != i)  # the identity first

    def permutation(self) -> list[int] | str | None:
        """The permutation, None when there is none, or why the search stopped."""
        if not all(self.candidates):
            return None  # a gold column whose values no returned column holds
        try:
            return self._extend([])
        except _TooMany:
            return f"no column order found after {MAX_PERMUTATION_STEPS} tries; the results may match"

    def _extend(self, perm: list[int]) -> list[int] | None:
        if len(perm) == self.width:
            return perm
        self.steps += 1
        if self.steps > MAX_PERMUTATION_STEPS:
            raise _TooMany
        used = set(perm)
        choices = [
            j
            for j in self.candidates[len(perm)]
            if j not in used and all(t in used for t in self.earlier_twins[j])
        ]
        last = len(perm) + 1 == self.width
        for j in choices:
            tried = [*perm, j]
            # A partial assignment is checked where it prunes: at a choice, and at the end.
            if (len(choices) == 1 and not last) or _holds(self.blocks, self.got, tried):
                found = self._extend(tried)
                if found is not None:
                    return found
        return None


class _TooMany(Exception):
    pass


def _holds(blocks: list[_Block], got: list[Row], perm: list[int]) -> bool:
    """Whether the predicted rows, their columns taken as `perm` says, satisfy every block on the
    first len(perm) gold columns."""
    k = len(perm)
    take = itemgetter(*perm) if k > 1 else (lambda r: (r[perm[0]],))
    at = 0
    for block in blocks:
        if block.size == 1 and not block.optional:  # a row that must be exactly this one
            if take(got[at]) != block.required[0][:k]:
                return False
            at += 1
            continue
        rows = Counter(map(take, got[at : at + block.size]))
        at += block.size
        required = Counter(r[:k] for r in block.required)
        if not block.optional:
            if not _same(rows, required):
                return False
        elif not _within(required, rows, required + Counter(r[:k] for r in block.optional)):
            return False
    return True


def _same(a: Counter[_T], b: Counter[_T]) -> bool:
    """a == b for counters built by counting (no zero counts), at dict speed: Counter's own == is a
    Python loop over every element."""
    return dict.__eq__(a, b) is True


def _within(low: Counter[_T], value: Counter[_T], high: Counter[_T]) -> bool:
    """low ⊆ value ⊆ high, as multisets."""
    return all(value[x] >= n for x, n in low.items()) and all(high[x] >= n for x, n in value.items())


# --- saying why -----------------------------------------------------------------------------------


def _explain(gold: ResultSet, want: list[Row], got: list[Row], ordered: bool) -> str:
    """A short account of the difference, read with the columns in the order given."""
    if ordered:
        unordered = _Search(_plain_blocks(want, False), got, len(want[0])).permutation()
        if isinstance(unordered, list):
            rows = [tuple(r[j] for j in unordered) for r in got]
            at = next(i for i, (w, g) in enumerate(zip(want, rows, strict=True)) if w != g)
            return (
                f"the same rows in another order: row {at + 1} expected {_show(want[at])}, "
                f"got {_show(rows[at])}"
            )
    missing, extra = Counter(want) - Counter(got), Counter(got) - Counter(want)
    differing = [i for i in range(len(want[0])) if Counter(r[i] for r in want) != Counter(r[i] for r in got)]
    where = f"column {differing[0] + 1}{_name(gold, differing[0])} values differ; " if differing else ""
    if not missing:
        return f"{where}the same values, but no order of the columns makes the rows equal"
    lost = ", ".join(_show(r) for r in list(missing.elements())[:2])
    found = ", ".join(_show(r) for r in list(extra.elements())[:2])
    return (
        f"{where}{sum(missing.values())} expected rows not returned (e.g. {lost}); returned instead: {found}"
    )


def _name(gold: ResultSet, i: int) -> str:
    return f" ({gold.columns[i].name})" if i < len(gold.columns) else ""


def _show(row: Row, most: int = 80) -> str:
    text = "(" + ", ".join(repr(v) for v in row) + ")"
    return text if len(text) <= most else text[: most - 1] + "…)"


def _how(perm: list[int], want: list[Row], got: list[Row], ordered: bool, ties: Ties | None) -> str:
    notes = []
    if perm != list(range(len(perm))):
        notes.append("columns in another order")
    if ties is not None and not _holds(_plain_blocks(want, ordered), got, perm):
        if _holds(_plain_blocks(want, False), got, perm):
            notes.append("tied rows (equal ORDER BY keys) in another order")
        else:
            notes.append("other tied rows (equal ORDER BY keys) kept at the LIMIT")
    return "; ".join(notes)


# --- through an engine ----------------------------------------------------------------------------


def execution_match(
    engine: Engine,
    gold_query: str,
    predicted_query: str,
    *,
    dialect: str,
    ordered: bool | None = None,
    max_rows: int = 100_000,
    timeout_s: float = 30.0,
    max_bytes: int = SCORING_MAX_BYTES,
) -> Verdict:
    """Run both queries on `engine` (both written in `dialect`) and compare their results.

    `ordered` defaults to whether the gold query orders its result. When an ordered comparison
    fails, the gold's ranking is fetched (`tie_probe`) and ties are forgiven."""

    def run(query: str) -> ResultSet:
        return engine.execute(
            query, max_rows=max_rows, timeout_s=timeout_s, dialect=dialect, max_bytes=max_bytes
        )

    try:
        gold = run(gold_query)
    except QueryError as e:
        return Verdict("unscoreable", f"the gold query failed ({e.code}): {e.message}")
    try:
        predicted = run(predicted_query)
    except QueryError as e:
        return Verdict("failed", f"the query failed ({e.code}): {e.message}")
    in_order = orders_result(gold_query, dialect) if ordered is None else ordered
    verdict = compare(gold, predicted, ordered=in_order)
    if verdict.outcome != "mismatch" or len(gold.rows) != len(predicted.rows) or not gold.rows:
        return verdict
    ties = gold_ties(gold_query, gold, dialect, run)
    if ties is None:
        return verdict
    tied = compare(gold, predicted, ordered=in_order, ties=ties)
    return tied if tied.match else verdict


def gold_ties(query: str, gold: ResultSet, dialect: str, run: RunQuery) -> Ties | None:
    """The gold's ranking, fetched with `run`; None when it has no ORDER BY, cannot be probed, or the
    probe fails, comes back cut, or does not rank the gold's own rows as the gold returned them."""
    probe = tie_probe(query, dialect)
    if probe is None:
        return None
    try:
        ranked = run(probe.query)
    except QueryError:
        return None
    if ranked.truncated:
        return None
    ties = ties_from(probe, ranked, len(gold.columns))
    own = _tie_blocks(ties, len(gold.rows))
    identity = list(range(len(gold.columns)))
    if own is None or not _holds(own, canonical_rows(gold.rows), identity):
        return None
    return ties
