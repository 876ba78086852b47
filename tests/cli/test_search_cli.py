"""`loom index build` and `loom query search` as users run them: progress and a summary, the
Query CLI's JSON and exit codes, batch lines, and plain errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loom.cli.main import app, mount_subcommands
from tests.support.openai_server import OpenAICompatServer

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOM_CONFIG", str(tmp_path / "absent.toml"))
    mount_subcommands()


@pytest.fixture
def index(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text(
        "---\nyear: 2024\n---\n# Refunds\n\nGoods may be returned within 30 days.\n"
    )
    (docs / "runbook.txt").write_text("Nightly load\n\nIf the nightly load fails, rerun bronze.\n")
    (docs / "scan.pdf").write_bytes(b"%PDF-1.4 not a pdf")
    out = tmp_path / "index"
    result = runner.invoke(app, ["index", "build", "--source", str(docs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 added" in result.output and "1 skipped" in result.output
    assert "warning: skipped scan.pdf" in result.output
    return out


def test_a_search_prints_the_passages_as_json(index: Path) -> None:
    result = runner.invoke(
        app, ["query", "search", "--source", str(index), "--format", "json", "returned goods"]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert [c["name"] for c in found["columns"]] == ["id", "chunk_id", "title", "text", "score", "year"]
    assert found["rows"][0][:3] == ["refunds.md", "refunds.md#0", "Refunds"]


def test_a_batch_writes_a_line_per_query_and_exits_with_the_worst(index: Path, tmp_path: Path) -> None:
    lines = tmp_path / "q.jsonl"
    lines.write_text('{"id": "a", "query": "nightly load"}\n{"id": "b", "query": "   "}\n')
    result = runner.invoke(app, ["query", "search", "--source", str(index), "--batch", str(lines)])
    out = [json.loads(line) for line in result.output.splitlines()]
    assert out[0]["id"] == "a" and out[0]["result"]["rows"][0][0] == "runbook.txt"
    assert out[1] == {"id": "b", "error": {"code": "invalid_query", "message": out[1]["error"]["message"]}}
    assert result.exit_code == 2


def test_a_bad_filter_or_a_missing_index_is_refused_plainly(index: Path, tmp_path: Path) -> None:
    bad = runner.invoke(
        app, ["query", "search", "-s", str(index), "--filter", "yeer ge 2020", "-f", "json", "x"]
    )
    assert bad.exit_code == 2 and json.loads(bad.output)["error"]["code"] == "unknown_field"
    (tmp_path / "empty").mkdir()
    missing = runner.invoke(app, ["query", "search", "-s", str(tmp_path / "empty"), "-f", "json", "x"])
    assert missing.exit_code == 2
    assert "not a search index" in json.loads(missing.output)["error"]["message"]


def test_an_update_reports_what_changed(index: Path, tmp_path: Path) -> None:
    (tmp_path / "docs" / "runbook.txt").unlink()
    result = runner.invoke(app, ["index", "build", "--source", str(tmp_path / "docs"), "--out", str(index)])
    assert result.exit_code == 0
    assert "0 added, 0 updated, 1 removed, 1 unchanged" in result.output


def test_with_an_embedding_model_the_index_gets_its_vectors_and_search_uses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openai_server: OpenAICompatServer
) -> None:
    """Over the real HTTP path: the local OpenAI-compatible server's embeddings endpoint."""
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setenv("LOOM_MODEL", "m")
    monkeypatch.setenv("LOOM_EMBEDDING_MODEL", "e")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Refunds\n\nGoods may be returned in 30 days.\n")
    out = tmp_path / "index"
    built = runner.invoke(app, ["index", "build", "--source", str(docs), "--out", str(out)])
    assert built.exit_code == 0, built.output
    assert "with vectors from e" in built.output and (out / "vectors.npy").is_file()
    asked = [r for r in openai_server.recorded if r.path.endswith("/embeddings")]
    assert asked and asked[0].body["model"] == "e"
    found = runner.invoke(app, ["query", "search", "-s", str(out), "-f", "json", "returned goods"])
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)["rows"][0][0] == "a.md"
    assert len([r for r in openai_server.recorded if r.path.endswith("/embeddings")]) == len(asked) + 1
