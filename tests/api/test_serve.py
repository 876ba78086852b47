"""`loom serve` as users start it: a separate process, real TCP, a model behind OPENAI_BASE_URL.

This is the foundation's "done when" path: the server streams AG-UI events for a turn that calls
`nl2sql` against the OpenAI-compatible test server, and the conversation is then readable. The
server process is configured to reach only 127.0.0.1 (this test's model server and itself).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loom.lakehouse.seed import seed_lakehouse
from tests.support.openai_server import OpenAICompatServer

COUNT_SQL = "SELECT COUNT(*) AS order_lines FROM gold.fact_sales"
START_TIMEOUT_S = 60
SERVED_HOMES: dict[str, Path] = {}  # url -> the server's LOOM_HOME, where its log is written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def model() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer(default_sql=COUNT_SQL) as server:
        yield server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, model: OpenAICompatServer) -> Iterator[str]:
    home = tmp_path_factory.mktemp("serve-home")
    seed_lakehouse(home / "lakehouse", orders=800)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "OPENAI_", "AZURE_OPENAI_"))}
    env |= {"LOOM_HOME": str(home), "OPENAI_BASE_URL": model.base_url, "LOOM_MODEL": "test-model"}
    command = [sys.executable, "-c", "from loom.cli.main import main; main()", "serve", "--port", str(port)]
    SERVED_HOMES[f"http://127.0.0.1:{port}"] = home
    with (home / "serve.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=20)


def server_log(url: str) -> str:
    return (SERVED_HOMES[url] / "serve.log").read_text(errors="replace")


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"loom serve exited: {server_log(url)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"loom serve was not ready within {START_TIMEOUT_S} s")


def stream_events(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Read the SSE stream line by line as it arrives, as `curl -N` would."""
    out = []
    with httpx.stream("POST", f"{url}/v1/chat", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def test_a_turn_streams_the_nl2sql_call_and_its_result_then_is_readable(
    served: str, model: OpenAICompatServer
) -> None:
    events = stream_events(served, {"message": "How many order lines are there?"})

    kinds = [e["type"] for e in events]
    assert kinds[0] == "RUN_STARTED"
    assert kinds[-1] == "RUN_FINISHED"
    [start] = [e for e in events if e["type"] == "TOOL_CALL_START"]
    assert start["toolCallName"] == "nl2sql"
    [result] = [e for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert result["toolCallId"] == start["toolCallId"]
    [table] = [e for e in events if e["type"] == "CUSTOM" and e["name"] == "loom.result_table"]
    assert table["value"]["query"] == COUNT_SQL
    counted = table["value"]["rows"][0][0]
    assert isinstance(counted, int)
    assert counted > 800  # order lines of 800 seeded orders
    assert "TEXT_MESSAGE_CONTENT" in kinds

    conversation = httpx.get(f"{served}/v1/conversations/{events[0]['threadId']}").json()
    messages = conversation["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"][0]["name"] == "nl2sql"
    assert json.loads(messages[2]["content"])["result"]["rows"] == [[counted]]

    [logged] = [line for line in server_log(served).splitlines() if f"run={events[0]['runId']}" in line]
    assert "loom.turns" in logged
    assert "outcome=finished" in logged
    assert "tools=nl2sql:ok" in logged
    assert "order lines" not in logged  # ids and counts only, never the question


def test_a_second_turn_continues_the_conversation(served: str) -> None:
    first = stream_events(served, {"message": "How many order lines are there?"})
    thread = first[0]["threadId"]
    second = stream_events(served, {"message": "And how many now?", "conversation_id": thread})

    assert second[0]["threadId"] == thread
    assert second[-1]["type"] == "RUN_FINISHED"
    messages = httpx.get(f"{served}/v1/conversations/{thread}").json()["messages"]
    assert [m["role"] for m in messages].count("user") == 2
