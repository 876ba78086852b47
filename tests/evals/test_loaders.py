"""Benchmark loaders (Spider dev, BIRD mini-dev), writing suites, and Spider's hardness levels.

The hardness examples are Spider dev gold queries with the label Spider's own `evaluation.py`
(test-suite-sql-eval @ e97acc5, `Evaluator.eval_hardness`) gives them; on all 1,034 dev queries the
re-implementation gives the official label for every one (checked by running both), and its
distribution is the published one (248 easy, 446 medium, 174 hard, 166 extra).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from loom.engines.sources import DuckDBSource
from loom.evals.hardness import Counts, counts, hardness, level
from loom.evals.loaders import BenchmarkDataError, load_bird, load_spider, write_suite
from loom.evals.suite import Case, Expect, Suite, Turn, load_suite

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SPIDER = DATA / "nl2sql_spider_dev"
BIRD = DATA / "nl2sql_bird_minidev"

needs_spider = pytest.mark.skipif(not (SPIDER / "dev.json").is_file(), reason=f"Spider dev not at {SPIDER}")
needs_bird = pytest.mark.skipif(
    not (BIRD / "mini_dev_sqlite.json").is_file(), reason=f"BIRD mini-dev not at {BIRD}"
)


# --- hardness -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dev_index", "query", "label", "why"),
    [
        (190, "SELECT count(*) FROM AIRPORTS", "easy", "nothing counted"),
        (
            580,
            "SELECT other_student_details FROM Students ORDER BY other_student_details DESC",
            "easy",
            "one component (ORDER BY)",
        ),
        (
            377,
            "SELECT document_id FROM Paragraphs GROUP BY document_id HAVING count(*) BETWEEN 1 AND 2",
            "easy",
            "GROUP BY alone; Spider's aggregate count reads a HAVING condition's NOT flag, so count(*) "
            "in HAVING is not counted",
        ),
        (
            701,
            'select contestant_name from contestants where contestant_name like "%al%"',
            "medium",
            "WHERE and LIKE: two components",
        ),
        (
            288,
            "SELECT count(*) ,  t2.name FROM hiring AS t1 JOIN shop AS t2 ON t1.shop_id  =  t2.shop_id "
            "GROUP BY t2.name",
            "medium",
            "a JOIN and GROUP BY, and two selected expressions",
        ),
        (
            376,
            "SELECT document_id FROM Paragraphs GROUP BY document_id ORDER BY count(*) ASC LIMIT 1",
            "hard",
            "three components: GROUP BY, ORDER BY, LIMIT",
        ),
        (
            856,
            "SELECT Record_Company FROM orchestra WHERE Year_of_Founded  <  2003 INTERSECT "
            "SELECT Record_Company FROM orchestra WHERE Year_of_Founded  >  2003",
            "hard",
            "a set operation (component 2) over simple SELECTs",
        ),
        (
            311,
            "SELECT T1.template_id ,  T2.Template_Type_Code FROM Documents AS T1 JOIN Templates AS T2 "
            "ON T1.template_id  =  T2.template_id GROUP BY T1.template_id ORDER BY count(*) DESC LIMIT 1",
            "extra",
            "four components: JOIN, GROUP BY, ORDER BY, LIMIT",
        ),
        (
            917,
            "SELECT min(grade) FROM Highschooler WHERE id NOT IN (SELECT T1.student_id FROM Friend AS T1 "
            "JOIN Highschooler AS T2 ON T1.student_id  =  T2.id)",
            "extra",
            "a nested query, and NOT IN counts as a second aggregate (Spider's quirk): without the "
            "quirk it would be hard",
        ),
    ],
)
def test_hardness_of_spider_dev_examples(dev_index: int, query: str, label: str, why: str) -> None:
    assert hardness(query) == label, f"dev[{dev_index}]: {why}"


def test_hardness_counts_and_thresholds() -> None:
    from sqlglot import parse_one

    tree = parse_one("SELECT a FROM t WHERE b = 1 OR c LIKE 'x' AND d IN (SELECT d FROM s)", read="sqlite")
    assert counts(tree) == Counts(component1=3, component2=1, others=1)  # where, or, like | IN | 3 conds
    assert level(Counts(0, 0, 0)) == "easy"
    assert level(Counts(2, 0, 1)) == "medium"
    assert level(Counts(1, 1, 0)) == "hard"
    assert level(Counts(1, 1, 1)) == "extra"


@needs_spider
def test_hardness_distribution_on_spider_dev_is_the_official_one() -> None:
    entries = json.loads((SPIDER / "dev.json").read_text())
    found = Counter(hardness(e["query"]) for e in entries)
    assert found == {"easy": 248, "medium": 446, "hard": 174, "extra": 166}


# --- loading the real data ------------------------------------------------------------------------


@needs_spider
def test_spider_dev_loads_every_question() -> None:
    suite = load_spider(SPIDER)
    assert len(suite.cases) == 1034 and len(suite.sources) == 20
    first = suite.cases[0]
    assert first.id == "spider-dev-0" and first.source == "concert_singer"
    assert first.question == "How many singers do we have?"
    assert first.expect.gold == "SELECT count(*) FROM singer" and first.expect.tools == ("nl2sql",)
    assert first.tags == ("spider", "db:concert_singer", "difficulty:easy")
    for source in suite.sources:
        assert isinstance(source, DuckDBSource) and source.dialect == "sqlite"
        assert Path(source.location).is_absolute() and Path(source.location).is_file()
        assert Path(source.location).name == f"{source.name}.sqlite"


@needs_spider
def test_a_spider_sample_is_reproducible() -> None:
    a = load_spider(SPIDER, sample=200, seed=7)
    b = load_spider(SPIDER, sample=200, seed=7)
    c = load_spider(SPIDER, sample=200, seed=8)
    ids = [case.id for case in a.cases]
    assert ids == [case.id for case in b.cases] and ids != [case.id for case in c.cases]
    indexes = [int(i.rsplit("-", 1)[1]) for i in ids]
    assert indexes == sorted(indexes) and len(set(indexes)) == 200
    import random

    assert indexes == sorted(random.Random(7).sample(range(1034), 200))
    assert {s.name for s in a.sources} == {case.source for case in a.cases}


@needs_bird
def test_bird_loads_the_questions_of_the_databases_present() -> None:
    suite = load_bird(BIRD)
    subset = json.loads((BIRD / "mini_dev_sqlite_subset_3dbs.json").read_text())
    assert sorted(c.id for c in suite.cases) == sorted(f"bird-{e['question_id']}" for e in subset)
    assert {s.name for s in suite.sources} == {"student_club", "superhero", "toxicology"}
    case = next(c for c in suite.cases if c.id == "bird-1312")
    assert case.question == "What's Angela Sanders's major?" and case.source == "student_club"
    assert case.evidence and case.evidence.startswith("Angela Sanders is the full name")
    assert case.tags == ("bird", "db:student_club", "difficulty:simple")
    assert case.expect.gold and case.expect.gold.startswith("SELECT T2.major_name")
    levels = Counter(t for c in suite.cases for t in c.tags if t.startswith("difficulty:"))
    assert set(levels) == {"difficulty:simple", "difficulty:moderate", "difficulty:challenging"}
    assert sum(levels.values()) == 140


# --- loading a small made-up copy -----------------------------------------------------------------


def _database(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (a INTEGER)")


@pytest.fixture
def tiny_spider(tmp_path: Path) -> Path:
    entries = [
        {"db_id": "one", "question": "How many?", "query": "SELECT count(*) FROM t"},
        {"db_id": "gone", "question": "Lost?", "query": "SELECT 1"},
        {"db_id": "one", "question": "Which?", "query": "SELECT a FROM t WHERE a > 1 ORDER BY a LIMIT 1"},
    ]
    (tmp_path / "dev.json").write_text(json.dumps(entries))
    _database(tmp_path / "database" / "one" / "one.sqlite")
    return tmp_path


def test_questions_whose_database_is_missing_are_left_out(tiny_spider: Path) -> None:
    suite = load_spider(tiny_spider)
    assert [c.id for c in suite.cases] == ["spider-dev-0", "spider-dev-2"]  # ids keep dev.json's index
    assert [c.tags[-1] for c in suite.cases] == ["difficulty:easy", "difficulty:hard"]
    assert [s.name for s in suite.sources] == ["one"]


def test_a_missing_data_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkDataError, match=r"data folder .*nowhere does not exist"):
        load_spider(tmp_path / "nowhere")
    with pytest.raises(BenchmarkDataError, match=r"mini_dev_sqlite\.json is missing"):
        load_bird(tmp_path)


def test_no_database_present_is_named(tmp_path: Path) -> None:
    (tmp_path / "dev.json").write_text(json.dumps([{"db_id": "x", "question": "q", "query": "SELECT 1"}]))
    with pytest.raises(BenchmarkDataError, match="none of the questions' databases is present"):
        load_spider(tmp_path)


def test_a_sample_larger_than_the_questions_is_refused(tiny_spider: Path) -> None:
    with pytest.raises(ValueError, match="between 1 and 2"):
        load_spider(tiny_spider, sample=3)


def test_the_questions_not_drawn_can_be_the_verified_queries(tiny_spider: Path) -> None:
    # What verified examples add is measured on questions they do not contain.
    suite = load_spider(tiny_spider, sample=1, seed=0, examples_from_rest=True)
    (case,) = suite.cases
    (source,) = suite.sources
    examples = [(v.question, v.query, v.dialect) for v in source.verified_queries]
    other = {"How many?": ("Which?", "SELECT a FROM t WHERE a > 1 ORDER BY a LIMIT 1", "sqlite")}
    other["Which?"] = ("How many?", "SELECT count(*) FROM t", "sqlite")
    assert case.question is not None and examples == [other[case.question]]
    assert "verified queries" in suite.description
    assert not load_spider(tiny_spider, sample=1, seed=0).sources[0].verified_queries


# --- writing --------------------------------------------------------------------------------------


def _awkward_suite(tmp_path: Path) -> Suite:
    return Suite(
        name="awkward",
        description="quotes ' \" and: colons",
        sources=(DuckDBSource(name="one", location=str(tmp_path / "one.sqlite"), dialect="sqlite"),),
        cases=(
            Case(
                id="a",
                question="yes",  # YAML 1.1 would read a bare yes as true
                source="one",
                evidence="  leading spaces, a # hash, a: colon\nand a second line",
                tags=("x", "db:one"),
                expect=Expect(gold="SELECT 'it''s' AS \"q\" -- comment", tools=("nl2sql",), ordered=False),
            ),
            Case(id="b", question="null", expect=Expect(numbers=(1.5, 2.0), contains=("Ünïcode ✓",))),
            Case(id="c", turns=(Turn(question="first"), Turn(question="then", expect=Expect(refuse=True)))),
        ),
    )


@pytest.mark.parametrize("name", ["suite.yaml", "suite.jsonl"])
def test_a_written_suite_reads_back_the_same(tmp_path: Path, name: str) -> None:
    suite = _awkward_suite(tmp_path)
    assert load_suite(write_suite(suite, tmp_path / name)) == suite


def test_jsonl_is_a_header_then_a_case_per_line(tmp_path: Path) -> None:
    lines = write_suite(_awkward_suite(tmp_path), tmp_path / "s.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["suite"] == "awkward" and len(lines) == 4
    assert [json.loads(line)["id"] for line in lines[1:]] == ["a", "b", "c"]


@needs_spider
def test_a_loaded_benchmark_round_trips(tmp_path: Path) -> None:
    suite = load_spider(SPIDER, sample=50, seed=1)
    assert load_suite(write_suite(suite, tmp_path / "spider.yaml")) == suite
    assert load_suite(write_suite(suite, tmp_path / "spider.jsonl")) == suite


def test_eval_load_writes_the_rest_as_examples_and_names_a_misuse(tiny_spider: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from loom.cli.main import app, mount_subcommands

    mount_subcommands()
    runner, out = CliRunner(), tmp_path / "suite.yaml"
    args = ["eval", "load", "spider", "--data", str(tiny_spider), "--out", str(out)]
    done = runner.invoke(app, [*args, "--sample", "1", "--examples-from-rest"])
    assert done.exit_code == 0, done.output
    assert len(load_suite(out).sources[0].verified_queries) == 1
    refused = runner.invoke(app, [*args, "--examples-from-rest"])
    assert refused.exit_code == 2 and "with --sample" in refused.output
