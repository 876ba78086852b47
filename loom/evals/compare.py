"""Comparing two runs case by case, and the gate a CI job can hold a change to.

The gate fails when a score (pass rate, execution accuracy) drops by more than `max_drop`
(absolute: 0.02 is two points) or p95 latency rises by more than `max_latency_rise` (0.10: 10 %).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCORES = ("pass_rate", "execution_accuracy")


@dataclass(frozen=True)
class Run:
    path: Path
    summary: dict[str, Any]
    cases: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, path: Path) -> Run:
        try:
            summary = json.loads((path / "summary.json").read_text())
            lines = (path / "cases.jsonl").read_text().splitlines()
        except OSError as e:
            raise ValueError(
                f"{path} is not a run folder (summary.json and cases.jsonl): {e.strerror or e}"
            ) from e
        cases = {c["id"]: c for c in (json.loads(line) for line in lines if line.strip())}
        return cls(path, summary, cases)


@dataclass
class Comparison:
    regressions: list[tuple[str, str, str]] = field(default_factory=list)  # (case, before, after)
    improvements: list[tuple[str, str, str]] = field(default_factory=list)
    only_before: list[str] = field(default_factory=list)
    only_after: list[str] = field(default_factory=list)
    scores: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    p95: tuple[float | None, float | None] = (None, None)

    def gate(self, max_drop: float, max_latency_rise: float) -> list[str]:
        """Why the change does not pass the gate (empty when it does)."""
        reasons = []
        for name, (before, after) in self.scores.items():
            if before is not None and after is not None and before - after > max_drop:
                reasons.append(f"{name} dropped from {before:.3f} to {after:.3f} (more than {max_drop:g})")
        before_p95, after_p95 = self.p95
        if before_p95 and after_p95 is not None and after_p95 > before_p95 * (1 + max_latency_rise):
            rise = after_p95 / before_p95 - 1
            reasons.append(f"p95 latency rose {rise:.0%}, from {before_p95:g} s to {after_p95:g} s")
        return reasons


def compare(before: Run, after: Run) -> Comparison:
    result = Comparison(
        scores={s: (before.summary.get(s), after.summary.get(s)) for s in SCORES},
        p95=(before.summary["latency_s"]["p95"], after.summary["latency_s"]["p95"]),
    )
    for case_id, old in before.cases.items():
        new = after.cases.get(case_id)
        if new is None:
            result.only_before.append(case_id)
        elif old["status"] == "passed" and new["status"] != "passed":
            result.regressions.append((case_id, old["status"], _why(new)))
        elif old["status"] != "passed" and new["status"] == "passed":
            result.improvements.append((case_id, _why(old), new["status"]))
    result.only_after = [c for c in after.cases if c not in before.cases]
    return result


def _why(case: dict[str, Any]) -> str:
    failures = case.get("failures") or []
    return f"{case['status']}: {failures[0]['reason']}" if failures else case["status"]
