"""Per-turn platform overhead with a zero-latency fake model, against a plain-`openai` baseline.

One turn = the model calls `nl2sql` (streamed), the tool asks the model for SQL (one non-streamed
call), the query runs on DuckDB over the seeded lakehouse, and the model answers (streamed): three
model calls and one tool call. The fake model is an in-process `httpx2.MockTransport` speaking the
OpenAI wire format, so both sides pay the same zero model latency and the same SDK parsing:

- platform, in process: `Agent.run_turn` (MAF client, our loop, validation, SQLite persistence,
  AG-UI events);
- platform over HTTP/SSE: the FastAPI app under uvicorn on 127.0.0.1, read by an httpx client;
- baseline: the same three calls and the same query through a minimal plain-`openai` loop with a
  raw DuckDB connection — no validation, persistence or events.

Run: `make bench` or `python -m benchmarks.turn_overhead [--turns N] [--rounds R] [--concurrency C]`.
Figures are medians over rounds; copy them into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import httpx2
import openai
import uvicorn
from deltalake import DeltaTable

from loom.agent.model import ChatMessage
from loom.agent.model_maf import build_chat_model
from loom.agent.runner import TurnRequest
from loom.agent.service import build_runner
from loom.agent.settings import Settings
from loom.agent.sqlite_store import SqliteConversationStore
from loom.api.app import create_app
from loom.identity import DEV_PRINCIPAL
from loom.lakehouse.seed import seed_lakehouse
from tests.support.openai_server import QueuedReply, chunk_deltas, completion, default_reply, sse

QUESTION = "How many order lines are there?"
SQL = "SELECT COUNT(*) AS order_lines FROM gold.fact_sales"


@dataclass(frozen=True)
class Scenario:
    """`generated`: the tool asks the model for SQL (3 model calls). `verified`: the question
    matches the verified library, the tool runs that query (2 model calls, 1 tool call)."""

    name: str
    question: str
    generate: bool


def scenarios() -> list[Scenario]:
    from loom.prompts import load_verified_queries

    verified = load_verified_queries("sales")[4]  # "How many orders were placed per channel?"
    return [Scenario("generated", QUESTION, True), Scenario("verified", verified["question"], False)]


def verified_sql(question: str) -> str:
    from loom.prompts import load_verified_queries

    return next(q["query"] for q in load_verified_queries("sales") if q["question"] == question)


# --- the zero-latency fake model -----------------------------------------------------------------


@dataclass
class FakeModel:
    """OpenAI wire format from memory; records when each streamed reply's first token was made."""

    first_tokens: list[tuple[str, float]] = field(default_factory=list)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        reply = default_reply(body, SQL)
        if not body.get("stream"):
            return httpx2.Response(200, json=completion(body, reply))
        kind = "tool" if reply.tool_calls else "text"
        self.first_tokens.append((kind, time.perf_counter()))
        return httpx2.Response(
            200, content=_stream(body, reply), headers={"content-type": "text/event-stream"}
        )

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)


def _stream(body: dict[str, Any], reply: QueuedReply) -> bytes:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body.get("model", "m")}
    frames = [
        sse({**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]})
        for d in chunk_deltas(reply)
    ]
    finish = "tool_calls" if reply.tool_calls else "stop"
    frames.append(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    return b"".join(frames) + sse("[DONE]")


def settings_for(home: Path) -> Settings:
    return Settings(
        home=home,
        model_provider="openai",
        openai_base_url="http://fake-model.invalid/v1",
        openai_api_key="bench",
        model="fake",
    )


# --- baseline: a minimal plain-openai loop ----------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "nl2sql",
            "description": "Answer a data question with SQL",
            "parameters": {
                "type": "object",
                "properties": {"question": {"type": "string"}},
                "required": ["question"],
            },
        },
    }
]


