"""Scoring function calls against the calls a case expects, the way BFCL's AST checker does
(re-implemented from its documented rules, not copied).

A case expects a list of calls, each `{function: {parameter: [acceptable values]}}`. The model's
calls must be as many as expected and pair off with them in any order. A call matches when it names
the function, gives every required parameter, gives no parameter the case does not list, and each
value it gives is one of the acceptable ones; a parameter whose acceptable values include `""` may
be left out. Values compare by the parameter's declared JSON-schema type: an integer is accepted
for a `number`, not a float for an `integer`; text compares without case, spaces or the punctuation
`, . / - _ * ^` (BFCL's normalisation), inside lists and objects too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

ExpectedCall = Mapping[str, Mapping[str, Sequence[Any]]]  # {function: {parameter: acceptable values}}
MadeCall = tuple[str, str]  # (function, arguments as the JSON text the model wrote)

_IGNORED = re.compile(r"[ ,./\-_*^]")


def calls_verdict(
    expected: Sequence[ExpectedCall], made: Sequence[MadeCall], functions: Sequence[Mapping[str, Any]]
) -> str | None:
    """Why the calls made do not match the expected ones, or None when they do."""
    if len(made) != len(expected):
        return f"expected {len(expected)} call(s), the model made {len(made)}: {_names(made)}"
    specs = {str(f.get("name")): f for f in functions}
    left = list(made)
    for want in expected:
        reasons = []
        for i, call in enumerate(left):
            reason = _call_problem(want, call, specs)
            if reason is None:
                del left[i]
                break
            reasons.append(reason)
        else:
            return reasons[0] if len(reasons) == 1 else f"no call matches {_describe(want)}: {reasons[0]}"
    return None


def _names(made: Sequence[MadeCall]) -> str:
    return ", ".join(name for name, _ in made) or "none"


def _describe(want: ExpectedCall) -> str:
    return ", ".join(want)


def _call_problem(want: ExpectedCall, call: MadeCall, specs: Mapping[str, Mapping[str, Any]]) -> str | None:
    (function, params), (name, text) = next(iter(want.items())), call
    if name != function:
        return f"called {name}, expected {function}"
    try:
        given = json.loads(text or "{}")
    except json.JSONDecodeError:
        return f"{name}: its arguments are not JSON: {text[:80]!r}"
    if not isinstance(given, dict):
        return f"{name}: its arguments are not an object"
    schema = specs.get(function, {}).get("parameters", {})
    return _arguments_problem(function, params, given, schema)


def _arguments_problem(
    function: str, params: Mapping[str, Sequence[Any]], given: Mapping[str, Any], schema: Mapping[str, Any]
) -> str | None:
    types = schema.get("properties", {})
    for required in schema.get("required", ()):
        if required not in given:
            return f"{function}: the required argument {required!r} is missing"
    for key, value in given.items():
        if key not in params:
            return f"{function}: an argument the case does not expect: {key!r}"
        declared = types.get(key, {})
        if not any(_same(value, ok, declared) for ok in params[key]):
            return f"{function}: {key}={value!r}, expected one of {list(params[key])!r}"
    for key, acceptable in params.items():
        if key not in given and "" not in acceptable:
            return f"{function}: the argument {key!r} is missing"
    return None


def _same(value: Any, expected: Any, declared: Mapping[str, Any]) -> bool:
    kind = declared.get("type")
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and value == expected
    if kind == "integer" or (isinstance(expected, int) and kind is None):
        return isinstance(value, int) and isinstance(expected, int | float) and value == expected
    if isinstance(expected, int | float):
        return isinstance(value, int | float) and float(value) == float(expected)
    if isinstance(expected, str):
        return isinstance(value, str) and _text(value) == _text(expected)
    if isinstance(expected, list):
        return _same_list(value, expected, declared.get("items", {}))
    if isinstance(expected, dict):
        return _same_object(value, expected, declared.get("properties", {}))
    return bool(value == expected)


def _same_list(value: Any, expected: list[Any], items: Mapping[str, Any]) -> bool:
    return (
        isinstance(value, list)
        and len(value) == len(expected)
        and all(_same(v, e, items) for v, e in zip(value, expected, strict=True))
    )


def _same_object(value: Any, expected: Mapping[str, Any], properties: Mapping[str, Any]) -> bool:
    """An expected object lists, per key, its acceptable values (BFCL's form for nested objects);
    a key left out is fine when "" is acceptable."""
    if not isinstance(value, dict) or set(value) - set(expected):
        return False
    for key, acceptable in expected.items():
        options = acceptable if isinstance(acceptable, list) else [acceptable]
        if key not in value:
            if "" not in options:
                return False
            continue
        if not any(_same(value[key], ok, properties.get(key, {})) for ok in options):
            return False
    return True


def _text(value: str) -> str:
    return _IGNORED.sub("", value).lower().replace("'", '"')
