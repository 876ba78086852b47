"""Evaluation suites: cases to replay through the agent, and what each answer must show.

A suite is a YAML file (`name`, `sources`, `cases`) or a JSONL file (an optional first line
`{"suite": name, "sources": [...]}`, then one case per line). A case has a question (or several
`turns`), an optional source, tags for slicing, and expectations of several kinds; every one given
must hold for the case to pass. A gold query is scored by executing it and the agent's query on the
case's source and comparing the results (`loom.evals.scoring`).

A file with mistakes is refused whole, each problem named with its line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loom.agent.sources import resolve_location
from loom.engines.sources import SourceSpec


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expect(Strict):
    """What a turn's answer must show; each field given is one check."""

    tools: tuple[str, ...] | None = Field(
        None, description="tools that must be called (any order; others may be called too); [] for none"
    )
    tool_args: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per tool, arguments its call must have (a subset)"
    )
    gold: str | None = Field(None, description="a query whose result the agent's query must match")
    gold_language: str = "sql"
    ordered: bool | None = Field(
        None, description="compare rows in order (default: when the gold query has ORDER BY)"
    )
    contains: tuple[str, ...] = Field((), description="text the answer must contain (any case)")
    numbers: tuple[float, ...] = Field((), description="numbers the answer must state")
    tolerance: float = Field(0.005, ge=0, description="relative tolerance for `numbers`")
    refuse: bool = Field(False, description="the agent must run no query and say it cannot")
    calls: tuple[dict[str, dict[str, tuple[Any, ...]]], ...] | None = Field(
        None,
        description="with `functions`: the calls the model must make, in any order, each "
        '{function: {argument: acceptable values}} ("" among them: may be left out); [] for none',
    )
    max_latency_s: float | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)


class Turn(Strict):
    question: str = Field(min_length=1)
    expect: Expect = Field(default_factory=Expect)


class Case(Strict):
    id: str = Field(min_length=1, max_length=200)
    question: str | None = None
    turns: tuple[Turn, ...] = ()
    source: str | None = None
    evidence: str | None = Field(None, description="a hint given with the question (BIRD's evidence)")
    tags: tuple[str, ...] = ()
    expect: Expect = Field(default_factory=Expect)
    functions: tuple[dict[str, Any], ...] = Field(
        (),
        description="a function-calling case (BFCL): these functions (OpenAI tool schemas' `function` "
        "part) are offered to the model instead of Loom's tools, and its calls are scored, not run",
    )
    system: str | None = Field(None, description="a system message sent before the question")

    @field_validator("id")
    @classmethod
    def _printable(cls, value: str) -> str:
        # Ids are printed, one per line, as a run goes: a newline or an escape sequence in one
        # forged lines of the log (probe 16: R16-5).
        if not value.isprintable():
            raise ValueError("must be printable text on one line (no control characters)")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Case:
        if (self.question is None) == (not self.turns):
            raise ValueError("give either `question` (with `expect`) or `turns`, not both or neither")
        if self.functions and (self.turns or self.expect.calls is None):
            raise ValueError("a case with `functions` has one `question` and `expect.calls`")
        if self.expect.calls is not None and not self.functions:
            raise ValueError("`expect.calls` needs the case's `functions`")
        return self

    @property
    def all_turns(self) -> tuple[Turn, ...]:
        """The turns to play: one made of `question` and `expect`, or the listed ones."""
        if self.question is not None:
            return (Turn(question=self.question, expect=self.expect),)
        return self.turns


PLAIN_NAME = re.compile(r"\w[\w .+-]{0,99}")


class Suite(Strict):
    name: str
    description: str = ""
    sources: tuple[SourceSpec, ...] = ()
    cases: tuple[Case, ...]

    @field_validator("name")
    @classmethod
    def _plain(cls, name: str) -> str:
        # The run's folder is named after it: a plain name, never a path (probe 13: R13-3).
        if not PLAIN_NAME.fullmatch(name):
            raise ValueError(
                "must be a plain name of up to 100 letters, digits, spaces and . + - _, not a path"
            )
        return name


class SuiteError(ValueError):
    """The suite file cannot be used as it is; the message names each problem and its line."""


