"""Function calls scored against expected ones the way BFCL's AST checker does, and BFCL loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loom.evals.bfcl import load_bfcl
from loom.evals.calls import calls_verdict
from loom.evals.loaders import BenchmarkDataError

AREA = {
    "name": "area",
    "parameters": {
        "type": "object",
        "properties": {
            "base": {"type": "integer"},
            "height": {"type": "number"},
            "unit": {"type": "string"},
            "sides": {"type": "array", "items": {"type": "string"}},
            "box": {"type": "object", "properties": {"w": {"type": "integer"}}},
        },
        "required": ["base"],
    },
}
WANT: dict[str, Any] = {"area": {"base": [10], "height": [5.5], "unit": ["", "cm"]}}


def verdict(*made: tuple[str, dict[str, Any]], want: Any = (WANT,)) -> str | None:
    return calls_verdict(list(want), [(n, json.dumps(a)) for n, a in made], [AREA])


def test_a_call_with_acceptable_values_matches_and_an_optional_argument_may_be_left_out() -> None:
    assert verdict(("area", {"base": 10, "height": 5.5})) is None
    assert verdict(("area", {"base": 10, "height": 5.5, "unit": "CM"})) is None  # text without case


def test_numbers_compare_by_declared_type() -> None:
    int_for_number = {"area": {"base": [10], "height": [5]}}
    assert verdict(("area", {"base": 10, "height": 5}), want=[int_for_number]) is None
    assert verdict(("area", {"base": 10.0, "height": 5.5})) is not None  # a float for an integer
    assert verdict(("area", {"base": True, "height": 5.5})) is not None  # a bool is not a number


@pytest.mark.parametrize(
    ("made", "reason"),
    [
        (("volume", {"base": 10}), "called volume, expected area"),
        (("area", {"height": 5.5}), "required argument 'base' is missing"),
        (("area", {"base": 10}), "the argument 'height' is missing"),
        (("area", {"base": 10, "height": 5.5, "colour": "red"}), "does not expect: 'colour'"),
        (("area", {"base": 11, "height": 5.5}), "base=11, expected one of [10]"),
    ],
)
def test_each_kind_of_wrong_call_is_named(made: tuple[str, dict[str, Any]], reason: str) -> None:
    found = verdict(made)
    assert found is not None and reason in found


def test_parallel_calls_pair_off_in_any_order_and_must_be_as_many() -> None:
    two = [{"area": {"base": [1], "height": [2]}}, {"area": {"base": [3], "height": [4]}}]
    assert verdict(("area", {"base": 3, "height": 4}), ("area", {"base": 1, "height": 2}), want=two) is None
    assert "expected 2 call(s), the model made 1" in str(
        verdict(("area", {"base": 3, "height": 4}), want=two)
    )
    same_twice = verdict(("area", {"base": 3, "height": 4}), ("area", {"base": 3, "height": 4}), want=two)
    assert same_twice is not None  # one made call cannot stand for two expected ones


def test_no_call_expected_means_none_made() -> None:
    assert verdict(want=[]) is None
    assert "expected 0 call(s), the model made 1: area" == verdict(("area", {"base": 1}), want=[])


def test_text_lists_and_objects_compare_with_bfcls_normalisation() -> None:
    want = [{"area": {"base": [1], "sides": [["North-East", "s w"]], "box": [{"w": [2], "d": ["", 3]}]}}]
    assert verdict(("area", {"base": 1, "sides": ["northeast", "SW"], "box": {"w": 2}}), want=want) is None
    assert verdict(("area", {"base": 1, "sides": ["sw", "northeast"], "box": {"w": 2}}), want=want)
    assert verdict(("area", {"base": 1, "sides": ["northeast", "sw"], "box": {"w": 2, "z": 1}}), want=want)


def test_arguments_that_are_not_a_json_object_are_named() -> None:
    found = calls_verdict([WANT], [("area", "{base: 10")], [AREA])
    assert found is not None and "not JSON" in found


def write_bfcl(root: Path) -> Path:
    (root / "question").mkdir(parents=True)
    (root / "possible_answer").mkdir()
    question = {
        "id": "simple_python_0",
        "question": [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Area?"}]],
        "function": [
            {
                "name": "geo.area",
                "description": "d",
                "parameters": {"type": "dict", "properties": {"r": {"type": "float"}}, "required": ["r"]},
            }
        ],
    }
    answer = {"id": "simple_python_0", "ground_truth": [{"geo.area": {"r": [2.0]}}]}
    (root / "question" / "BFCL_v4_simple_python.json").write_text(json.dumps(question) + "\n")
    (root / "possible_answer" / "BFCL_v4_simple_python.json").write_text(json.dumps(answer) + "\n")
    (root / "question" / "BFCL_v4_irrelevance.json").write_text(
        json.dumps({**question, "id": "irrelevance_0"})
    )
    return root


def test_bfcl_loads_with_json_schema_types_and_names_the_tools_api_accepts(tmp_path: Path) -> None:
    suite = load_bfcl(write_bfcl(tmp_path), categories=("simple_python", "irrelevance"))
    simple, irrelevant = suite.cases
    assert simple.id == "bfcl-simple_python_0" and simple.system == "Be brief." and simple.question == "Area?"
    assert simple.functions[0]["name"] == "geo_area"
    assert simple.functions[0]["parameters"] == {
        "type": "object",
        "properties": {"r": {"type": "number"}},
        "required": ["r"],
    }
    assert simple.expect.calls == ({"geo_area": {"r": (2.0,)}},)
    assert irrelevant.expect.calls == () and "category:irrelevance" in irrelevant.tags


def test_bfcl_names_what_is_missing_or_unknown(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkDataError, match="BFCL_v4_parallel.json is missing"):
        load_bfcl(write_bfcl(tmp_path), categories=("parallel",))
    with pytest.raises(ValueError, match="unknown categories multi_turn_base"):
        load_bfcl(tmp_path, categories=("multi_turn_base",))


BFCL = Path(__file__).resolve().parents[3] / "shared" / "data" / "agent_bfcl"


@pytest.mark.skipif(not (BFCL / "question").is_dir(), reason=f"BFCL data not at {BFCL}")
def test_the_shipped_bfcl_data_loads_whole_and_samples_reproducibly() -> None:
    suite = load_bfcl(BFCL)
    assert len(suite.cases) == 400 + 200 + 200 + 200 + 258 + 240
    names = {f["name"] for c in suite.cases for f in c.functions}
    assert not any("." in n for n in names)
    first, again = load_bfcl(BFCL, sample=30, seed=7), load_bfcl(BFCL, sample=30, seed=7)
    assert [c.id for c in first.cases] == [c.id for c in again.cases]
