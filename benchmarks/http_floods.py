"""Floods below the application: what unauthenticated clients can do to `loom serve` through HTTP
itself, and what an innocent user sees meanwhile (probe 18: R18-1, R18-2, R18-3).

`loom serve` in its own process (Entra mode, the scripted model of `hardening_load`). For each
attack, an innocent user runs ten chat turns, each followed by a GET of the conversation, before
and while the attack runs; printed: their p50/p90 and outcomes, the server tree's peak RSS, its
CPU seconds and what happened to the attacker's connections.

- `headers`: connections streaming header lines (`X-H: …`) that never end.
- `pipeline`: connections writing back-to-back `GET /healthz` requests and reading no answer.
- `halfopen`: thousands of connections that send part of their headers and then nothing, from
  helper processes (each holds up to its descriptor limit).
- `forged`: connections sending `GET /v1/conversations` again and again with one forged token (an
  allowed tenant, a bad signature) padded to just under the 16,000-character bound (probe 20,
  R20-2: at 94 KB each request cost the server 12.7 ms).
- `headerlines`, `trailers`: 32 connections sending requests with 4,000 empty headers (16,000
  bytes, under the byte bound), or a chunked body with as many trailers (probe 21: R21-6, R21-5).
- `forgedmany`: as `forged`, but every request a new forgery of a 2,000-character token, which no
  remembered refusal answers (R21-12).
- `chunkdrip`: 2 connections POSTing, with no token, a chunked body of one-byte chunks for as long
  as the attack lasts (probe 23, R23-2: each chunk was parsed after the 401, for ever).
- `stalled`: an attacker tenant's users opening chat turns whose result is ~8 MB and reading none
  of the stream (probe 20, R20-1); the server runs with `LOOM_RESPONSE_STALL_S=10`, and the
  report adds its RSS `--hold` seconds in, after the stall limit.

Run: `python -m benchmarks.http_floods [--attacks headers pipeline halfopen forged stalled ...]` (~7 min).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from benchmarks.hardening_load import code_root, scripted_model, verified_questions, write_sources
from benchmarks.load_harness import Caller, EntraCallers, LoomServe, Turn, chat, client_for, status_kib, tree
from benchmarks.page_flood import pct

MIB = 2**20
ATTACKS = [
    "headers",
    "pipeline",
    "halfopen",
    "forged",
    "stalled",
    "headerlines",
    "trailers",
    "forgedmany",
    "chunkdrip",
]
# 4,000 empty headers (16,000 bytes, under the 16 KiB bound) and a chunked body with as many trailers.
MANY_LINES = b"a:\r\n" * 4_000
LINES_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: a\r\n" + MANY_LINES + b"\r\n"
TRAILERS_REQUEST = (
    b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
    + MANY_LINES
    + b"\r\n"
)
HEADER_LINE = b"X-H: " + b"v" * 200 + b"\r\n"
PIPELINED = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
HALF_OPEN = b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: "


def tree_rss_mib(pid: int) -> float:
    return sum(status_kib(p, "VmRSS") for p in tree(pid)) / 1024


async def innocent(url: str, caller: Caller, turns: int = 10) -> dict[str, Any]:
    questions, took, gets = verified_questions(), [], []
    codes: dict[str, int] = {}
    async with client_for(4, 120) as client:
        for n in range(turns):
            out = await chat(client, url, Turn("normal", questions[n % len(questions)], caller))
            codes[out.code] = codes.get(out.code, 0) + 1
            if out.ok and out.thread_id:
                took.append(out.ms / 1000)
                started = time.perf_counter()
                r = await client.get(f"{url}/v1/conversations/{out.thread_id}", headers=caller.headers)
                if r.status_code == 200:
                    gets.append(time.perf_counter() - started)
    return {"turn_p50": pct(took, 0.5), "turn_p90": pct(took, 0.9), "get_p50": pct(gets, 0.5), "codes": codes}


# --- the attacks (each in threads or processes of its own, until `stop` is set) ---------------------


def stream_headers(port: int, conns: int, mib: int, stop: threading.Event) -> dict[str, Any]:
    first = b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
    sent = _threads(lambda: _flood(port, first, HEADER_LINE * 64, mib * MIB, stop), conns)
    return {"MiB_sent_per_connection": [round(v / MIB, 2) for v in sent]}


def pipeline(port: int, conns: int, mib: int, stop: threading.Event) -> dict[str, Any]:
    sent = _threads(lambda: _flood(port, b"", PIPELINED * 256, mib * MIB, stop), conns)
    return {"MiB_sent_per_connection": [round(v / MIB, 2) for v in sent]}


def _flood(port: int, first: bytes, chunk: bytes, most: int, stop: threading.Event) -> int:
    """Send `first`, then `chunk` until `most` bytes, never reading: the bytes the server took (a
    send blocked for a second means it stopped reading; the connection is then held until `stop`)."""
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(first)
            while sent < most and not stop.is_set():
                s.sendall(chunk)
                sent += len(chunk)
            stop.wait()
    except TimeoutError:
        stop.wait()
    except OSError:
        pass
    return sent


def half_open(port: int, conns: int, seconds: float, stop: threading.Event) -> dict[str, Any]:
    """`conns` connections from helper processes of up to 9,000 each, held `seconds`."""
    per = 9000
    helpers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.http_floods",
                "--hold-half-open",
                str(port),
                str(min(per, conns - i)),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            cwd=code_root(),
        )
        for i in range(0, conns, per)
    ]
    opened = closed = 0
    for helper in helpers:
        out, _ = helper.communicate()
        held, shut = map(int, out.split())
        opened, closed = opened + held, closed + shut
    return {"opened": opened, "closed_by_the_server": closed}


def hold_half_open(port: int, n: int, seconds: float) -> tuple[int, int]:
    """A helper's part: open `n` half-open connections, hold them, say how many the server closed."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    held = []
    for _ in range(n):
        try:
            conn = socket.create_connection(("127.0.0.1", port))
            conn.sendall(HALF_OPEN)
            held.append(conn)
        except OSError:
            break
    time.sleep(seconds)
    closed = 0
    for conn in held:
        conn.setblocking(False)
        try:
            closed += conn.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return len(held), closed


