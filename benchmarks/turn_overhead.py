"""Per-turn platform overhead with a zero-latency fake model, against a plain-`openai` baseline.

The fake model is an in-process `httpx2.MockTransport` speaking the OpenAI wire format, so both
sides pay the same zero model latency and the same SDK parsing. Two turn shapes:

- verified (the issue's shape): the question matches the verified library, so the turn is two
  model calls (streamed) and one tool call, which runs the verified query on DuckDB;
- generated: the tool also asks the model for the SQL (a third, non-streamed call).

Measured, per shape:

- platform, in process: `Agent.run_turn` (MAF client, our loop, validation, SQLite persistence,
  AG-UI events);
- baseline: the same calls and the same query through a minimal plain-`openai` loop with a raw
  DuckDB connection — no validation, persistence or events;
- platform over HTTP/SSE (verified turns): the FastAPI app under uvicorn on 127.0.0.1 in this
  process, read by `benchmarks.sse_client` in another process (a client sharing the server's GIL
  would add its own waits). The first-byte figures are from the fake model's first token to the
  frame carrying it: "leaves" when uvicorn's send returned, "arrives" when the client read it
  (one monotonic clock for both processes).

Run: `make bench` or `python -m benchmarks.turn_overhead [--turns N] [--rounds R] [--concurrency C]`.
Figures are medians over rounds; copy them into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx2
import openai
import uvicorn
from deltalake import DeltaTable

from loom.agent.build import build_agent
from loom.agent.model import ChatMessage
from loom.agent.model_maf import build_chat_model
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.turns import TurnRequest
from loom.api import guard
from loom.api.app import create_app
from loom.identity import DEV_PRINCIPAL
from loom.lakehouse.seed import seed_lakehouse
from loom.settings import Settings
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

TOOLS: list[Any] = [
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


async def _streamed(client: openai.AsyncOpenAI, messages: list[Any]) -> dict[str, Any]:
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
    messages: list[Any] = [
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
    agent = build_agent(settings, store, model=model)

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


class SendClock:
    """ASGI middleware: when each AG-UI event type's first frame left the server, per chat response.

    "Left" is when uvicorn's `send` returned: the frame is written to the socket (or queued on a
    full one, which a reading client never lets happen here).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.responses: list[dict[str, float]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat":
            await self.app(scope, receive, send)
            return
        sent: dict[str, float] = {}
        self.responses.append(sent)

        async def timed_send(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body":
                now = time.perf_counter()
                for kind in _event_types(message.get("body", b"")):
                    sent.setdefault(kind, now)

        await self.app(scope, receive, timed_send)


def _event_types(body: bytes) -> list[str]:
    return [json.loads(line[6:])["type"] for line in body.splitlines() if line.startswith(b"data: ")]


async def over_http(home: Path, case: Scenario, turns: int, concurrency: int) -> dict[str, Any]:
    """The app under uvicorn in this process; the client (`benchmarks.sse_client`) in another."""
    fake = FakeModel()
    # The concurrent streams are one dev user's: the per-user caps on turns (4) and on requests
    # sending their body (8) would refuse 46 of 50, and this measures the platform's streams.
    settings = settings_for(home).model_copy(update={"max_turns_per_user": concurrency})
    guard.SENDING_PER_USER = max(guard.SENDING_PER_USER, concurrency)
    model = build_chat_model(settings, http_client=httpx2.AsyncClient(transport=fake.transport()))
    store = SqliteConversationStore(home / "http.db")
    clock = SendClock(create_app(settings, store=store, runner=build_agent(settings, store, model=model)))
    server = uvicorn.Server(uvicorn.Config(clock, host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        client = await _run_client(url, case.question, turns, concurrency)
    finally:
        server.should_exit = True
        await serving
        await store.close()
    # The client's first stream is its warm-up; the sequential ones follow, in order.
    sequential = client["sequential"]
    return {
        "turn_ms": [s["total_ms"] for s in sequential],
        "leaves": _gaps(clock.responses[1 : 1 + turns], fake.first_tokens[2:]),
        "arrives": _gaps([s["first_event_at"] for s in sequential], fake.first_tokens[2:]),
        "errors": client["concurrent_errors"],
        "concurrent_wall_ms": client["concurrent_wall_ms"],
        "concurrent_turn_ms": client["concurrent_turn_ms"],
    }


async def _run_client(url: str, question: str, turns: int, concurrency: int) -> dict[str, Any]:
    command = ["-m", "benchmarks.sse_client", url, "--question", question]
    command += ["--turns", str(turns), "--concurrency", str(concurrency)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, cwd=Path(__file__).resolve().parents[1], stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the SSE client failed with exit code {process.returncode}")
    return dict(json.loads(out))


def _gaps(seen: list[dict[str, float]], tokens: list[tuple[str, float]]) -> dict[str, list[float]]:
    """ms from the fake model's first token to the frame carrying it, per sequential turn."""
    n = len(seen)  # the concurrent streams' tokens come after these

    def gap(event: str, kind: str) -> list[float]:
        first = [t for k, t in tokens if k == kind][:n]
        return [(s[event] - t) * 1000 for s, t in zip(seen, first, strict=True)]

    return {
        "tool_call_start": gap("TOOL_CALL_START", "tool"),
        "text_content": gap("TEXT_MESSAGE_CONTENT", "text"),
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
        verified = next(case for case in scenarios() if case.name == "verified")
        row |= http_row(await over_http(home, verified, args.turns, args.concurrency), args.concurrency)
        rows.append(row)
        shown = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        print(f"round {r + 1}/{args.rounds}: {shown}", flush=True)
    return {
        "median_of_rounds": {k: statistics.median(row[k] for row in rows) for k in rows[0]},
        "rounds": rows,
    }


def http_row(http: dict[str, Any], concurrency: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "http_p50_ms": statistics.median(http["turn_ms"]),
        "http_p99_ms": pct(http["turn_ms"], 0.99),
    }
    for where in ("leaves", "arrives"):
        for event, label in (("tool_call_start", "tool"), ("text_content", "text")):
            gaps = http[where][event]
            row[f"first_byte_{where}_after_{label}_token_p50_ms"] = statistics.median(gaps)
            row[f"first_byte_{where}_after_{label}_token_p99_ms"] = pct(gaps, 0.99)
    return row | {
        "concurrent_streams": concurrency,
        "concurrent_errors": http["errors"],
        "concurrent_wall_ms": http["concurrent_wall_ms"],
        "concurrent_turn_p50_ms": statistics.median(http["concurrent_turn_ms"] or [0]),
    }


if __name__ == "__main__":
    main()