def raw_duckdb(lakehouse: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA gold")
    for table in (lakehouse / "gold").iterdir():
        con.register(f"_{table.name}", DeltaTable(str(table)).to_pyarrow_dataset())
        con.execute(f"CREATE TABLE gold.{table.name} AS SELECT * FROM _{table.name}")
        con.unregister(f"_{table.name}")
    return con


async def _streamed(client: openai.AsyncOpenAI, messages: list[dict[str, Any]]) -> dict[str, Any]:
    text, calls = "", {}  # type: ignore[var-annotated]
    stream = await client.chat.completions.create(model="fake", messages=messages, tools=TOOLS, stream=True)
    async for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for tc in delta.tool_calls or []:
            call = calls.setdefault(tc.index, {"id": tc.id, "name": "", "arguments": ""})
            call["name"] += (tc.function.name or "") if tc.function else ""
            call["arguments"] += (tc.function.arguments or "") if tc.function else ""
    return {"text": text, "calls": list(calls.values())}


async def baseline_turn(client: openai.AsyncOpenAI, con: duckdb.DuckDBPyConnection, case: Scenario) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You answer data questions."},
        {"role": "user", "content": case.question},
    ]
    first = await _streamed(client, messages)
    call = first["calls"][0]
    messages.append(
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        }
    )
    if case.generate:
        gen = await client.chat.completions.create(
            model="fake",
            messages=[
                {"role": "system", "content": "Write SQL."},
                {"role": "user", "content": case.question},
            ],
        )
        sql = (gen.choices[0].message.content or "").split("```sql\n")[1].split("```")[0]
    else:
        sql = verified_sql(case.question)
    cursor = con.cursor()
    rows = await asyncio.to_thread(lambda: cursor.execute(sql).fetchmany(1000))
    messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"rows": rows})})
    await _streamed(client, messages)


# --- one model call: MAF (what the platform uses) against the bare SDK ------------------------


async def model_call_cost(n: int) -> dict[str, float]:
    """One streamed call with tools, parsed to the end: the share of the overhead that is MAF's."""
    fake = FakeModel()
    model = build_chat_model(
        settings_for(Path(".")), http_client=httpx2.AsyncClient(transport=fake.transport())
    )
    assert model is not None
    sdk = openai.AsyncOpenAI(
        base_url="http://fake-model.invalid/v1",
        api_key="bench",
        http_client=httpx2.AsyncClient(transport=fake.transport()),
    )
    ours = [ChatMessage(role="system", content="You answer."), ChatMessage(role="user", content=QUESTION)]
    plain = [{"role": "system", "content": "You answer."}, {"role": "user", "content": QUESTION}]

    async def via_maf() -> None:
        async for _ in model.stream(ours, TOOLS):
            pass

    maf, bare = await timed(via_maf, n), await timed(lambda: _streamed(sdk, plain), n)
    return {"model_call_maf_p50_ms": statistics.median(maf), "model_call_sdk_p50_ms": statistics.median(bare)}


# --- measuring ----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def timed(turn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    await turn()  # warm-up: engine open, catalog, connection pools
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await turn()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def in_process(home: Path, turns: int, case: Scenario) -> tuple[list[float], list[float]]:
    fake = FakeModel()
    settings = settings_for(home)
    model = build_chat_model(settings, http_client=httpx2.AsyncClient(transport=fake.transport()))
    store = SqliteConversationStore(home / "bench.db")
    agent = build_runner(settings, store, model=model)

    async def platform() -> None:
        async for _ in agent.run_turn(DEV_PRINCIPAL, TurnRequest(message=case.question)):
            pass

    client = openai.AsyncOpenAI(
        base_url="http://fake-model.invalid/v1",
        api_key="bench",
        http_client=httpx2.AsyncClient(transport=fake.transport()),
    )
    con = raw_duckdb(settings.lakehouse_dir)
    ours = await timed(platform, turns)
    base = await timed(lambda: baseline_turn(client, con, case), turns)
    await store.close()
    return ours, base


class Server:
    """The real app under uvicorn on 127.0.0.1, in a thread of this process (one clock for both ends)."""

    def __init__(self, home: Path, fake: FakeModel) -> None:
        settings = settings_for(home)
        model = build_chat_model(settings, http_client=httpx2.AsyncClient(transport=fake.transport()))
        store = SqliteConversationStore(home / "http.db")
        app = create_app(settings, store=store, runner=build_runner(settings, store, model=model))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class StreamTiming:
    total_ms: float
    first_event_at: dict[str, float]
    ok: bool


