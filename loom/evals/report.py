"""What a run leaves behind: `config.json`, `cases.jsonl`, `summary.json` and `report.html`.

The summary holds the figures a person compares between runs: pass rate (overall, by tag, by
tool), execution accuracy over the cases with a gold query, how many data turns were answered from
a query that ran (and from its result: every figure stated is one the results show), how many
answers showed a query that did not, latency p50/p95 and tokens.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from loom.evals.checks import figures_without_source
from loom.evals.observe import TurnRecord
from loom.evals.runner import CaseResult


def summarise(results: Sequence[CaseResult], wall_s: float) -> dict[str, Any]:
    latencies = sorted(r.latency_s for r in results)
    tokens = [t for r in results if (t := r.tokens) is not None]
    gold = [r for r in results if r.has_gold and not r.failed("unscoreable")]
    data_turns = [
        t for r in results for t, turn in zip(r.turns, r.case.all_turns, strict=False) if _data(turn)
    ]
    return {
        "cases": len(results),
        "passed": sum(r.passed for r in results),
        "pass_rate": _rate(sum(r.passed for r in results), len(results)),
        "execution_accuracy": _rate(sum(not r.failed("gold") for r in gold), len(gold)) if gold else None,
        "scored_by_execution": len(gold),
        "unscoreable": sum(r.failed("unscoreable") for r in results),
        "statuses": _count(r.status for r in results),
        "answered_from_a_query": _rate(sum(bool(t.queries) for t in data_turns), len(data_turns)),
        "answered_from_its_result": _rate(sum(_from_result(t) for t in data_turns), len(data_turns)),
        "answers_showing_unrun_queries": sum(r.failed("grounded") for r in results),
        "repairs": _repairs(gold),
        "latency_s": {"p50": _quantile(latencies, 0.5), "p95": _quantile(latencies, 0.95)},
        "tokens": {"total": sum(tokens), "mean": round(statistics.fmean(tokens), 1) if tokens else None},
        "by_tag": _by(results, lambda r: r.case.tags),
        "by_tool": _by(results, _expected_tools),
        "failed_checks": _count(f.check for r in results for f in r.failures),
        "wall_s": round(wall_s, 2),
        "cases_per_s": round(len(results) / wall_s, 2) if wall_s > 0 else None,
    }


def _repairs(gold: Sequence[CaseResult]) -> dict[str, Any]:
    """What the repair loop added, from the same run: gold cases that passed only after a query of
    theirs failed and was rewritten (without repair those would have failed: an error has no
    result, and an empty one that a rewrite replaced is kept only when the rewrite finds nothing)."""
    repaired = [r for r in gold if any(c.repairs for t in r.turns for c in t.calls)]
    passed = [r for r in repaired if not r.failed("gold")]
    codes = [code for r in passed for t in r.turns for c in t.calls for code in c.repairs]
    # Mended without the model only: every failed query of the case was followed by its mend.
    mended = [r for r in passed if all(len(c.repairs) == c.mends for t in r.turns for c in t.calls)]
    return {
        "gold_cases_repaired": len(repaired),
        "passed_after_repair": len(passed),
        "passed_after_repair_by_code": _count(codes),
        "passed_after_a_mend_alone": len(mended),
    }


def _from_result(turn: TurnRecord) -> bool:
    """A query ran and every figure the answer states is one its results show."""
    return bool(turn.queries) and not figures_without_source(turn)


def _expected_tools(result: CaseResult) -> list[str]:
    return sorted({name for turn in result.case.all_turns for name in turn.expect.tools or ()})


def _data(turn: Any) -> bool:
    """A turn that asks about data: one expected to call a tool or to match a gold query."""
    return bool(turn.expect.tools) or turn.expect.gold is not None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return dict(sorted(counts.items()))


def _by(results: Sequence[CaseResult], keys: Any) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[CaseResult]] = defaultdict(list)
    for result in results:
        for key in keys(result):
            groups[key].append(result)
    return {key: _tally(group) for key, group in sorted(groups.items())}


def _tally(group: Sequence[CaseResult]) -> dict[str, Any]:
    passed = sum(r.passed for r in group)
    return {"cases": len(group), "passed": passed, "pass_rate": _rate(passed, len(group))}


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return round(values[index], 3)


def write_run(
    out: Path, config: dict[str, Any], results: Sequence[CaseResult], summary: dict[str, Any]
) -> None:
    from loom.evals.html import render_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    with (out / "cases.jsonl").open("w") as f:
        for result in results:
            f.write(json.dumps(result.to_json(), ensure_ascii=False, default=str) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.html").write_text(render_report(config, summary, [r.to_json() for r in results]))
