"""Benchmark loaders: Spider dev and BIRD mini-dev as suites, and writing a suite to a file.

Each question becomes a case asking for its answer through the `nl2sql` tool, scored by executing
the benchmark's gold query (`expect.gold`) on the question's database. Every database is a local
source named by its `db_id`: its `.sqlite` file, which the model writes SQLite SQL for.

- **Spider dev** (`dev.json`, `database/<db>/<db>.sqlite`): case `spider-dev-<index in dev.json>`,
  tags `spider`, `db:<db_id>`, `difficulty:<easy|medium|hard|extra>` (Spider's hardness, computed
  from the gold query by `loom.evals.hardness`).
- **BIRD mini-dev** (`mini_dev_sqlite.json`, `dev_databases/<db>/<db>.sqlite`): case
  `bird-<question_id>`, with BIRD's `evidence` as the case's evidence, tags `bird`, `db:<db_id>`,
  `difficulty:<simple|moderate|challenging>` (BIRD's own label).

Only questions whose database file is present are kept (BIRD's large databases often are not), in
the file's order. A sample is `random.Random(seed).sample(range(n), sample)` over those n
questions, sorted, so the same sample and seed give the same cases anywhere.

With `examples_from_rest`, the questions not drawn become their database's verified queries
(question and gold query): what verified examples add is then measured on questions they do not
contain, as a team's own verified queries would be used on new questions.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from sqlglot.errors import SqlglotError

from loom.engines.sources import DuckDBSource, VerifiedQuery
from loom.evals.hardness import hardness
from loom.evals.suite import Case, Expect, Suite

TOOLS = ("nl2sql",)


class BenchmarkDataError(FileNotFoundError):
    """The benchmark's files are not where they were looked for; the message names what is missing."""


# --- Spider ---------------------------------------------------------------------------------------


def load_spider(
    data_dir: Path, *, sample: int | None = None, seed: int = 0, examples_from_rest: bool = False
) -> Suite:
    """Spider dev from `data_dir` (the folder holding dev.json and database/)."""
    root = Path(data_dir).resolve()
    entries = _read_json(root / "dev.json", "Spider dev", "dev.json and database/<db>/<db>.sqlite")
    databases = _databases(root / "database", {e["db_id"] for e in entries})
    present = [(i, e) for i, e in enumerate(entries) if e["db_id"] in databases]
    chosen = sample_of(present, sample, seed, "Spider dev", root)
    cases = [_spider_case(i, e) for i, e in chosen]
    verified = _rest(present, chosen, "query") if examples_from_rest else {}
    return _suite("spider-dev", "Spider 1.0 dev", root, sample, seed, cases, databases, verified)


def _spider_case(index: int, entry: dict[str, Any]) -> Case:
    gold = entry["query"]
    try:
        level: str = hardness(gold, "sqlite")
    except (SqlglotError, ValueError):
        level = "unknown"  # not one of Spider's dev golds: they all parse
    return Case(
        id=f"spider-dev-{index}",
        question=entry["question"],
        source=entry["db_id"],
        tags=("spider", f"db:{entry['db_id']}", f"difficulty:{level}"),
        expect=Expect(gold=gold, tools=TOOLS),
    )


# --- BIRD -----------------------------------------------------------------------------------------


def load_bird(
    data_dir: Path, *, sample: int | None = None, seed: int = 0, examples_from_rest: bool = False
) -> Suite:
    """BIRD mini-dev (SQLite) from `data_dir` (the folder holding mini_dev_sqlite.json and
    dev_databases/), the questions on the databases present."""
    root = Path(data_dir).resolve()
    entries = _read_json(
        root / "mini_dev_sqlite.json",
        "BIRD mini-dev",
        "mini_dev_sqlite.json and dev_databases/<db>/<db>.sqlite",
    )
    databases = _databases(root / "dev_databases", {e["db_id"] for e in entries})
    present = [(i, e) for i, e in enumerate(entries) if e["db_id"] in databases]
    chosen = sample_of(present, sample, seed, "BIRD mini-dev", root)
    cases = [_bird_case(e) for _, e in chosen]
    verified = _rest(present, chosen, "SQL") if examples_from_rest else {}
    return _suite("bird-minidev", "BIRD mini-dev (SQLite)", root, sample, seed, cases, databases, verified)