async def one_stream(client: httpx.AsyncClient, url: str) -> StreamTiming:
    start, seen, ok = time.perf_counter(), {}, False
    async with client.stream("POST", f"{url}/v1/chat", json={"message": QUESTION}) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            kind = json.loads(line[6:])["type"]
            seen.setdefault(kind, time.perf_counter())
            ok = kind == "RUN_FINISHED" or (ok and kind != "RUN_ERROR")
        ok = ok and response.status_code == 200
    return StreamTiming((time.perf_counter() - start) * 1000, seen, ok)


async def over_http(home: Path, turns: int, concurrency: int) -> dict[str, Any]:
    fake = FakeModel()
    with Server(home, fake) as url:
        async with httpx.AsyncClient(timeout=60) as client:
            await one_stream(client, url)
            fake.first_tokens.clear()
            sequential = [await one_stream(client, url) for _ in range(turns)]
            gaps = _first_byte_gaps(sequential, fake.first_tokens)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=120, limits=limits) as many:
            start = time.perf_counter()
            parallel = await asyncio.gather(
                *(one_stream(many, url) for _ in range(concurrency)), return_exceptions=True
            )
            wall = (time.perf_counter() - start) * 1000
    errors = sum(1 for p in parallel if not isinstance(p, StreamTiming) or not p.ok)
    done = [p.total_ms for p in parallel if isinstance(p, StreamTiming)]
    return {
        "turn_ms": [s.total_ms for s in sequential],
        "gaps": gaps,
        "errors": errors,
        "concurrent_wall_ms": wall,
        "concurrent_turn_ms": done,
    }


def _first_byte_gaps(streams: list[StreamTiming], tokens: list[tuple[str, float]]) -> dict[str, list[float]]:
    """ms from the fake model's first token to the client reading the event that carries it."""
    tool_tokens = [t for kind, t in tokens if kind == "tool"]
    text_tokens = [t for kind, t in tokens if kind == "text"]
    return {
        "tool_call_start": [
            (s.first_event_at["TOOL_CALL_START"] - t) * 1000
            for s, t in zip(streams, tool_tokens, strict=True)
        ],
        "text_content": [
            (s.first_event_at["TEXT_MESSAGE_CONTENT"] - t) * 1000
            for s, t in zip(streams, text_tokens, strict=True)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--orders", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        seed_lakehouse(home / "lakehouse", orders=args.orders)
        report = asyncio.run(run_rounds(home, args))
    print(json.dumps(report, indent=2))


async def run_rounds(home: Path, args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for r in range(args.rounds):
        row: dict[str, Any] = {}
        for case in scenarios():
            ours, base = await in_process(home, args.turns, case)
            row |= {
                f"{case.name}_in_process_p50_ms": statistics.median(ours),
                f"{case.name}_in_process_p99_ms": pct(ours, 0.99),
                f"{case.name}_baseline_p50_ms": statistics.median(base),
                f"{case.name}_baseline_p99_ms": pct(base, 0.99),
                f"{case.name}_ratio_p50": statistics.median(ours) / statistics.median(base),
            }
        row |= await model_call_cost(args.turns)
        row |= http_row(await over_http(home, args.turns, args.concurrency), args.concurrency)
        rows.append(row)
        shown = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        print(f"round {r + 1}/{args.rounds}: {shown}", flush=True)
    return {
        "median_of_rounds": {k: statistics.median(row[k] for row in rows) for k in rows[0]},
        "rounds": rows,
    }


def http_row(http: dict[str, Any], concurrency: int) -> dict[str, Any]:
    gaps = http["gaps"]
    return {
        "http_p50_ms": statistics.median(http["turn_ms"]),
        "http_p99_ms": pct(http["turn_ms"], 0.99),
        "first_byte_after_tool_token_p50_ms": statistics.median(gaps["tool_call_start"]),
        "first_byte_after_tool_token_p99_ms": pct(gaps["tool_call_start"], 0.99),
        "first_byte_after_text_token_p50_ms": statistics.median(gaps["text_content"]),
        "first_byte_after_text_token_p99_ms": pct(gaps["text_content"], 0.99),
        "concurrent_streams": concurrency,
        "concurrent_errors": http["errors"],
        "concurrent_wall_ms": http["concurrent_wall_ms"],
        "concurrent_turn_p50_ms": statistics.median(http["concurrent_turn_ms"] or [0]),
    }


if __name__ == "__main__":
    main()