def forged(port: int, token: str, conns: int, stop: threading.Event, vary: bool = False) -> dict[str, Any]:
    """`conns` keep-alive connections sending the forged token until `stop` (`vary`: a new forgery
    each time, which no refusal remembered can answer); their answers' codes."""
    codes: dict[str, int] = {}
    count = iter(range(10**9))

    def request() -> bytes:
        forgery = token[:-12] + f"{next(count):012d}" if vary else token
        return (
            f"GET /v1/conversations HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {forgery}\r\n\r\n".encode()
        )

    def one() -> int:
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            while not stop.is_set():
                s.sendall(request())
                answer = _response(s)
                status = answer[9:12].decode(errors="replace") if answer else "closed"
                codes[status] = codes.get(status, 0) + 1
                sent += 1
                if not answer:
                    break
        return sent

    sent = _threads(one, conns)
    return {"requests": sum(sent), "answers": codes}


def _response(s: socket.socket) -> bytes:
    """One whole response (its head, then as much body as its content-length says), or b"" at close."""
    got = b""
    while b"\r\n\r\n" not in got:
        more = s.recv(65536)
        if not more:
            return got
        got += more
    head, _, body = got.partition(b"\r\n\r\n")
    length = next(
        (int(h.split(b":")[1]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length:")), 0
    )
    while len(body) < length:
        more = s.recv(65536)
        if not more:
            break
        body += more
    return got


def repeated(port: int, request: bytes, conns: int, stop: threading.Event) -> dict[str, Any]:
    """`conns` connections sending `request` until `stop`, each on a new connection when the server
    closes the last; their answers' codes."""
    codes: dict[str, int] = {}

    def one() -> int:
        sent = 0
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                while not stop.is_set():
                    try:
                        s.sendall(request)
                        answer = _response(s)
                    except OSError:
                        answer = b""
                    status = answer[9:12].decode(errors="replace") if answer else "closed"
                    codes[status] = codes.get(status, 0) + 1
                    sent += 1
                    if not answer or b"connection: close" in answer.lower():
                        break
        return sent

    sent = _threads(one, conns)
    return {"requests": sum(sent), "answers": codes}


def chunk_drip(port: int, conns: int, stop: threading.Event) -> dict[str, Any]:
    """`conns` connections each POSTing a chunked body, with no token, of one-byte chunks sent as
    fast as the socket takes them (probe 23, R23-2); how their connections ended."""
    head = (
        b"POST /v1/chat HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    block = b"1\r\na\r\n" * 10_000
    ends: dict[str, int] = {}

    def one() -> int:
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(head)
            try:
                while not stop.is_set():
                    s.sendall(block)
                    sent += len(block)
                end = "open at the end"
            except OSError:
                end = "closed by the server"
        ends[end] = ends.get(end, 0) + 1
        return sent

    sent = _threads(one, conns)
    return {"bytes_sent": sum(sent), "connections": ends}


def forged_token(callers: EntraCallers, chars: int) -> str:
    """A token of an allowed tenant, signed by the right key but then altered, `chars` long."""
    tenant = callers.home_tenant
    claims: dict[str, Any] = {
        "iss": f"{callers.authority}/{tenant}/v2.0",
        "aud": callers.AUDIENCE,
        "tid": tenant,
    }
    claims |= {"oid": "x", "exp": int(time.time()) + 3600, "pad": ""}
    bare = len(jwt.encode(claims, callers.key, algorithm="RS256", headers={"kid": "bench-1"}))
    claims["pad"] = "p" * int((chars - bare) * 3 / 4)
    token = jwt.encode(claims, callers.key, algorithm="RS256", headers={"kid": "bench-1"})
    return token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)


def stalled(port: int, callers: EntraCallers, streams: int, hold: float, server: LoomServe) -> dict[str, Any]:
    """`streams` chat turns of ~8 MB results, 4 per user of one attacker tenant, none read; the
    server's RSS 3 s in and `hold` s in, and how the attacker's connections ended."""
    body = json.dumps({"message": f"SQL: {STALLED_SQL}"}).encode()
    socks = []
    for n in range(streams):
        caller = callers.caller("attacker", 0, n // 4)
        head = (
            f"POST /v1/chat HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: {caller.headers['authorization']}\r\n\r\n"
        )
        conn = socket.socket()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.connect(("127.0.0.1", port))
        conn.sendall(head.encode() + body)
        socks.append(conn)
    time.sleep(3)
    early = tree_rss_mib(server.pid)
    time.sleep(max(0.0, hold - 3))
    late = tree_rss_mib(server.pid)
    states = _states(port)
    for conn in socks:
        conn.close()
    return {"rss_mib_3s_in": round(early), f"rss_mib_{hold:g}s_in": round(late), "attacker_sockets": states}


def _states(port: int) -> dict[str, int]:
    """The attacker's sockets to `port` by TCP state, as `ss` sees them (gone: reset or closed)."""
    out = subprocess.run(["ss", "-tnH", f"( dport = :{port} )"], capture_output=True, text=True).stdout
    states: dict[str, int] = {}
    for line in out.splitlines():
        states[line.split()[0]] = states.get(line.split()[0], 0) + 1
    return states


STALLED_SQL = "SELECT repeat('x', 8000) AS s FROM range(1000)"


def _threads(one: Callable[[], int], n: int) -> list[int]:
    results: list[int] = []
    workers = [threading.Thread(target=lambda: results.append(one()), daemon=True) for _ in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sorted(results)


# --- one attack against a fresh server --------------------------------------------------------------


async def measure(
    server: LoomServe, callers: EntraCallers, name: str, args: argparse.Namespace
) -> dict[str, Any]:
    caller = callers.caller("normal", 0, 0)
    port = int(server.url.rsplit(":", 1)[1])
    before = await innocent(server.url, caller)
    rss_before, cpu, peak = tree_rss_mib(server.pid), server.cpu_seconds(), [0.0]
    stop, outcome = threading.Event(), dict[str, Any]()
    attacks = {
        "headers": lambda: stream_headers(port, 2, 64, stop),
        "pipeline": lambda: pipeline(port, 100, 1, stop),
        "halfopen": lambda: half_open(port, args.halfopen, args.hold, stop),
        "forged": lambda: forged(port, forged_token(callers, 15_900), 32, stop),
        "stalled": lambda: stalled(port, callers, args.streams, args.stall_hold, server),
        "headerlines": lambda: repeated(port, LINES_REQUEST, 32, stop),
        "trailers": lambda: repeated(port, TRAILERS_REQUEST, 32, stop),
        "forgedmany": lambda: forged(port, forged_token(callers, 2_000), 32, stop, vary=True),
        "chunkdrip": lambda: chunk_drip(port, 2, stop),
    }
    attacker = threading.Thread(target=lambda: outcome.update(attacks[name]()), daemon=True)
    attacker.start()
    watching = threading.Thread(target=_watch_rss, args=(server, peak, stop), daemon=True)
    watching.start()
    await asyncio.sleep(args.settle)
    during = await innocent(server.url, caller)
    stop.set()
    await asyncio.to_thread(attacker.join, 120)
    return {
        "innocent_before": before,
        "innocent_during": during,
        "rss_mib": (round(rss_before), round(peak[0])),
        "server_cpu_s": round(server.cpu_seconds() - cpu, 1),
        "attacker": outcome,
        "alive": server.alive(),
    }


def _watch_rss(server: LoomServe, peak: list[float], stop: threading.Event) -> None:
    while not stop.is_set() and server.alive():
        peak[0] = max(peak[0], tree_rss_mib(server.pid))
        time.sleep(0.1)


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from loom.lakehouse.seed import seed_lakehouse

    callers = EntraCallers({"normal": 1, "attacker": 1})
    report: dict[str, Any] = {}
    try:
        with scripted_model() as model:
            for name in args.attacks:
                home = tmp / name
                seed_lakehouse(home / "lakehouse", orders=2000)
                write_sources(home)
                settings = {"LOOM_RESPONSE_STALL_S": "10"} if name == "stalled" else {}
                server = LoomServe(home, model.base_url, callers, settings, code_root())
                server.start()
                try:
                    report[name] = await measure(server, callers, name, args)
                finally:
                    server.stop()
                print(name, json.dumps(report[name], default=str), flush=True)
    finally:
        callers.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--attacks",
        nargs="+",
        choices=ATTACKS,
        default=ATTACKS,
    )
    parser.add_argument("--streams", type=int, default=32, help="stalled chat streams")
    parser.add_argument("--stall-hold", type=float, default=25, help="seconds the stalled streams are held")
    parser.add_argument("--halfopen", type=int, default=18_000, help="half-open connections")
    parser.add_argument("--hold", type=float, default=40, help="seconds the half-open ones are held")
    parser.add_argument("--settle", type=float, default=8, help="seconds of attack before the innocent asks")
    parser.add_argument("--hold-half-open", nargs=3, help=argparse.SUPPRESS)  # a helper process
    args = parser.parse_args()
    if args.hold_half_open:
        port, n, seconds = args.hold_half_open
        print(*hold_half_open(int(port), int(n), float(seconds)))
        return
    with tempfile.TemporaryDirectory(prefix="loom-http-floods-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
