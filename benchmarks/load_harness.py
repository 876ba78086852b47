"""Plumbing for `hardening_load`: `loom serve` in its own process, its memory, who calls it, the
scripted model it talks to, and a chat client that says how each turn ended.

- `LoomServe`: `loom serve` as users start it (its own process, real TCP, `OPENAI_BASE_URL` at the
  scripted model), started, SIGKILLed and restarted on one LOOM_HOME, running the same `loom` code
  this process imports.
- `RssSampler`: the server process tree's resident memory every ~50 ms (VmRSS), its peak per phase
  (and VmHWM, reset through /proc/<pid>/clear_refs), and a safety stop for this shared machine.
- `DevCallers` / `EntraCallers`: who asks. Dev mode has one principal; to load the server as many
  tenants and users, `EntraCallers` mints RS256 tokens and serves their keys (JWKS) on 127.0.0.1.
  The server finds Entra's keys and issuer at `loom.settings.LOGIN_AUTHORITY`, so its process is
  started with that one constant pointed at the local key server; everything else is `loom serve`.
- `ScriptedModel`: the OpenAI-compatible test server with a script: the turn's first call asks
  `nl2sql` with the user's question; the tool's own call (no tools offered) answers the SQL the
  question carries (`SQL: <query>`); after a tool result it answers in a sentence.
- `chat`: one POST /v1/chat, read as it streams, classified: `ok`, `ok:truncated_<by>`, the tool's
  error code (`busy`, `timeout`, `query_failed(out_of_memory)`, …), `run_error:<code>`,
  `http_<status>:<code>`, `transport:<exception>`, `client_timeout`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from loom.engines.bounds import CUT_MARK
from tests.support.openai_server import (
    OpenAICompatServer,
    Queued,
    QueuedReply,
    RecordedRequest,
    default_reply,
    message_text,
)

GIB = 1024**3
START_TIMEOUT_S = 90
SQL_MARK = re.compile(r"SQL: (.+)")
FALLBACK_SQL = "SELECT COUNT(*) AS order_lines FROM gold.fact_sales"


# --- the scripted model ------------------------------------------------------------------------


class _Forgetful(list[RecordedRequest]):
    """The test server records every request; under hundreds of turns that is only memory."""

    def append(self, item: RecordedRequest) -> None:
        return None


class ScriptedModel(OpenAICompatServer):
    """Outer call: `nl2sql` with the question. Inner call (no tools): the SQL after `SQL: ` in the
    question (a repair prompt quotes the question, so a repair answers the same query again)."""

    def __init__(self) -> None:
        super().__init__(default_sql=FALLBACK_SQL)
        self.recorded = _Forgetful()
        self.calls = 0

    def next_reply(self, body: dict[str, Any]) -> Queued:
        self.calls += 1
        if body.get("tools"):
            return default_reply(body, FALLBACK_SQL)
        messages = body.get("messages") or [{}]
        found = SQL_MARK.search(message_text(messages[-1]))
        return QueuedReply(text=f"```sql\n{found.group(1).strip() if found else FALLBACK_SQL}\n```")


# --- who calls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    tenant: str
    user: str
    headers: dict[str, str] = field(default_factory=dict, hash=False)


class Callers(Protocol):
    mode: str

    def caller(self, group: str, tenant: int, user: int) -> Caller: ...

    def server_env(self) -> dict[str, str]: ...

    def launch_code(self) -> str: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


LAUNCH = "from loom.cli.main import main; main()"


class DevCallers:
    """Dev mode: one principal (dev-tenant / dev-user) for every turn, as the server sees it."""

    mode = "dev"

    def caller(self, group: str, tenant: int, user: int) -> Caller:
        return Caller("dev-tenant", "dev-user")

    def server_env(self) -> dict[str, str]:
        return {"LOOM_AUTH_MODE": "dev"}

    def launch_code(self) -> str:
        return LAUNCH

    def describe(self) -> str:
        return "dev mode: every turn is the one dev principal (dev-tenant/dev-user)"

    def close(self) -> None:
        return None


class _KeysHandler(BaseHTTPRequestHandler):
    keys: bytes = b"{}"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        ok = self.path.endswith("/discovery/v2.0/keys")
        self.send_response(200 if ok else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.keys if ok else b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        return None


class EntraCallers:
    """Many tenants and users with Entra ID tokens minted here, verified by the server for real
    (RS256, issuer, audience, tenant allow-list) against keys served from 127.0.0.1."""

    mode = "entra"
    AUDIENCE = "api://loom-bench"

    def __init__(self, groups: dict[str, int]) -> None:
        """`groups`: a name → how many tenants it has (normal users, attackers…)."""
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = {**json.loads(RSAAlgorithm.to_jwk(self.key.public_key())), "kid": "bench-1", "alg": "RS256"}
        handler = type("Keys", (_KeysHandler,), {"keys": json.dumps({"keys": [jwk]}).encode()})
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.authority = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.tenants = {
            g: [f"{i:08x}-b0b0-4000-8000-{n:012x}" for i in range(count)]
            for n, (g, count) in enumerate(groups.items())
        }
        self.home_tenant = next(iter(self.tenants.values()))[0]
        self._tokens: dict[tuple[str, str], str] = {}

    def caller(self, group: str, tenant: int, user: int) -> Caller:
        tid = self.tenants[group][tenant % len(self.tenants[group])]
        oid = f"{group}-user-{user}"
        token = self._tokens.get((tid, oid))
        if token is None:
            token = self._tokens[(tid, oid)] = self._mint(tid, oid)
        return Caller(tid, oid, {"authorization": f"Bearer {token}"})

    def _mint(self, tid: str, oid: str) -> str:
        now = int(time.time())
        claims = {
            "iss": f"{self.authority}/{tid}/v2.0",
            "aud": self.AUDIENCE,
            "tid": tid,
            "oid": oid,
            "roles": ["Loom.User"],
            "iat": now,
            "nbf": now,
            "exp": now + 6 * 3600,
            "ver": "2.0",
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "bench-1"})

    def server_env(self) -> dict[str, str]:
        others = [t for ts in self.tenants.values() for t in ts if t != self.home_tenant]
        return {
            "LOOM_AUTH_MODE": "entra",
            "LOOM_ENTRA_TENANT_ID": self.home_tenant,
            "LOOM_ENTRA_AUDIENCE": self.AUDIENCE,
            "LOOM_ENTRA_ALLOWED_TENANTS": json.dumps(others),
        }

    def launch_code(self) -> str:
        return (
            f"import loom.settings as s; s.LOGIN_AUTHORITY[s.AzureCloud.PUBLIC] = {self.authority!r}; "
            + LAUNCH
        )

    def describe(self) -> str:
        counts = ", ".join(f"{len(ts)} {g}" for g, ts in self.tenants.items())
        return (
            f"entra mode, tenants: {counts}; RS256 tokens minted by the benchmark, keys served on "
            f"{self.authority} (the server's LOGIN_AUTHORITY is pointed there at launch)"
        )

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


# --- the server process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoomServe:
    """`loom serve` on `home`; start() again after kill9() restarts it on the same home."""

    def __init__(
        self, home: Path, model_url: str, callers: Callers, settings: dict[str, str], code_root: Path
    ) -> None:
        self.home, self.model_url, self.callers = home, model_url, callers
        self.settings, self.code_root = settings, code_root
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "OPENAI_", "AZURE_OPENAI_"))}
        env |= {"LOOM_HOME": str(self.home), "OPENAI_BASE_URL": self.model_url, "OPENAI_API_KEY": "bench"}
        env |= {"LOOM_MODEL": "test-model", "LOOM_LOG_LEVEL": "info"}
        env |= self.callers.server_env() | self.settings
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.code_root), env.get("PYTHONPATH")]))
        return env

    def start(self) -> float:
        """Start and wait for /readyz: the seconds it took."""
        started = time.perf_counter()
        port, self.starts = free_port(), self.starts + 1
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-c", self.callers.launch_code(), "serve", "--port", str(port)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=self.env(), cwd=self.home, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready()
        return time.perf_counter() - started

    @property
    def log_path(self) -> Path:
        return self.home / f"serve-{self.starts}.log"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"loom serve exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"loom serve was not ready within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            assert self.process is not None
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill9()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, *, below: float = 0.05, window_s: float = 1.0, most_s: float = 180) -> float:
        """Wait until the server uses under `below` of a core over `window_s`: the seconds waited
        (queries that outlive their turn, a reload, finish first)."""
        started = time.perf_counter()
        while self.alive() and time.perf_counter() - started < most_s:
            before = self.cpu_seconds()
            time.sleep(window_s)
            if not self.alive() or self.cpu_seconds() - before < below * window_s:
                break
        return time.perf_counter() - started


# --- memory ------------------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """The process and its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split among the processes that map them, so a tree's
    PSS adds up to what it really holds (RSS counts a forked child's shared pages twice)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_role(pid: int, root: int) -> str:
    """The server, its direct children (the forkserver, a resource tracker) or an engine child
    (forked by the forkserver, so one level further down)."""
    if pid == root:
        return "server"
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return "gone"
    return "server child" if parent == root else "engine child"


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    role: str
    rss: int  # bytes
    pss: int  # bytes


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """The server tree's RSS every `interval_s`; SIGKILLs it (and says so) past `cap` bytes or when
    the machine has under `floor` bytes available, so a benchmark cannot take a shared machine down."""

    def __init__(self, pid: Callable[[], int | None], *, cap: int, floor: int, interval_s: float = 0.05):
        self._pid, self.cap, self.floor, self.interval_s = pid, cap, floor, interval_s
        self.peak = 0
        self.peak_parts: list[ProcessMemory] = []  # each process of the tree at the peak sample
        self.samples = 0
        self.stopped_server: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        """A new phase: the peak starts again, and so does the kernel's VmHWM."""
        self.peak, self.samples, self.stopped_server, self.peak_parts = 0, 0, None, []
        pid = self._pid()
        for p in tree(pid) if pid else []:
            try:
                Path(f"/proc/{p}/clear_refs").write_text("5")
            except OSError:
                pass

    def hwm(self) -> int:
        pid = self._pid()
        return sum(status_kib(p, "VmHWM") for p in tree(pid)) * 1024 if pid else 0

    def rss(self) -> int:
        pid = self._pid()
        return sum(status_kib(p, "VmRSS") for p in tree(pid)) * 1024 if pid else 0

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            pid = self._pid()
            if not pid:
                continue
            parts = {p: status_kib(p, "VmRSS") * 1024 for p in tree(pid)}
            rss = sum(parts.values())
            if rss > self.peak:  # read PSS only at a new peak: smaps_rollup costs more
                self.peak_parts = [
                    ProcessMemory(p, process_role(p, pid), r, pss_kib(p) * 1024) for p, r in parts.items()
                ]
            self.peak, self.samples = max(self.peak, rss), self.samples + 1
            available = mem_available()
            if rss > self.cap or available < self.floor:
                self.stopped_server = f"RSS {rss / GIB:.1f} GiB, machine available {available / GIB:.1f} GiB"
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


# --- one chat turn -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    kind: str  # "normal" or the heavy query's name
    question: str
    caller: Caller


@dataclass
class Outcome:
    turn: Turn
    code: str = ""
    ms: float = 0.0
    thread_id: str | None = None
    announced_ms: float | None = None  # when RUN_STARTED arrived
    finished: bool = False
    tool_code: str | None = None
    run_error: str | None = None
    detail: str = ""  # the first error message seen (tool error, RUN_ERROR, HTTP body)

    @property
    def ok(self) -> bool:
        return self.code.startswith("ok")


def tool_code(content: str) -> tuple[str, str]:
    """How the first tool call ended, from the TOOL_CALL_RESULT the model read: (code, message)."""
    try:
        data = json.loads(content)
    except ValueError:
        return "unreadable_tool_result", content[:300]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code")), str(error.get("message", ""))
        last = re.search(r"last error \((\w+)\)", message)
        return (f"{code}({last.group(1)})" if code == "query_failed" and last else code), message[:300]
    cut = (data.get("result") or {}).get("truncated_by") if isinstance(data, dict) else None
    if cut:
        return f"ok:truncated_{cut}", ""
    return ("ok:values_cut" if CUT_MARK in content else "ok"), ""


def _see(out: Outcome, event: dict[str, Any], start: float) -> None:
    kind = event.get("type")
    if kind == "RUN_STARTED":
        out.thread_id = event.get("threadId")
        out.announced_ms = (time.perf_counter() - start) * 1000
    elif kind == "TOOL_CALL_RESULT" and out.tool_code is None:
        out.tool_code, out.detail = tool_code(str(event.get("content", "")))
    elif kind == "RUN_ERROR":
        out.run_error = str(event.get("code") or "unknown")
        out.detail = out.detail or str(event.get("message", ""))[:300]
    elif kind == "RUN_FINISHED":
        out.finished = True


def _final_code(out: Outcome) -> str:
    if out.run_error:
        return f"run_error:{out.run_error}"
    if not out.finished:
        return "stream_ended_early"
    return out.tool_code or "no_tool_call"


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


async def chat(client: httpx.AsyncClient, url: str, turn: Turn) -> Outcome:
    """One turn, read as it streams; never raises (a failure is the outcome's code)."""
    out, start = Outcome(turn), time.perf_counter()
    try:
        asked = {"message": turn.question}
        async with client.stream("POST", f"{url}/v1/chat", json=asked, headers=turn.caller.headers) as r:
            if r.status_code != 200:
                body = await r.aread()
                out.code, out.detail = (
                    f"http_{r.status_code}:{_error_code(body)}",
                    body[:300].decode(errors="replace"),
                )
            else:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        _see(out, json.loads(line[6:]), start)
                out.code = _final_code(out)
    except httpx.TimeoutException:
        out.code = "client_timeout"
    except (httpx.HTTPError, OSError) as e:
        out.code, out.detail = f"transport:{type(e).__name__}", str(e)[:300]
    out.ms = (time.perf_counter() - start) * 1000
    return out


def client_for(turns: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=turns + 16, max_keepalive_connections=turns + 16)
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=30), limits=limits)


async def run_all(url: str, turns: list[Turn], timeout_s: float) -> tuple[list[Outcome], float]:
    """All turns at once, each on its own connection: the outcomes in order, and the wall seconds."""
    async with client_for(len(turns), timeout_s) as client:
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(chat(client, url, t) for t in turns))
        return list(outcomes), time.perf_counter() - started
