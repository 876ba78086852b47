"""Suite files: both forms read the same, and a file with mistakes is refused naming each line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loom.engines.sources import DuckDBSource
from loom.evals.suite import SuiteError, load_suite

SMOKE = Path(__file__).parents[2] / "evals" / "suites" / "smoke.yaml"


def test_the_shipped_smoke_suite_reads() -> None:
    suite = load_suite(SMOKE)
    assert suite.name == "smoke" and len(suite.cases) >= 10
    follow_up = next(c for c in suite.cases if c.id == "orders-by-year-follow-up")
    assert [t.question for t in follow_up.all_turns] == [
        "How many distinct orders were placed in 2024?",
        "And in 2025?",
    ]


def test_jsonl_with_a_header_line_reads_like_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    lines = [
        {"suite": "spider-sample", "sources": [{"name": "db", "location": "db.sqlite", "dialect": "sqlite"}]},
        {"id": "a", "question": "How many?", "source": "db", "expect": {"gold": "SELECT 1"}},
        {"id": "b", "question": "Hi", "tags": ["x"]},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    suite = load_suite(path)
    assert suite.name == "spider-sample"
    assert [c.id for c in suite.cases] == ["a", "b"]
    source = suite.sources[0]
    assert isinstance(source, DuckDBSource) and source.location == str(tmp_path / "db.sqlite")


def test_every_mistake_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: t\n"
        "sources:\n"
        "  - name: a\n"
        "    location: x\n"
        "    bogus: 1\n"
        "cases:\n"
        "  - id: c1\n"
        "    question: hi\n"
        "    expect:\n"
        "      numbrs: [1]\n"
        "  - id: c2\n"
        "    turns: []\n"
    )
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    message = str(raised.value)
    assert "line 5, sources.0.bogus" in message
    assert "line 10, cases.0.expect.numbrs" in message
    assert "line 11, cases.1" in message and "either `question`" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: t\ncases: [\n", "not valid YAML: line 3"),
        ("- just a list\n", "must be a mapping"),
        (
            "name: t\ncases:\n  - {id: a, question: q}\n  - {id: a, question: r}\n",
            "case id more than once: a",
        ),
        # probe 13 (R13-3): the run's folder is named after the suite, so a path would leave --out
        ("name: ../../elsewhere\ncases: [{id: a, question: q}]\n", "line 1, name: .*not a path"),
        ("name: /tmp/x\ncases: [{id: a, question: q}]\n", "not a path"),
        # probe 16 (R16-5): ids are printed a line each as a run goes; a newline forged log lines
        (
            'name: t\ncases: [{id: "a\\nFAKE: 99/99 passed", question: q}]\n',
            "line 2, cases.0.id: .*printable",
        ),
        ('name: t\ncases: [{id: "a\\u001b[31m", question: q}]\n', "printable"),
        # probe 14 (R14-3): 5,000 levels of nesting ran the readers out of stack
        (
            "name: t\ncases: [{id: a, question: q, tags: " + "[" * 5000 + "]" * 5000 + "}]\n",
            "nests values too deeply",
        ),
        # probe 13 (R13-4): 537 bytes of aliases of aliases expand to 9^9 values
        (
            "name: t\n"
            + "".join(
                f"x{i}: &l{i} [{', '.join(['lol'] if i == 0 else [f'*l{i - 1}'] * 9)}]\n" for i in range(9)
            )
            + "cases: [{id: a, question: q, tags: *l8}]\n",
            "expands to more than 200,000 values",
        ),
    ],
)
def test_unusable_files_say_why(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=expected):
        load_suite(path)


def test_a_jsonl_suite_nested_too_deeply_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a", "question": "q", "tags": ' + "[" * 5000 + "]" * 5000 + "}\n")
    with pytest.raises(SuiteError, match="nests values too deeply"):
        load_suite(path)


def test_a_suite_nested_deeper_than_code_after_it_recurses_is_refused_naming_where(tmp_path: Path) -> None:
    # Probe 15 (R15-6): 960 levels in `functions` and `expect.calls` read fine, then the run's
    # first model call ended in a RecursionError and no case was recorded.
    deep = "{a: " * 200 + "1" + "}" * 200
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\ncases:\n  - {id: ok, question: q}\n  - id: a\n    question: q\n"
        f"    expect: {{calls: [{deep}]}}\n"
    )
    with pytest.raises(
        SuiteError, match=r"more than 48 levels deep \(line 6, cases\.1\.expect\.calls\.0\.a…\)"
    ):
        load_suite(path)
    lines = tmp_path / "s.jsonl"
    lines.write_text(
        '{"id": "a", "question": "q", "functions": [' + '{"a": ' * 200 + "1" + "}" * 200 + "]}\n"
    )
    with pytest.raises(SuiteError, match=r"more than 48 levels deep \(line 1, cases\.0"):
        load_suite(lines)


def test_a_jsonl_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a", "question": "q"}\n{oops\n')
    with pytest.raises(SuiteError, match="line 2"):
        load_suite(path)


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="cannot be read"):
        load_suite(tmp_path / "nope.yaml")