def _bird_case(entry: dict[str, Any]) -> Case:
    return Case(
        id=f"bird-{entry['question_id']}",
        question=entry["question"],
        source=entry["db_id"],
        evidence=entry.get("evidence") or None,
        tags=("bird", f"db:{entry['db_id']}", f"difficulty:{entry['difficulty']}"),
        expect=Expect(gold=entry["SQL"], tools=TOOLS),
    )


# --- shared ---------------------------------------------------------------------------------------


def _read_json(path: Path, benchmark: str, expected: str) -> list[dict[str, Any]]:
    if not path.parent.is_dir():
        raise BenchmarkDataError(
            f"{benchmark}: the data folder {path.parent} does not exist (expected {expected})"
        )
    if not path.is_file():
        raise BenchmarkDataError(f"{benchmark}: {path} is missing (expected {expected} in {path.parent})")
    entries: list[dict[str, Any]] = json.loads(path.read_text())
    return entries


def _databases(folder: Path, wanted: set[str]) -> dict[str, Path]:
    """db_id → its .sqlite file, for the databases present in `folder`."""
    found = {db: folder / db / f"{db}.sqlite" for db in sorted(wanted)}
    return {db: path for db, path in found.items() if path.is_file()}


def sample_of(
    present: list[tuple[int, dict[str, Any]]], sample: int | None, seed: int, benchmark: str, root: Path
) -> list[tuple[int, dict[str, Any]]]:
    if not present:
        raise BenchmarkDataError(f"{benchmark}: none of the questions' databases is present under {root}")
    if sample is None:
        return present
    if not 0 < sample <= len(present):
        raise ValueError(
            f"{benchmark}: a sample must be between 1 and {len(present)} questions, not {sample}"
        )
    return [present[i] for i in sorted(random.Random(seed).sample(range(len(present)), sample))]


def _rest(
    present: list[tuple[int, dict[str, Any]]], chosen: list[tuple[int, dict[str, Any]]], gold: str
) -> dict[str, tuple[VerifiedQuery, ...]]:
    """db_id → the questions not drawn, as verified queries (SQLite SQL)."""
    drawn = {i for i, _ in chosen}
    verified: dict[str, list[VerifiedQuery]] = {}
    for i, entry in present:
        if i not in drawn:
            example = VerifiedQuery(question=entry["question"], query=entry[gold], dialect="sqlite")
            verified.setdefault(entry["db_id"], []).append(example)
    return {db: tuple(examples) for db, examples in verified.items()}


def _suite(
    name: str,
    title: str,
    root: Path,
    sample: int | None,
    seed: int,
    cases: list[Case],
    databases: dict[str, Path],
    verified: dict[str, tuple[VerifiedQuery, ...]],
) -> Suite:
    used = sorted({c.source for c in cases if c.source})
    drawn = f"a sample of {sample} (seed {seed})" if sample is not None else "all"
    examples = ", the others as their database's verified queries" if verified else ""
    return Suite(
        name=name,
        description=f"{title}: {drawn} of the questions whose database is in {root}{examples}",
        sources=tuple(
            DuckDBSource(
                name=db, location=str(databases[db]), dialect="sqlite", verified_queries=verified.get(db, ())
            )
            for db in used
        ),
        cases=tuple(cases),
    )


# --- writing --------------------------------------------------------------------------------------


def write_suite(suite: Suite, path: Path) -> Path:
    """Write `suite` as YAML, or JSONL when `path` ends in .jsonl (a header line with the name,
    description and sources, then one case per line); `load_suite` reads it back equal."""
    path = Path(path)
    document = suite.model_dump(mode="json", exclude_defaults=True)
    document["name"] = suite.name  # required, even if equal to a default
    writer: Callable[[dict[str, Any]], str] = _jsonl if path.suffix == ".jsonl" else _yaml
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(writer(document))
    return path


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1_000_000)


def _jsonl(document: dict[str, Any]) -> str:
    cases = document.pop("cases", [])
    header = {"suite": document.pop("name"), **document}
    lines = [json.dumps(header, ensure_ascii=False)] + [json.dumps(c, ensure_ascii=False) for c in cases]
    return "\n".join(lines) + "\n"
