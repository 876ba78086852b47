"""`loom` as a user runs it: a separate process, LOOM_HOME in a temporary folder, no model configured.

Each test here is something a new user tripped on; what it checks is what they saw (exit code,
stdout, stderr), not the functions behind it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loom.lakehouse.seed import seed_lakehouse

BROKEN_SOURCES = "sources: [\n"


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("entry") / "lakehouse"
    seed_lakehouse(root, orders=1500)
    return root


@pytest.fixture(scope="module")
def seeded_home(lakehouse: Path) -> Path:
    """A home whose sample lakehouse is already there (a copy of the module's small one)."""
    home = lakehouse.parent / "home"
    shutil.copytree(lakehouse, home / "lakehouse")
    return home


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _env(home: Path, columns: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    model_or_loom = ("LOOM_", "OPENAI_", "AZURE_OPENAI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(model_or_loom)}
    return env | {"LOOM_HOME": str(home), "COLUMNS": str(columns)} | (extra or {})


def loom(
    *args: str, home: Path, columns: int = 200, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`loom ARGS…` in its own process; cwd is the home's parent, so no .env or loom.toml leaks in."""
    home.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "loom.cli.main", *args],
        input="",
        capture_output=True,
        text=True,
        env=_env(home, columns, env),
        cwd=home.parent,
        timeout=120,
    )


def sql(
    lakehouse: Path, *args: str, columns: int = 200, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`loom query sql --source LAKEHOUSE ARGS…`."""
    home = lakehouse.parent / "query-home"
    return loom("query", "sql", "-s", str(lakehouse), *args, home=home, columns=columns, env=env)


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


# --- 1. an export is complete or says it is not ------------------------------------------------


def test_a_csv_export_cut_at_the_default_row_cap_says_so_and_exits_3(lakehouse: Path) -> None:
    out = sql(lakehouse, "-f", "csv", "SELECT * FROM gold.fact_sales")
    assert out.returncode == 3
    assert len(lines(out.stdout)) == 1 + 1000  # the header, then the rows up to the cap
    [warning] = lines(out.stderr)
    assert "stopped at 1000 rows" in warning
    assert "--max-rows" in warning


def test_a_csv_export_cut_at_an_explicit_max_rows_says_so_and_exits_0(lakehouse: Path) -> None:
    out = sql(lakehouse, "-f", "csv", "--max-rows", "5", "SELECT * FROM gold.fact_sales")
    assert out.returncode == 0
    assert len(lines(out.stdout)) == 1 + 5
    [warning] = lines(out.stderr)
    assert "stopped at 5 rows" in warning


@pytest.mark.parametrize(
    ("args", "footer"),
    [
        ((), "3 rows · stopped at the default row cap; pass --max-rows N for more"),
        (("--max-rows", "2"), "2 rows · stopped at the --max-rows limit; there are more rows"),
    ],
)
def test_a_cut_table_says_so_in_its_footer_and_exits_0(
    lakehouse: Path, args: tuple[str, ...], footer: str
) -> None:
    out = sql(lakehouse, *args, "SELECT * FROM gold.dim_store", env={"LOOM_QUERY_MAX_ROWS": "3"})
    assert out.returncode == 0
    assert out.stderr == ""
    assert footer in out.stdout


@pytest.mark.parametrize("command", [["query"], ["query", "sql"]])
def test_exit_3_is_documented(tmp_path: Path, command: list[str]) -> None:
    out = loom(*command, "--help", home=tmp_path)
    assert out.returncode == 0
    assert "3 a CSV export stopped at the default row cap" in " ".join(out.stdout.replace("│", "").split())


# --- 2. the sources file is read before anything slow, and seeding only for the sample ------------


@pytest.mark.parametrize(
    "command",
    [["ask", "revenue by region"], ["chat"], ["demo"], ["serve", "--port", "1"]],
    ids=["ask", "chat", "demo", "serve"],
)
def test_a_broken_sources_file_is_reported_before_seeding(fresh_home: Path, command: list[str]) -> None:
    fresh_home.mkdir(parents=True)
    (fresh_home / "sources.yaml").write_text(BROKEN_SOURCES)
    out = loom(*command, home=fresh_home)
    assert out.returncode == 2
    assert f"error: the sources file {fresh_home / 'sources.yaml'} is not valid YAML" in out.stderr
    assert "Traceback" not in out.stderr
    assert "seeding" not in out.stderr
    assert sorted(p.name for p in fresh_home.iterdir()) == ["sources.yaml"]  # no state written


def test_with_a_sources_file_the_sample_lakehouse_is_not_seeded(fresh_home: Path, lakehouse: Path) -> None:
    fresh_home.mkdir(parents=True)
    (fresh_home / "sources.yaml").write_text(
        f"sources:\n  - name: shop\n    kind: duckdb\n    location: {lakehouse}\n"
    )
    out = loom("ask", "-s", "shop", "How many stores are there?", home=fresh_home)
    assert out.returncode == 0, out.stderr
    assert "No language model is configured" in out.stdout
    assert not (fresh_home / "lakehouse").exists()
    assert "seeding" not in out.stderr


# --- 3. serve: the port is checked and bound before the banner -------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(fresh_home: Path, busy_port: int) -> None:
    out = loom("serve", "--port", str(busy_port), home=fresh_home)
    assert out.returncode == 2
    assert lines(out.stderr) == [f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use"]
    assert out.stdout == ""
    assert not (fresh_home / "lakehouse").exists()  # failed before seeding


def test_serve_refuses_a_port_out_of_range_briefly(fresh_home: Path) -> None:
    out = loom("serve", "--port", "99999", home=fresh_home)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(lines(out.stderr)) < 10
    assert "--port" in out.stderr
    assert "65535" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """`loom serve` in the background; `line(...)` reads its stderr up to the first line that matches."""

    def __init__(self, home: Path, port: int) -> None:
        home.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "loom.cli.main", "serve", "--port", str(port)]
        self.process = subprocess.Popen(
            command, env=_env(home, 200), cwd=home.parent, stderr=subprocess.PIPE, text=True
        )
        self.watchdog = threading.Timer(90, self.process.kill)  # a hung server fails the test, not CI
        self.watchdog.start()
        self.seen: list[str] = []

    def line(self, containing: str) -> str:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.seen.append(line)
            if containing in line:
                return line
        raise AssertionError(f"loom serve ended without {containing!r}: {''.join(self.seen)}")

    def stop(self) -> None:
        self.watchdog.cancel()
        self.process.terminate()
        self.process.wait(timeout=20)


def test_serve_binds_then_prints_the_address_it_listens_on(tmp_path: Path, lakehouse: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "sources.yaml").write_text(
        f"sources:\n  - name: shop\n    kind: duckdb\n    location: {lakehouse}\n"
    )
    port = _free_port()
    served = Served(home, port)
    try:
        banner = served.line("Loom API on")
        assert f"Loom API on http://127.0.0.1:{port} · offline" in banner
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        served.stop()


def test_serve_on_a_fresh_home_shows_the_seeding_with_its_port_already_bound(fresh_home: Path) -> None:
    port = _free_port()
    served = Served(fresh_home, port)
    try:
        served.line("seeding the sample lakehouse")
        assert not any("Loom API on" in line for line in served.seen)  # the banner waits for the data
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    finally:
        served.stop()


# --- 4, 7. ask: errors on stderr, exit 1, and no conversation that does not exist ---------------


def test_ask_with_an_unknown_conversation_says_so_on_stderr(seeded_home: Path) -> None:
    out = loom("ask", "-c", "nope", "What is the total revenue by year?", home=seeded_home)
    assert out.returncode == 1
    assert lines(out.stderr) == ["error: unknown conversation 'nope'"]
    assert "conversation" not in out.stdout
    assert "error" not in out.stdout


def test_ask_with_an_unknown_source_says_so_on_stderr_without_seeding(fresh_home: Path) -> None:
    out = loom("ask", "-s", "hr", "revenue by region", home=fresh_home)
    assert out.returncode == 1
    assert lines(out.stderr) == ["error: unknown source 'hr'; known sources: sales, sales-model"]
    assert out.stdout == ""
    assert not (fresh_home / "lakehouse").exists()


def test_ask_answers_on_stdout_with_its_conversation_and_a_pluralized_footer(seeded_home: Path) -> None:
    out = loom("ask", "What is the total revenue by year?", home=seeded_home)
    assert out.returncode == 0
    assert out.stderr == ""
    assert re.fullmatch(r"conversation [0-9a-f]{32}", lines(out.stdout)[-1])
    assert re.search(r"^2 rows · [\d.]+ ms$", out.stdout, re.MULTILINE)


# --- 5. errors people can read; bounds --------------------------------------------------------


def test_a_query_error_is_a_readable_line_on_stderr_in_table_format(lakehouse: Path) -> None:
    out = sql(lakehouse, "SELECT café FROM gold.dim_store")
    assert out.returncode == 2
    assert out.stdout == ""
    [line] = lines(out.stderr)
    assert line.startswith("error (unknown_column): ")
    assert "'café'" in line


@pytest.mark.parametrize("output", ["json", "csv"])
def test_a_query_error_is_json_on_stdout_for_machines(lakehouse: Path, output: str) -> None:
    out = sql(lakehouse, "-f", output, "SELECT café FROM gold.dim_store")
    assert out.returncode == 2
    assert out.stderr == ""
    assert "café" in out.stdout  # written as is, not as \u00e9
    assert json.loads(out.stdout)["error"]["code"] == "unknown_column"


def test_a_huge_max_rows_is_refused_readably(lakehouse: Path) -> None:
    out = sql(lakehouse, "--max-rows", str(10**30), "SELECT 1")
    assert out.returncode == 2
    assert "--max-rows" in out.stderr
    assert "1000000000" in out.stderr
    assert "Traceback" not in out.stderr
    assert "INT128" not in out.stdout + out.stderr


@pytest.mark.parametrize("question", ["", "   "])
def test_catalog_link_refuses_an_empty_question(lakehouse: Path, question: str) -> None:
    out = loom("catalog", "link", "--source", str(lakehouse), "--question", question, home=lakehouse.parent)
    assert out.returncode == 2
    assert json.loads(out.stdout)["error"] == {
        "code": "invalid_argument",
        "message": "The question is empty.",
    }


# --- 6. help and output polish ------------------------------------------------------------------

PYTHON_TYPES = re.compile(r"<(str|bool|int|float|path|list\[[^\]]*\])>")


def test_ask_help_names_values_not_python_types(tmp_path: Path) -> None:
    out = loom("ask", "--help", home=tmp_path)
    assert out.returncode == 0
    assert "<str>" not in out.stdout
    assert "{question}" not in out.stdout
    assert re.search(r"Usage: .* ask \[OPTIONS\] QUESTION\s", out.stdout)
    assert re.search(r"--conversation\s+-c\s+ID\s", out.stdout)
    assert re.search(r"--help\s+Show this message", out.stdout)  # a flag: no `<bool>`


@pytest.mark.parametrize(
    "command",
    [[], ["chat"], ["serve"], ["query", "sql"], ["data", "seed"], ["catalog", "link"]],
    ids=lambda c: " ".join(c) or "loom",
)
def test_no_help_shows_python_types(tmp_path: Path, command: list[str]) -> None:
    out = loom(*command, "--help", home=tmp_path)
    assert out.returncode == 0
    assert not PYTHON_TYPES.search(out.stdout), out.stdout


def test_the_footer_says_1_row_on_a_line_of_its_own_under_a_narrow_table(lakehouse: Path) -> None:
    out = sql(lakehouse, "SELECT 1 AS x", columns=60)
    assert out.returncode == 0
    footer = lines(out.stdout)[-1]
    assert re.fullmatch(r"1 row · [\d.]+ ms", footer)


def test_csv_writes_booleans_nulls_and_nested_values_as_data_tools_read_them(lakehouse: Path) -> None:
    query = "SELECT true AS yes, false AS no, NULL AS nothing, [1, 2] AS list, {'city': 'Zürich'} AS place"
    out = sql(lakehouse, "-f", "csv", query)
    assert out.returncode == 0, out.stdout
    assert out.stderr == "", out.stdout  # complete: nothing to say
    assert list(csv.reader(io.StringIO(out.stdout))) == [
        ["yes", "no", "nothing", "list", "place"],
        ["true", "false", "", "[1, 2]", '{"city": "Zürich"}'],
    ]


# --- the seam, as users meet it ------------------------------------------------------------------


def test_a_dialect_a_cloud_source_cannot_take_is_refused_not_a_crash(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "sources.yaml").write_text(
        "sources:\n"
        "  - {name: dw, kind: synapse, location: ws-ondemand.sql.azuresynapse.net, database: lake}\n"
    )
    out = loom("query", "sql", "--source", "dw", "--dialect", "duckdb", "-f", "json", "SELECT 1", home=home)
    assert out.returncode == 2, out.stderr
    error = json.loads(out.stdout)["error"]
    assert error["code"] == "unsupported_dialect"
    assert "takes" not in out.stderr  # no TypeError traceback
    assert "tsql" in error["message"]


def _chat(port: int, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/v1/chat", json=body, timeout=30)


def test_offline_answers_from_the_sources_file_written_under_a_running_server(
    tmp_path: Path, lakehouse: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(lakehouse, home / "lakehouse")  # starts on the sample: no sources file yet
    port = _free_port()
    served = Served(home, port)
    try:
        served.line("Loom API on")
        sample = _chat(port, {"message": "How many orders were placed per channel?"})
        assert "Verified answer" in sample.text  # the sample source and its verified questions
        (home / "sources.yaml").write_text(f"sources:\n  - name: shop\n    location: {lakehouse}\n")
        own = _chat(port, {"message": "How many orders were placed per channel?"})
        assert own.status_code == 200
        assert "No language model is configured" in own.text
        assert "orders were placed per channel" not in own.text.split("configured", 1)[1]
        assert "unknown source" not in own.text
    finally:
        served.stop()


def test_an_empty_sources_list_in_a_chat_request_is_refused(seeded_home: Path) -> None:
    port = _free_port()
    served = Served(seeded_home, port)
    try:
        served.line("Loom API on")
        refused = _chat(port, {"message": "revenue by year", "sources": []})
        assert refused.status_code == 422
        assert "omit it" in refused.json()["error"]["message"]
    finally:
        served.stop()


def test_a_value_python_cannot_hold_is_a_json_error_not_a_traceback(lakehouse: Path) -> None:
    out = sql(lakehouse, "-f", "json", "SELECT INTERVAL 100000000 YEARS")
    assert out.returncode == 1  # accepted, failed while running
    assert json.loads(out.stdout)["error"]["code"] == "unrepresentable_value"
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("output", ["json", "table"])
def test_a_table_that_could_not_load_is_named_with_the_reason_and_no_server_path(
    tmp_path: Path, output: str
) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "stores.csv").write_text("id,name\n1,a\n")
    (folder / "orders.parquet").write_bytes(b"not parquet at all")
    assert json.loads(sql(folder, "-f", "json", "SELECT count(*) AS n FROM stores").stdout)["rows"] == [[1]]
    out = sql(folder, "-f", output, "SELECT count(*) FROM orders")
    assert out.returncode == 2  # refused before running, like an unknown table
    if output == "json":
        error = json.loads(out.stdout)["error"]
        assert error["code"] == "table_unavailable"
        shown = error["message"]
    else:
        [shown] = [line for line in lines(out.stderr) if line.startswith("error (")]
        assert shown.startswith("error (table_unavailable): The table orders is in the source")
    assert "orders.parquet cannot be read as a table" in shown
    assert str(tmp_path) not in shown  # the path is in the log line (stderr here), not the error
    assert "Traceback" not in out.stderr


def test_a_huge_result_is_cut_at_the_size_limit_and_a_csv_export_says_so(lakehouse: Path) -> None:
    query = "SELECT repeat('x', 3000000) AS s FROM range(50)"  # 150 MB of text
    out = sql(lakehouse, "-f", "csv", query, env={"LOOM_QUERY_MAX_BYTES": "1000000"})
    assert out.returncode == 3  # incomplete, and not by the user's own --max-rows
    assert "size limit" in out.stderr
    assert len(out.stdout) < 1_100_000
    as_json = json.loads(sql(lakehouse, "-f", "json", query, env={"LOOM_QUERY_MAX_BYTES": "1000000"}).stdout)
    assert as_json["truncated_by"] == "bytes"
    assert as_json["rows"][0][0].endswith("[cut: 3,000,000 characters in all]")


def test_a_wide_row_is_held_to_the_size_limit_as_a_whole(lakehouse: Path) -> None:
    # Probe 8 (R8-1): a short query whose one row had 1,000 columns of 99,990 characters printed
    # 100 MB while marked cut at the 8 MiB limit.
    columns = ", ".join(f"s AS c{i}" for i in range(1000))
    query = f"WITH t AS (SELECT repeat('x', 99990) AS s) SELECT {columns} FROM t"
    out = sql(lakehouse, "-f", "json", query, env={"LOOM_QUERY_MAX_BYTES": "2000000"})
    assert len(out.stdout) < 2_300_000
    row = json.loads(out.stdout)["rows"][0]
    assert len(row) == 1000 and all(v.endswith("[cut: 99,990 characters in all]") for v in row)


def test_the_state_folder_and_the_conversations_are_the_owners_alone(tmp_path: Path, lakehouse: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(f"sources:\n  - name: shop\n    location: {lakehouse}\n")
    home = tmp_path / "home"
    out = loom(
        "ask", "What is the total revenue by year?", home=home, env={"LOOM_SOURCES_FILE": str(sources)}
    )
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "loom.db").stat().st_mode) == 0o600


def test_the_table_format_shows_the_start_of_a_long_value(lakehouse: Path) -> None:
    out = sql(lakehouse, "SELECT repeat('😀', 3000) AS s", columns=120)
    assert out.returncode == 0
    assert "😀…" in out.stdout.replace("\n", "").replace("│", "").replace(
        " ", ""
    )  # cut for the screen (R9-8)
    assert out.stdout.count("😀") <= 600
