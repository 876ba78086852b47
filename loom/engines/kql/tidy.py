"""Slips small models make in KQL, mended on the parse before the query is checked.

Each leaves no doubt about what was meant, and none changes what a well-formed query asks:

- a `let` statement and the query after it on the next line without the `;` between them
  (`let t = T | where x\\nt | count`): the parser stops at the next line's first token expecting
  `;`, and one is put at the end of the line before;
- a query that is only `let` statements, the last one a table (`let t = T | where x`): it returns
  nothing, so the last let's name is added as the query (`…;\\nt`).

The mended query is the one checked, run and shown. Anything else stays as written, for the
validator and the repair loop to report.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator

import duckdb_kql
from antlr4 import ParserRuleContext

from loom.engines.kql.budget import Overran, stopped_after
from loom.engines.kql.tree import children, is_node, nodes, operator_of, statements, text

MAX_MENDS = 5  # missing `;`s mended in one query (each costs a parse)
# Longer text is left as written: these parse in the server's process (in a worker thread, but
# holding the interpreter while they do), and a model's query is a few hundred characters.
MAX_TIDY_CHARS = 2_000
# And stopped at this: a 1,948-character query of parenthesised lets without `;` took 1-2 s of
# parsing per attempt (probe 13: R13-5); a model's query parses in milliseconds.
MAX_TIDY_S = 0.25
# Texts whose parse overran, remembered so that each costs that once: a turn tidies every attempt,
# and a caller looping one pathological query cost the parent ~1 s of interpreter per turn
# (probe 14: R14-4). By digest, so the memory is bounded whatever the texts' length.
MAX_REMEMBERED = 1_024


class _SlowTexts:
    def __init__(self) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=16).digest()

    def __contains__(self, text: str) -> bool:
        key = self._key(text)
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return True
        return False

    def add(self, text: str) -> None:
        with self._lock:
            self._seen[self._key(text)] = None
            while len(self._seen) > MAX_REMEMBERED:
                self._seen.popitem(last=False)


SLOW = _SlowTexts()


def tidy_kql(query: str) -> str:
    """`query` with the slips above mended; as written when it has neither (or does not parse)."""
    if len(query) > MAX_TIDY_CHARS or query in SLOW:
        return query
    try:
        with stopped_after(MAX_TIDY_S):
            return _mended(query)
    except RecursionError:  # nested too deep for the grammar: the validator says so (probe 12)
        return query
    except Overran:  # a pathological parse: the engine's own parse, in its process, reports it
        SLOW.add(query)
        return query


def _mended(query: str) -> str:
    for _ in range(MAX_MENDS):
        mended = _semicolon(query)
        if mended is None:
            break
        query = mended
    try:
        tree = duckdb_kql.parse(query).tree
    except duckdb_kql.KqlError:
        return query
    if tree is None:
        return query
    name = _last_tabular_let(tree)
    query = f"{query.rstrip().rstrip(';')};\n{name}" if name else query
    tree = duckdb_kql.parse(query).tree if name else tree
    return _aggregations_by_name(query, tree)


def is_kql(text: str) -> bool:
    """Whether `text` is a KQL query with at least one operator (`T | …`) rather than a question.
    Only text with a `|` is parsed: this is asked on every turn."""
    if "|" not in text or len(text) > MAX_TIDY_CHARS or text in SLOW:
        return False
    try:
        with stopped_after(MAX_TIDY_S):
            tree = duckdb_kql.parse(text).tree
    except Overran:
        SLOW.add(text)
        return False
    except (duckdb_kql.KqlError, RecursionError):
        return False
    return tree is not None and next(nodes(tree, "PipedOperatorContext"), None) is not None


def _semicolon(query: str) -> str | None:
    """The query with a `;` before the line where the parser wanted one, or None."""
    try:
        duckdb_kql.parse(query)
        return None
    except duckdb_kql.KqlSyntaxError as e:
        diagnostics = getattr(e, "diagnostics", None) or []
        if not diagnostics or "expecting {<EOF>, ';'}" not in diagnostics[0].message:
            return None
        line, column = diagnostics[0].span.line, diagnostics[0].span.column
    lines = query.split("\n")
    if column != 0 or not 1 < line <= len(lines) or not lines[line - 2].strip():
        return None
    lines[line - 2] = lines[line - 2].rstrip() + ";"
    return "\n".join(lines)


def _last_tabular_let(tree: ParserRuleContext) -> str | None:
    """The name of the last statement when it is a `let` of a tabular pipeline."""
    found = statements(tree)
    if not found:
        return None
    let = found[-1].getChild(0)
    if not is_node(let, "LetStatementContext"):
        return None
    declaration = let.getChild(0)
    if not is_node(declaration, "LetVariableDeclarationContext"):
        return None
    if next(nodes(declaration, "PipedOperatorContext"), None) is None:
        return None  # a scalar: there is no table to return
    return str(declaration.getChild(1).getText())


def _aggregations_by_name(query: str, tree: ParserRuleContext) -> str:
    """`… | summarize count() by s | order by count() desc` → `… | order by count_ desc`: an
    aggregation written again after the summarize that made it means the column it made (its
    name, or Kusto's default `count_`, `sum_x`). Only in the operators right after that summarize,
    and only an exact repeat of one of its aggregations."""
    edits: list[tuple[int, int, str]] = []
    for summarize in nodes(tree, "SummarizeOperatorContext"):
        made = _made_by(summarize, query)
        for operator in _following(summarize):
            for call in _calls(operator):
                column = made.get(_compact(text(call, query)))
                if column is not None:
                    edits.append((call.start.start, call.stop.stop + 1, column))
    for start, stop, column in sorted(edits, reverse=True):
        query = query[:start] + column + query[stop:]
    return query


# Operators after which a summarize's columns are no longer the ones it made.
_RESHAPING = frozenset(
    {"SummarizeOperatorContext", "ProjectOperatorContext", "ProjectAwayOperatorContext",
     "ProjectRenameOperatorContext", "JoinOperatorContext", "UnionOperatorContext",
     "MakeSeriesOperatorContext", "TopNestedOperatorContext", "MvexpandOperatorContext"}
)  # fmt: skip


def _made_by(summarize: ParserRuleContext, query: str) -> dict[str, str]:
    """Each aggregation of the summarize (compact text) → the column it makes."""
    made = {}
    for named in children(summarize, "NamedExpressionContext"):
        clause = next(children(named, "NamedExpressionNameClauseContext"), None)
        expression = text(next(children(named, "UnnamedExpressionContext")), query)
        name = text(clause, query).rstrip().removesuffix("=").strip() if clause else _default_name(expression)
        if name:
            made[_compact(expression)] = name
    return made


def _default_name(aggregation: str) -> str | None:
    """Kusto's name for an unnamed aggregation: `count()` → `count_`, `sum(x)` → `sum_x`."""
    function, _, rest = aggregation.partition("(")
    argument = rest.removesuffix(")").strip()
    if not function.strip().isidentifier() or not (argument == "" or argument.isidentifier()):
        return None
    return f"{function.strip()}_{argument}"


def _following(summarize: ParserRuleContext) -> Iterator[ParserRuleContext]:
    """The operators after the summarize in its pipeline, up to one that reshapes the columns."""
    pipe = summarize.parentCtx.parentCtx  # AfterPipeOperator → PipedOperator
    seen = False
    for piped in children(pipe.parentCtx, "PipedOperatorContext"):
        operator = piped.getChild(1).getChild(0)  # PipedOperator → AfterPipeOperator → the operator
        if seen and type(operator).__name__ in _RESHAPING:
            return
        if seen:
            yield operator
        seen = seen or piped is pipe


def _calls(operator: ParserRuleContext) -> Iterator[ParserRuleContext]:
    """The calls directly in `operator`: not those of a pipeline nested in it (a `toscalar(T |
    summarize count())` aggregates its own rows; probe 12: R12-11)."""
    for call in (
        *nodes(operator, "NamedFunctionCallExpressionContext"),
        *nodes(operator, "CountExpressionContext"),
    ):
        if operator_of(call) is operator:
            yield call


def _compact(kql: str) -> str:
    return "".join(kql.split()).lower()
