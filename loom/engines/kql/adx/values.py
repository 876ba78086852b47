"""Kusto's column types and values, as a ResultSet carries them.

The v2 response is JSON already: `long`/`int` are numbers, `bool` booleans, `dynamic` JSON values,
and `datetime`, `timespan` and `guid` text (`2024-01-01T00:00:00.1234567Z`, `1.02:03:04`). Those are
kept as Kusto wrote them: Python's datetime and timedelta would drop the seventh digit. A
`decimal` stays exact: a number when a float holds it exactly, else its text.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Sequence

from loom.engines.contracts import Value, json_safe

KUSTO_TYPES = frozenset(
    {"bool", "datetime", "decimal", "dynamic", "guid", "int", "long", "real", "string", "timespan"}
)
# Other spellings the service uses for the same types (`.show … schema` CslType, older responses).
_ALIASES = {
    "boolean": "bool",
    "date": "datetime",
    "double": "real",
    "float": "real",
    "int32": "int",
    "int64": "long",
    "uniqueidentifier": "guid",
    "time": "timespan",
    "object": "dynamic",
}


def kusto_type(name: str) -> str:
    """The Kusto type name (`long`, `datetime`, …) for what a response or schema calls a column."""
    lowered = name.strip().lower()
    return _ALIASES.get(lowered, lowered)


def exact_decimal(value: object) -> Value:
    """A decimal as a JSON number when a float holds it exactly, else as its text."""
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return str(value)
    if not number.is_finite():
        return str(number)
    as_float = float(number)
    return as_float if decimal.Decimal(repr(as_float)) == number else str(number)


_CONVERT: dict[str, Callable[[object], Value]] = {"decimal": exact_decimal}


def row_converter(types: Sequence[str]) -> Callable[[Sequence[object]], list[Value]]:
    """Turns one raw row into JSON-safe values by its columns' Kusto types."""
    converters = [_CONVERT.get(t, json_safe) for t in types]

    def convert(row: Sequence[object]) -> list[Value]:
        return [None if v is None else f(v) for f, v in zip(converters, row, strict=False)]

    return convert
