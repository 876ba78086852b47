"""The chat client side of `turn_overhead`, run in a process of its own.

A client in the server's process competes with it for the GIL: with Python's 5 ms switch interval,
a server thread busy streaming could hold the client off for up to 5 ms and that wait would be
counted as the server's. In its own process the client is what a browser is: another program.
`time.perf_counter` is CLOCK_MONOTONIC on Linux, one clock for every process on the machine, so the
server can compare the times this prints with its own.

Run: `python -m benchmarks.sse_client URL --question Q --turns N --concurrency C` → one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field

import httpx


@dataclass
class StreamTiming:
    total_ms: float
    started_at: float
    first_event_at: dict[str, float] = field(default_factory=dict)  # event type -> perf_counter
    ok: bool = False


async def one_stream(client: httpx.AsyncClient, url: str, question: str) -> StreamTiming:
    timing = StreamTiming(0.0, time.perf_counter())
    async with client.stream("POST", f"{url}/v1/chat", json={"message": question}) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            kind = json.loads(line[6:])["type"]
            timing.first_event_at.setdefault(kind, time.perf_counter())
            timing.ok = kind == "RUN_FINISHED" or (timing.ok and kind != "RUN_ERROR")
        timing.ok = timing.ok and response.status_code == 200
    timing.total_ms = (time.perf_counter() - timing.started_at) * 1000
    return timing


async def run(url: str, question: str, turns: int, concurrency: int) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=60) as client:
        await one_stream(client, url, question)  # warm-up: connection, engine, catalog
        sequential = [await one_stream(client, url, question) for _ in range(turns)]
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as many:
        start = time.perf_counter()
        parallel = await asyncio.gather(
            *(one_stream(many, url, question) for _ in range(concurrency)), return_exceptions=True
        )
        wall = (time.perf_counter() - start) * 1000
    done = [p for p in parallel if isinstance(p, StreamTiming)]
    return {
        "sequential": [asdict(s) for s in sequential],
        "concurrent_errors": sum(1 for p in parallel if not isinstance(p, StreamTiming) or not p.ok),
        "concurrent_wall_ms": wall,
        "concurrent_turn_ms": [p.total_ms for p in done],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--question", required=True)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.question, args.turns, args.concurrency))))  # noqa: T201


if __name__ == "__main__":
    main()