def load_suite(path: Path) -> Suite:
    """The suite in `path`, with local sources' locations resolved against the file's folder."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SuiteError(f"the suite {path} cannot be read: {e.strerror or e}") from e
    try:
        raw, lines = _jsonl(path, text) if path.suffix == ".jsonl" else _yaml(path, text)
        _check_depth(path, raw, lines)
        suite = Suite.model_validate(raw)
    except ValidationError as e:
        raise SuiteError(f"the suite {path} has problems: {_problems(e, lines)}") from e
    except RecursionError as e:  # the readers recurse per level (probe 14: R14-3)
        raise SuiteError(
            f"the suite {path} nests values too deeply to read; a suite is a few levels deep"
        ) from e
    _check_names(path, suite)
    sources = tuple(resolve_location(s, path.parent) for s in suite.sources)
    return suite.model_copy(update={"sources": sources})


# --- reading, with the line of everything ---------------------------------------------------------

Lines = dict[tuple[int | str, ...], int]  # where in the file each part of the document starts
MAX_NODES = 200_000  # values in a suite, aliases expanded (BIRD's 140 cases: 1,837; Spider's 200: 2,485)
# Levels of nesting (BFCL's deepest function schema: 9). What a case carries goes on to code that
# recurses per level (the model client, JSON schemas): 960 levels read fine and then ended the
# whole run in a RecursionError at its first model call (probe 15: R15-6).
MAX_DEPTH = 48


def _check_depth(path: Path, raw: Any, lines: Lines) -> None:
    """Refuse, naming where, a value nested deeper than `MAX_DEPTH` (walked without recursion)."""
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), raw)]
    while stack:
        at, value = stack.pop()
        if len(at) > MAX_DEPTH:
            raise SuiteError(
                f"the suite {path} nests values more than {MAX_DEPTH} levels deep "
                f"({_where(at[:6], lines)}…); a suite is a few levels deep"
            )
        if isinstance(value, dict):
            stack.extend(((*at, str(k)), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*at, i), v) for i, v in enumerate(value))


def _yaml(path: Path, text: str) -> tuple[Any, Lines]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SuiteError(f"the suite {path} is not valid YAML: {where}{getattr(e, 'problem', e)}") from e
    if not isinstance(raw, dict):
        raise SuiteError(f"the suite {path} must be a mapping with `name` and `cases`")
    lines: Lines = {}
    if _walk(node, (), lines, MAX_NODES) < 0:
        raise SuiteError(
            f"the suite {path} expands to more than {MAX_NODES:,} values (through YAML aliases): "
            "write the cases out, or split the suite"
        )
    return raw, lines


def _walk(node: yaml.Node | None, at: tuple[int | str, ...], lines: Lines, left: int) -> int:
    """Record where each value starts; what is `left` of the node budget after it, negative when
    the document expands past it (a few aliases of aliases make billions: probe 13, R13-4)."""
    if node is None:
        return left
    left -= 1
    lines[at] = node.start_mark.line + 1
    parts: list[tuple[int | str, yaml.Node]]
    if isinstance(node, yaml.MappingNode):
        parts = [(str(key.value), value) for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        parts = list(enumerate(node.value))
    else:
        parts = []
    for name, child in parts:
        if left < 0:
            break
        left = _walk(child, (*at, name), lines, left)
    return left


def _jsonl(path: Path, text: str) -> tuple[Any, Lines]:
    header: dict[str, Any] = {"name": path.stem}
    cases: list[Any] = []
    lines: Lines = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise SuiteError(f"the suite {path} has a line that is not JSON: line {number}: {e.msg}") from e
        if isinstance(item, dict) and "suite" in item and not cases:
            header = {"name": item.pop("suite"), **item}
            lines[("sources",)] = number
            for i in range(len(item.get("sources") or [])):
                lines[("sources", i)] = number
            continue
        lines[("cases", len(cases))] = number
        cases.append(item)
    return {**header, "cases": cases}, lines


def _problems(error: ValidationError, lines: Lines, most: int = 8) -> str:
    shown = [f"{_where(p['loc'], lines)}: {p['msg']}" for p in error.errors()[:most]]
    more = error.error_count() - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _where(loc: tuple[int | str, ...], lines: Lines) -> str:
    # The union's tag (`sources.0.duckdb.location`) is not something the file says: leave it out.
    path = tuple(p for i, p in enumerate(loc) if not (i and loc[i - 1] != "cases" and p in _TAGS))
    name = ".".join(str(p) for p in path) or "the file"
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return f"line {lines[path[:cut]]}, {name}"
    return name


_TAGS = {"duckdb", "synapse", "databricks"}


def _check_names(path: Path, suite: Suite) -> None:
    ids = [c.id for c in suite.cases]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise SuiteError(f"the suite {path} uses a case id more than once: {', '.join(repeated)}")
