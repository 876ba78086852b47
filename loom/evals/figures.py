"""Whether the figures an answer states come from what its tools returned.

The product's first rule: every figure the agent states comes from a tool result the user can see.
A figure is grounded when some number in the turn's tool results (rows, counts, the query and the
arguments it was asked with) or in the user's question rounds to it at the precision it is written
in: `5.2 million` stands for 5,223,253.34, `5,223,000` for 5,223,253, `12.5%` for 0.125 or 12.5.
A figure the model worked out itself (a sum, a share, a difference) is not grounded: the user cannot
see where it came from. Numbers inside code (a shown query) and a numbered list's markers are not
figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBER = re.compile(r"(?<![\w.])[-−]?\d[\d,]*(?:\.\d+)?")  # reading numbers in prose, not queries
_FIGURE = re.compile(
    r"(?<![\w.])(?P<number>[-−]?\d[\d,]*(?:\.\d+)?)(?:\s*(?P<scale>%|thousand|million|billion|bn|[kmb])\b|(?P<pct>%))?",
    re.IGNORECASE,
)
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
_MARKER = re.compile(r"^(\s*)\d+[.)](?=\s)", re.MULTILINE)
_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9, "b": 1e9}


def numbers_in(text: str) -> list[float]:
    """The numbers written in `text` (`1,234.5`, `-3`, `−3`), ignoring digits inside words."""
    found = []
    for match in _NUMBER.findall(text):
        value = _value(match)
        if value is not None:
            found.append(value)
    return found


def ungrounded_figures(answer: str, shown: Iterable[str]) -> list[str]:
    """The figures written in `answer` (as written) that no number in `shown` rounds to."""
    pool = [v for text in shown for v in numbers_in(text)]
    prose = _MARKER.sub(r"\1", _CODE.sub(" ", answer))
    return [m.group(0).strip() for m in _FIGURE.finditer(prose) if not _grounded(m, pool)]


def _grounded(match: re.Match[str], pool: list[float]) -> bool:
    written = match.group("number")
    value = _value(written)
    if value is None:
        return True  # not a number after all (`1,,2`): nothing to hold it to
    scale = match.group("scale") or match.group("pct")
    half = _precision(written) / 2
    readings = [(value, half)]
    if scale and scale.lower() in _SCALES:
        factor = _SCALES[scale.lower()]
        readings = [(value * factor, half * factor), (value, half)]
    elif scale == "%":
        readings.append((value / 100, half / 100))
    return any(abs(x - v) <= tolerance + 1e-9 * max(1.0, abs(v)) for x, tolerance in readings for v in pool)


def _precision(written: str) -> float:
    """The step of the last digit written: 0.01 for `3.14`, 1,000 for `5,223,000`, 1 for `7`."""
    digits = written.replace(",", "").lstrip("-−")
    if "." in digits:
        return 10.0 ** -len(digits.split(".", 1)[1])
    zeros = len(digits) - len(digits.rstrip("0"))
    return 10.0 ** min(zeros, len(digits) - 1)


def _value(written: str) -> float | None:
    try:
        return float(written.replace(",", "").replace("−", "-"))
    except ValueError:
        return None
