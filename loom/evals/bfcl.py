"""The Berkeley Function-Calling Leaderboard (BFCL v4) as a suite of function-calling cases.

BFCL measures whether a model calls the right function with the right arguments. Here each
question becomes a case offering the model the question's own functions (`Case.functions`) and
expecting BFCL's ground-truth calls (`expect.calls`), scored by `loom.evals.calls`; the model's
reply is read the way the agent reads one (through the tools API, or a call written as text), so
the suite measures the model with Loom's reading of it, not the agent's tools.

Read from `question/BFCL_v4_<category>.json` and `possible_answer/BFCL_v4_<category>.json` (JSON
lines). The single-turn categories are loaded: `simple_python`, `multiple`, `parallel`,
`parallel_multiple`, `live_simple`, and `irrelevance` (the right answer is no call). Left out:
`multi_turn_base`, whose calls BFCL scores by executing its Python back ends (Loom never runs
benchmark code), and `sql`, which BFCL itself no longer scores.

BFCL's schemas use Python type names; they become JSON-schema ones (`dict` → `object`, `float` →
`number`, `tuple` → `array`, `any` → `string`), and a dotted function name (`math.factorial`),
which the tools API refuses, has its dots replaced by `_` in the functions and the answers alike —
what BFCL does for function-calling models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loom.evals.loaders import BenchmarkDataError, sample_of
from loom.evals.suite import Case, Expect, Suite

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "irrelevance")
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


def load_bfcl(
    data_dir: Path, *, categories: tuple[str, ...] = CATEGORIES, sample: int | None = None, seed: int = 0
) -> Suite:
    """BFCL's single-turn categories from `data_dir` (the folder holding question/ and
    possible_answer/), in category order, then file order."""
    root = Path(data_dir).resolve()
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"BFCL: unknown categories {', '.join(unknown)} (known: {', '.join(CATEGORIES)})")
    entries = [(i, e) for i, e in enumerate(e for c in categories for e in _category(root, c))]
    chosen = sample_of(entries, sample, seed, "BFCL", root)
    drawn = f"a sample of {sample} (seed {seed})" if sample is not None else "all"
    return Suite(
        name="bfcl",
        description=f"BFCL v4 ({', '.join(categories)}): {drawn} of the questions in {root}",
        cases=tuple(_case(e) for _, e in chosen),
    )


def _category(root: Path, category: str) -> list[dict[str, Any]]:
    questions = _lines(root / "question" / f"BFCL_v4_{category}.json")
    if category == "irrelevance":
        return [{**q, "category": category, "ground_truth": []} for q in questions]
    answers = {
        a["id"]: a["ground_truth"] for a in _lines(root / "possible_answer" / f"BFCL_v4_{category}.json")
    }
    missing = [q["id"] for q in questions if q["id"] not in answers]
    if missing:
        raise BenchmarkDataError(f"BFCL {category}: no possible answer for {', '.join(missing[:5])}")
    return [{**q, "category": category, "ground_truth": answers[q["id"]]} for q in questions]


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise BenchmarkDataError(
            f"BFCL: {path} is missing (expected question/ and possible_answer/ JSON lines)"
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _case(entry: dict[str, Any]) -> Case:
    messages = entry["question"][0]
    system = "\n".join(m["content"] for m in messages if m["role"] == "system") or None
    question = "\n".join(m["content"] for m in messages if m["role"] == "user")
    calls = tuple({_name(f): v for f, v in call.items()} for call in entry["ground_truth"])
    return Case(
        id=f"bfcl-{entry['id']}",
        question=question,
        system=system,
        tags=("bfcl", f"category:{entry['category']}"),
        functions=tuple(_function(f) for f in entry["function"]),
        expect=Expect(calls=calls),
    )


def _function(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "name": _name(spec["name"]), "parameters": _schema(spec.get("parameters", {}))}


def _name(name: str) -> str:
    return name.replace(".", "_")


def _schema(node: Any) -> Any:
    """BFCL's schema with JSON-schema type names, everywhere in it."""
    if isinstance(node, list):
        return [_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _schema(v) for k, v in node.items()}
    if isinstance(out.get("type"), str):
        out["type"] = _TYPES.get(out["type"], out["type"])
    return out
