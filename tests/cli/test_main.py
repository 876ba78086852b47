"""The CLI's conversational commands, run in process on a seeded lakehouse (offline mode)."""

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loom.agent.sources import SAMPLE_SOURCE, _sample_sources
from loom.cli.demo import QUESTIONS
from loom.cli.main import app, main, mount_subcommands
from loom.lakehouse.seed import seed_lakehouse
from loom.settings import Settings
from loom.tools.verified import VerifiedIndex

mount_subcommands()
runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-home")
    seed_lakehouse(root / "lakehouse", orders=1500)
    return root


def test_demo_questions_are_in_the_verified_library_but_the_last() -> None:
    settings = Settings()
    # Every sample, whether or not this machine's home has been seeded with it.
    sources = _sample_sources(settings.lakehouse_dir, settings.storms_dir, settings.graph_dir)
    matched = [
        VerifiedIndex(sources[ask.source or SAMPLE_SOURCE].verified_queries).best(
            ask.question, settings.verified_match_threshold
        )
        is not None
        for ask in QUESTIONS
    ]
    assert matched == [True] * (len(QUESTIONS) - 1) + [False]


def test_demo_prints_answers_from_executed_queries(home: Path) -> None:
    result = runner.invoke(app, ["demo", "--home", str(home)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.count("Verified answer") == len(QUESTIONS) - 1
    assert "No language model is configured" in result.output
    assert "FROM gold.fact_sales" in result.output  # the query is shown
    assert "SUMMARIZECOLUMNS" in result.output  # and the semantic model's, in DAX


def test_ask_continues_a_conversation(home: Path) -> None:
    first = runner.invoke(app, ["ask", "--home", str(home), "What is the revenue by region?"])
    assert first.exit_code == 0, first.output
    conversation = first.output.strip().splitlines()[-1].split()[-1]
    second = runner.invoke(
        app, ["ask", "--home", str(home), "-c", conversation, "How many orders were placed per channel?"]
    )
    assert second.exit_code == 0
    assert f"conversation {conversation}" in second.output


def test_serve_refuses_dev_mode_on_a_public_address(home: Path) -> None:
    result = runner.invoke(app, ["serve", "--home", str(home), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to start" in result.output


def test_ask_with_an_unknown_conversation_or_source_fails_cleanly(home: Path) -> None:
    unknown = runner.invoke(app, ["ask", "--home", str(home), "-c", "nope", "revenue by region"])
    assert unknown.exit_code == 1
    assert "unknown conversation" in unknown.output
    bad_source = runner.invoke(app, ["ask", "--home", str(home), "-s", "hr", "revenue by region"])
    assert bad_source.exit_code == 1
    assert "unknown source 'hr'" in bad_source.output


def test_serve_refuses_entra_mode_without_its_settings(home: Path) -> None:
    result = runner.invoke(
        app, ["serve", "--home", str(home)], env={"LOOM_AUTH_MODE": "entra", "COLUMNS": "200"}
    )
    assert result.exit_code == 2
    assert "LOOM_ENTRA_TENANT_ID" in result.output


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (
            "sources:\n  - name: hr\n    kind: postgres\n    location: x\n",
            "sources[0].kind: ",
        ),  # the wording is the model's
        ("sources: [\n", "is not valid YAML: line 2, column 1"),
        ("sources:\n  - name: a\n    location: x\n  - name: a\n    location: y\n", "more than one source a"),
        ("sources:\n  - name: a\n", "sources[0].location: Field required"),
    ],
)
def test_a_broken_sources_file_is_reported_not_raised(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str,
    said: str,
) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(content)
    monkeypatch.setenv("LOOM_SOURCES_FILE", str(sources))
    for command in (["ask", "revenue by region"], ["serve", "--port", "1"]):
        monkeypatch.setattr(sys, "argv", ["loom", *command, "--home", str(tmp_path)])
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == 2
        shown = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
        assert f"error: the sources file {sources}" in shown
        assert said in shown
        assert "Traceback" not in shown


def test_an_empty_question_or_bad_configuration_is_refused_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = runner.invoke(app, ["ask", "--home", str(tmp_path), "  "])
    assert empty.exit_code == 2
    assert "the question is empty" in empty.output

    monkeypatch.setenv("LOOM_QUERY_TIMEOUT_S", "soon")
    monkeypatch.setattr(sys, "argv", ["loom", "ask", "revenue by region", "--home", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main()
    shown = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2
    assert "error: the configuration has problems: LOOM_QUERY_TIMEOUT_S" in shown

    query = runner.invoke(app, ["query", "sql", "-f", "json", "SELECT 1"])
    assert query.exit_code == 2
    assert '"code": "invalid_configuration"' in query.output
