"""`loom query sql` and `loom data seed` through typer's CliRunner."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loom.cli.data import data_app
from loom.cli.query import add_languages, query_app
from loom.lakehouse.seed import is_seeded, seed_lakehouse

runner = CliRunner()


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "lakehouse"
    seed_lakehouse(root, orders=3000)
    return root


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No .env, loom.toml or LOOM_* of the developer's leaks into Settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOM_CONFIG", str(tmp_path / "absent.toml"))


def _sql(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(query_app, ["sql", *args], input=stdin)
    return result.exit_code, result.stdout


def test_json_output_is_the_result_set(lakehouse: Path) -> None:
    code, out = _sql(
        "--source", str(lakehouse), "--format", "json", "SELECT count(*) AS n FROM gold.dim_store"
    )
    assert code == 0, out
    payload = json.loads(out)
    assert payload["columns"] == [{"name": "n", "type": "integer"}]
    assert payload["rows"] == [[20]]
    assert payload["engine"] == "duckdb"
    assert payload["truncated"] is False


def test_table_output_shows_rows_and_count(lakehouse: Path) -> None:
    code, out = _sql("--source", str(lakehouse), "SELECT DISTINCT channel FROM gold.dim_store ORDER BY 1")
    assert code == 0, out
    assert "Online" in out
    assert "Store" in out
    assert "2 rows" in out


def test_csv_output(lakehouse: Path) -> None:
    code, out = _sql(
        "-s",
        str(lakehouse),
        "-f",
        "csv",
        "SELECT date_key, date FROM gold.dim_date ORDER BY date_key LIMIT 2",
    )
    assert code == 0, out
    assert list(csv.reader(io.StringIO(out))) == [
        ["date_key", "date"],
        ["20240101", "2024-01-01"],
        ["20240102", "2024-01-02"],
    ]


def test_max_rows_truncates(lakehouse: Path) -> None:
    code, out = _sql("-s", str(lakehouse), "-f", "json", "--max-rows", "3", "SELECT * FROM gold.dim_date")
    payload = json.loads(out)
    assert code == 0
    assert payload["row_count"] == 3
    assert payload["truncated"] is True


def test_query_from_stdin(lakehouse: Path) -> None:
    code, out = _sql("-s", str(lakehouse), "-f", "json", "-", stdin="SELECT 40 + 2 AS answer")
    assert code == 0
    assert json.loads(out)["rows"] == [[42]]


def test_refused_query_exits_2_with_a_json_error(lakehouse: Path) -> None:
    code, out = _sql("-s", str(lakehouse), "-f", "json", "SELECT 1; DROP TABLE gold.fact_sales")
    assert code == 2
    assert json.loads(out)["error"]["code"] == "multiple_statements"


def test_file_access_is_refused(lakehouse: Path) -> None:
    code, out = _sql("-s", str(lakehouse), "-f", "json", "SELECT * FROM '/etc/passwd'")
    assert code == 2
    assert json.loads(out)["error"]["code"] == "file_access"


def test_execution_failure_exits_1(lakehouse: Path) -> None:
    code, out = _sql("-s", str(lakehouse), "-f", "csv", "SELECT CAST(name AS INTEGER) FROM gold.dim_store")
    error = json.loads(out)["error"]
    assert code == 1
    assert error["code"] == "execution_error"
    assert "Conversion Error" in error["message"]


def test_an_unknown_column_is_refused_with_exit_2(lakehouse: Path) -> None:
    code, out = _sql("-s", str(lakehouse), "-f", "json", "SELECT no_such_column FROM gold.dim_store")
    error = json.loads(out)["error"]
    assert code == 2
    assert error["code"] == "unknown_column"


def test_tsql_top_works(lakehouse: Path) -> None:
    code, out = _sql(
        "-s", str(lakehouse), "--dialect", "tsql", "-f", "json",
        "SELECT TOP 3 name, unit_price FROM gold.dim_product ORDER BY unit_price DESC",
    )  # fmt: skip
    payload = json.loads(out)
    assert code == 0, out
    assert payload["row_count"] == 3
    assert "LIMIT 3" in payload["query"]
    prices = [row[1] for row in payload["rows"]]
    assert prices == sorted(prices, reverse=True)


def test_now_pins_relative_dates(lakehouse: Path) -> None:
    code, out = _sql(
        "-s", str(lakehouse), "-f", "json", "--now", "2025-02-03T10:00:00", "SELECT current_date AS d"
    )
    assert code == 0
    assert json.loads(out)["rows"] == [["2025-02-03"]]


def test_batch_writes_one_line_per_input(lakehouse: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch.jsonl"
    lines = [
        {"id": "a", "query": "SELECT count(*) FROM gold.dim_store"},
        {"id": "b", "query": "DELETE FROM gold.dim_store"},
        {"id": "c", "query": "SELECT 1 AS one"},
    ]
    batch.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    code, out = _sql("-s", str(lakehouse), "--batch", str(batch))
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert results[0]["result"]["rows"] == [[20]]
    assert results[1]["error"]["code"] == "not_read_only"
    assert results[2]["result"]["rows"] == [[1]]
    assert code == 2  # the worst line was refused


def test_batch_reports_lines_that_are_not_json(lakehouse: Path, tmp_path: Path) -> None:
    batch = tmp_path / "ok.jsonl"
    batch.write_text('{"id": 1, "query": "SELECT 1"}\nnot json\n')
    code, out = _sql("-s", str(lakehouse), "--batch", str(batch))
    first, second = (json.loads(line) for line in out.splitlines())
    assert first == {"id": 1, "result": first["result"]}
    assert first["result"]["rows"] == [[1]]
    assert second["id"] == 2
    assert second["error"]["code"] == "invalid_batch_line"
    assert code == 2


def test_source_by_name_uses_settings(
    lakehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOM_HOME", str(lakehouse.parent))  # the sample source is $LOOM_HOME/lakehouse
    code, out = _sql("--source", "sales", "-f", "json", "SELECT count(*) FROM gold.dim_product")
    assert code == 0, out
    assert json.loads(out)["rows"] == [[80]]
    code, out = _sql("-f", "json", "SELECT 1")  # the default source is the sample one
    assert code == 0, out


def test_unknown_source_exits_2(tmp_path: Path) -> None:
    code, out = _sql("--source", "no-such-source", "-f", "json", "SELECT 1")
    assert code == 2
    assert json.loads(out)["error"]["code"] == "unknown_source"


def test_seed_creates_then_skips_unless_forced(tmp_path: Path) -> None:
    home = tmp_path / "seeded"
    first = runner.invoke(data_app, ["seed", "--home", str(home), "--orders", "200"])
    assert first.exit_code == 0, first.output
    assert is_seeded(home / "lakehouse")
    assert "gold.fact_sales" in first.stdout
    assert "StormEvents sample" in first.stdout and (home / "storms" / "StormEvents.parquet").is_file()
    again = runner.invoke(data_app, ["seed", "--home", str(home), "--orders", "200"])
    assert again.exit_code == 0
    assert "already exist" in again.stdout
    forced = runner.invoke(data_app, ["seed", "--home", str(home), "--orders", "100", "--force"])
    assert forced.exit_code == 0
    assert "100 orders" in forced.stdout


def test_help_documents_exit_codes() -> None:
    result = runner.invoke(query_app, ["sql", "--help"])
    assert result.exit_code == 0
    assert "exit 2" in result.stdout
    assert "--batch" in result.stdout


def test_gremlin_over_a_graph_folder(tmp_path: Path) -> None:
    add_languages()  # as `loom` does when it starts
    (tmp_path / "nodes.csv").write_text("~id,~label,code:string\n3,airport,AUS\n8,airport,DFW\n")
    (tmp_path / "edges.csv").write_text("~id,~from,~to,~label\n5161,3,8,route\n")
    source = ["--source", str(tmp_path), "--format", "json"]
    answered = runner.invoke(query_app, ["gremlin", *source, "g.V(3).out('route').values('code')"])
    assert answered.exit_code == 0 and json.loads(answered.stdout)["rows"] == [["DFW"]]
    refused = runner.invoke(query_app, ["gremlin", *source, "g.V(3).property('code', 'X')"])
    assert refused.exit_code == 2 and json.loads(refused.stdout)["error"]["code"] == "not_read_only"
