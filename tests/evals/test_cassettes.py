"""Cassettes: what is kept, what makes a key, and that a miss is named and never goes live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2

from loom.evals.cassettes import CASE, Cassette, CassetteTransport, request_key


def body(rows: list[list[Any]], **extra: Any) -> bytes:
    tool = {"query": "SELECT 1", "result": {"columns": [], "rows": rows}}
    messages = [{"role": "user", "content": "q"}, {"role": "tool", "content": json.dumps(tool)}]
    return json.dumps({"model": "m", "messages": messages, **extra}).encode()


def test_the_key_ignores_key_order_base_url_and_the_order_of_result_rows() -> None:
    key, _ = request_key("/v1/chat/completions", body([[1], [2]], stream=True))
    same, _ = request_key("/openai/deployments/x/chat/completions", body([[2], [1]], stream=True))
    assert key == same
    assert request_key("/v1/chat/completions", body([[1], [3]], stream=True))[0] != key
    assert request_key("/v1/chat/completions", body([[1], [2]], stream=False))[0] != key


class Live(httpx2.AsyncBaseTransport):
    def __init__(self) -> None:
        self.calls = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        return httpx2.Response(
            200, headers={"content-type": "application/json", "x-secret": "s"}, content=b'{"ok":1}'
        )


async def post(transport: httpx2.AsyncBaseTransport, content: bytes) -> httpx2.Response:
    async with httpx2.AsyncClient(transport=transport) as client:
        headers = {"Authorization": "Bearer sk-secret", "api-key": "sk-secret"}
        return await client.post("http://model/v1/chat/completions", content=content, headers=headers)


async def test_recorded_answers_replay_and_no_header_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    live = Live()
    cassette = Cassette.open(path)
    CASE.set("case-1")
    recorded = await post(CassetteTransport(cassette, "record", live), body([[1]]))
    assert recorded.json() == {"ok": 1} and live.calls == 1
    cassette.model = "m"
    cassette.save()
    assert "sk-secret" not in path.read_text() and "x-secret" not in path.read_text()

    replayed = Cassette.open(path)
    assert replayed.model == "m"
    again = Live()
    answer = await post(CassetteTransport(replayed, "replay", again), body([[1]]))
    assert answer.json() == {"ok": 1} and again.calls == 0


async def test_a_replay_miss_is_a_400_counted_against_its_case_and_never_live(tmp_path: Path) -> None:
    cassette, live = Cassette(tmp_path / "c.jsonl"), Live()
    CASE.set("case-7")
    answer = await post(CassetteTransport(cassette, "replay", live), body([[9]]))
    assert answer.status_code == 400 and "replay miss" in answer.json()["error"]["message"]
    assert live.calls == 0
    assert len(cassette.missed("case-7")) == 1 and cassette.missed("other") == []


async def test_a_request_that_differs_only_in_result_rows_replays_its_cases_one_recording(
    tmp_path: Path,
) -> None:
    # Seen in CI: 50 rows of a 200-row unordered result, another 50 under load.
    cassette = Cassette(tmp_path / "c.jsonl")
    CASE.set("case-1")
    await post(CassetteTransport(cassette, "record", Live()), body([[1], [2]]))
    replay, live = CassetteTransport(cassette, "replay", Live()), Live()
    answer = await post(replay, body([[3], [4]]))
    assert answer.json() == {"ok": 1} and live.calls == 0
    CASE.set("case-2")  # another case's recording is not borrowed
    assert (await post(CassetteTransport(cassette, "replay", Live()), body([[3], [4]]))).status_code == 400
    CASE.set("case-1")  # nor one that differs in more than the rows
    assert (await post(replay, body([[3], [4]], stream=True))).status_code == 400
