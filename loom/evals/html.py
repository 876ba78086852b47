"""A run's report as one self-contained HTML page: figures, two small charts, and every case.

No script, no CDN: the charts are inline SVG, so the page opens the same on an air-gapped machine.
"""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d1d1f;max-width:1100px}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.figures{display:flex;gap:1.5rem;flex-wrap:wrap}
.figure{background:#f5f5f7;border-radius:8px;padding:.6rem 1rem}
.figure b{display:block;font-size:1.3rem}.passed{color:#1a7f37}.failed,.timeout,.replay_miss{color:#c62828}
details pre{white-space:pre-wrap;background:#f5f5f7;padding:.5rem;border-radius:6px}
"""


def render_report(config: dict[str, Any], summary: dict[str, Any], cases: list[dict[str, Any]]) -> str:
    title = f"Eval run: {config.get('suite', '')}"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p>model {_e(config.get('model'))} · mode {_e(config.get('mode'))} · "
        f"{_e(config.get('started'))}</p>",
        _figures(summary),
        "<h2>Pass rate by tag</h2>",
        _bars({k: v["pass_rate"] or 0.0 for k, v in summary["by_tag"].items()}),
        "<h2>Latency per case (s)</h2>",
        _histogram([c["latency_s"] for c in cases]),
        "<h2>Cases</h2>",
        _cases(cases),
    ]
    body = "\n".join(parts)
    head = f"<meta charset='utf-8'><title>{_e(title)}</title><style>{STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>\n"


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _figures(summary: dict[str, Any]) -> str:
    shown = {
        "cases": summary["cases"],
        "passed": summary["passed"],
        "pass rate": _pct(summary["pass_rate"]),
        "execution accuracy": _pct(summary["execution_accuracy"]),
        "answered from a query": _pct(summary["answered_from_a_query"]),
        "answers with unrun queries": summary["answers_showing_unrun_queries"],
        "latency p50 / p95": f"{summary['latency_s']['p50']} / {summary['latency_s']['p95']} s",
        "tokens": summary["tokens"]["total"],
    }
    cells = "".join(f"<div class='figure'>{_e(k)}<b>{_e(v)}</b></div>" for k, v in shown.items())
    return f"<div class='figures'>{cells}</div>"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _bars(values: dict[str, float]) -> str:
    if not values:
        return "<p>(no tags)</p>"
    row, width = 22, 600
    height = row * len(values) + 10
    bars = []
    for i, (label, value) in enumerate(values.items()):
        y = i * row + 5
        bars.append(
            f"<text x='0' y='{y + 14}' font-size='12'>{_e(label)}</text>"
            f"<rect x='200' y='{y}' width='{value * (width - 260):.1f}' height='16' fill='#4a7bd0'/>"
            f"<text x='{205 + value * (width - 260):.1f}' y='{y + 13}' font-size='12'>"
            f"{value * 100:.0f} %</text>"
        )
    return f"<svg width='{width}' height='{height}' role='img'>{''.join(bars)}</svg>"


def _histogram(values: list[float], bins: int = 12) -> str:
    if not values:
        return "<p>(no cases)</p>"
    top = max(values) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int(v / top * bins))] += 1
    peak, width, height = max(counts), 600, 140
    bar = width / bins
    rects = "".join(
        f"<rect x='{i * bar:.1f}' y='{height - 20 - c / peak * (height - 30):.1f}' width='{bar - 2:.1f}' "
        f"height='{c / peak * (height - 30):.1f}' fill='#7a9a3a'><title>{c} cases</title></rect>"
        for i, c in enumerate(counts)
    )
    axis = (
        f"<text x='0' y='{height - 4}' font-size='11'>0 s</text>"
        f"<text x='{width - 60}' y='{height - 4}' font-size='11'>{top:.1f} s</text>"
    )
    return f"<svg width='{width}' height='{height}' role='img'>{rects}{axis}</svg>"


def _cases(cases: list[dict[str, Any]]) -> str:
    rows = []
    for case in cases:
        reasons = "<br>".join(_e(f"{f['check']}: {f['reason']}") for f in case["failures"])
        detail = _e(json.dumps(case["turns"], indent=2, ensure_ascii=False))
        rows.append(
            f"<tr><td>{_e(case['id'])}</td><td class='{_e(case['status'])}'>{_e(case['status'])}</td>"
            f"<td>{_e(', '.join(case['tags']))}</td><td>{case['latency_s']}</td><td>{reasons}"
            f"<details><summary>turns</summary><pre>{detail}</pre></details></td></tr>"
        )
    head = "<tr><th>case</th><th>status</th><th>tags</th><th>s</th><th>why / turns</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"
