"""A model endpoint that does not keep to what it was asked: what one turn then costs (probe 21).

The agent runs in this process, as `loom serve` builds it (the configured OpenAI-compatible endpoint
through Agent Framework, the SDK and httpx), against a hostile endpoint in a child process, so the
CPU measured is the agent's alone. Each mode is one turn; printed: how it ended, its wall time, this
process's CPU seconds and RSS growth (peak, sampled), the characters the client was sent, and the
bytes the conversation store grew by. `normal` is the baseline, in the same run.

- `normal`: a 20-character answer.
- `text`: 100 MB of text in 1,000-character pieces, past any max_tokens (R21-1: stored whole,
  a 105 MB page read back).
- `args`: a tool call whose arguments are 50 MB (R21-1: 200 MB and 45 s of CPU a turn, over rounds).
- `held`: a reply that opens like a call (`{`) and goes on, 10 MB in 10-character pieces (R21-2:
  the reply guard re-joined what it held per piece, 150 s of CPU).
- `drip`: a character every 2 s, each within the read timeout (R21-4: a turn held 17 minutes);
  run with LOOM_MODEL_DEADLINE_S=20.
- `notjson`: a stream whose event is not JSON (R21-3: internal_error and a traceback).
- `manycalls`: 5,000 tool calls in one reply (probe 22, R22-1: 59 s of CPU for four such rounds).
- `empty`: 200,000 events with `"choices": []`, which become no delta (R22-2: 21 s of CPU).
- `braces`: 260,000 `{` in 4,000-character pieces, within every bound on size (R22-7: the scan
  for calls written as text took 17 s of the event loop).
- `cr`: 8 MiB of lone carriage returns, each a line for the SDK's decoder (probe 24, R24-1: 19 s).
- `fatevents`: 2,000 events each carrying 5,000 empty objects in an unknown field, 30 MiB in all
  (R24-4: RSS 229 → 606 MiB for the turn).
- `choices`: 2,000 events of 46 choices each, ~1 KB an event: each entry one the SDK builds (probe
  25, R25-1: 10.5 s of CPU).
- `figures`: asked with a 32 KB question of `1 1 1 …`, it answers with 1,900 figures of up to 64
  decimals that nothing returned, for the reply guard's figure check (probe 28, R28-1: ~1 s of the
  event loop a reply).

Run: `python -m benchmarks.model_floods [--modes normal text ...]` (~1 min). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIB = 2**20


# --- the hostile endpoint (a child process) ------------------------------------------------------


def _chunk(delta: dict[str, Any]) -> bytes:
    body = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _normal() -> Iterator[tuple[bytes, float]]:
    yield _chunk({"role": "assistant", "content": "The answer is forty."}), 0


def _text() -> Iterator[tuple[bytes, float]]:
    for _ in range(100_000):
        yield _chunk({"content": "t" * 1_000}), 0


def _args() -> Iterator[tuple[bytes, float]]:
    head = {"index": 0, "id": "c1", "type": "function", "function": {"name": "nl2sql", "arguments": ""}}
    yield _chunk({"tool_calls": [head]}), 0
    yield _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"question": "'}}]}), 0
    for _ in range(50_000):
        yield _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "a" * 1_000}}]}), 0


def _held() -> Iterator[tuple[bytes, float]]:
    yield _chunk({"content": "{"}), 0
    for _ in range(1_000_000):
        yield _chunk({"content": "h" * 10}), 0


def _drip() -> Iterator[tuple[bytes, float]]:
    for _ in range(1_000):
        yield _chunk({"content": "d"}), 2.0


def _notjson() -> Iterator[tuple[bytes, float]]:
    yield b"data: {not json\n\n", 0


def _manycalls() -> Iterator[tuple[bytes, float]]:
    for i in range(5_000):
        call = {
            "index": i,
            "id": f"c{i}",
            "type": "function",
            "function": {"name": "nope", "arguments": "{}"},
        }
        yield _chunk({"tool_calls": [call]}), 0


def _empty() -> Iterator[tuple[bytes, float]]:
    body = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}
    for _ in range(200_000):
        yield b"data: " + json.dumps(body).encode() + b"\n\n", 0


def _braces() -> Iterator[tuple[bytes, float]]:
    for _ in range(65):
        yield _chunk({"content": "{" * 4_000}), 0


def _cr() -> Iterator[tuple[bytes, float]]:
    yield _chunk({"role": "assistant", "content": ""}), 0
    for _ in range(128):
        yield b"\r" * 65_536, 0


def _fatevents() -> Iterator[tuple[bytes, float]]:
    body = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "x": [{}] * 5_000}
    body["choices"] = [{"index": 0, "delta": {"content": "f"}, "finish_reason": None}]
    event = b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    for _ in range(2_000):
        yield event, 0


def _choices() -> Iterator[tuple[bytes, float]]:
    extra = [{"index": i, "delta": {}} for i in range(1, 46)]
    body = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body["choices"] = [{"index": 0, "delta": {"content": "c"}, "finish_reason": None}, *extra]
    event = b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    for _ in range(2_000):
        yield event, 0


def _figures() -> Iterator[tuple[bytes, float]]:
    made_up = " ".join(f"{n}.{'1' * (1 + n % 64)}" for n in range(100, 2_000))
    for at in range(0, len(made_up), 4_000):
        yield _chunk({"content": made_up[at : at + 4_000]}), 0


REPLIES = {
    "normal": _normal,
    "text": _text,
    "args": _args,
    "held": _held,
    "drip": _drip,
    "notjson": _notjson,
    "manycalls": _manycalls,
    "empty": _empty,
    "braces": _braces,
    "cr": _cr,
    "fatevents": _fatevents,
    "choices": _choices,
    "figures": _figures,
}
QUESTIONS = {"figures": "1 " * 16_000}  # what the user asks in a mode, when not "How many orders?"


def pieces(mode: str) -> Iterator[tuple[bytes, float]]:
    """(bytes to send, seconds to wait first) of the reply in `mode`."""
    yield from REPLIES[mode]()
    yield b"data: [DONE]\n\n", 0


async def serve(mode: str, sock: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
        await reader.readexactly(int(length.group(1)) if length else 0)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        try:
            for data, wait in pieces(mode):
                if wait:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the agent stopped reading: what a bounded client does
        writer.close()

    server = await asyncio.start_server(handle, sock=sock)
    async with server:
        await server.serve_forever()


def endpoint(mode: str) -> tuple[subprocess.Popen[bytes], str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    args = [sys.executable, "-m", "benchmarks.model_floods", "--serve", mode, str(sock.fileno())]
    child = subprocess.Popen(args, pass_fds=[sock.fileno()])
    sock.close()
    return child, f"http://127.0.0.1:{port}/v1"


# --- one turn against it ------------------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _watch(peak: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.05)


async def turn(mode: str, home: Path) -> dict[str, Any]:
    from loom.agent.build import build_agent
    from loom.agent.sqlite_store import SqliteConversationStore
    from loom.agent.turns import TurnRequest
    from loom.identity import DEV_PRINCIPAL
    from loom.settings import Settings

    child, url = endpoint(mode)
    settings = Settings(
        _env_file=None,
        home=home,
        model_provider="openai",
        openai_base_url=url,
        model="m",
        model_deadline_s=20.0 if mode == "drip" else 300.0,
    )
    store = SqliteConversationStore(home / "loom.db")
    agent = build_agent(settings, store)
    rss, cpu, started = rss_mib(), time.process_time(), time.perf_counter()
    peak, stop = [rss], threading.Event()
    threading.Thread(target=_watch, args=(peak, stop), daemon=True).start()
    sent, last, thread = 0, None, ""
    try:
        asked = TurnRequest(message=QUESTIONS.get(mode, "How many orders?"))
        async for event in agent.run_turn(DEV_PRINCIPAL, asked):
            sent += len(getattr(event, "delta", "") or "")
            thread, last = thread or getattr(event, "thread_id", ""), event
    finally:
        stop.set()
        child.kill()
        child.wait()
    kept = await store.messages(DEV_PRINCIPAL, thread)
    await store.close()
    return {
        "ended": getattr(last, "code", None) or getattr(last, "type", "?"),
        "message": (getattr(last, "message", "") or "")[:160],
        "wall_s": round(time.perf_counter() - started, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "rss_growth_mib": round(peak[0] - rss, 1),
        "chars_sent": sent,
        "stored": [(m.role, len(m.content) + len(json.dumps(m.tool_calls))) for m in kept],
    }


async def run(modes: list[str]) -> dict[str, Any]:
    report = {}
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="loom-model-floods-") as tmp:
            report[mode] = await turn(mode, Path(tmp))
        print(mode, json.dumps(report[mode]), flush=True)
    base = report.get("normal")
    if base:
        for mode, figures in report.items():
            ratio = figures["cpu_s"] / max(base["cpu_s"], 0.01)
            print(
                f"{mode:8} {figures['ended']:14} cpu {figures['cpu_s']:6.2f} s ({ratio:5.1f}x normal)  "
                f"wall {figures['wall_s']:6.2f} s  rss +{figures['rss_growth_mib']} MiB  "
                f"sent {figures['chars_sent']:,} chars  stored {figures['stored']}"
            )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=list(REPLIES), default=list(REPLIES))
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)  # the child: MODE FD
    args = parser.parse_args()
    if args.serve:
        mode, fd = args.serve
        asyncio.run(serve(mode, socket.socket(fileno=int(fd))))
        return
    os.environ.pop("LOOM_MODEL_DEADLINE_S", None)
    asyncio.run(run(args.modes))


if __name__ == "__main__":
    main()
