"""The parent side: `IsolatedEngine` runs an engine in a child process and keeps it alive.

Each call is a request over a pipe, answered on a thread of the child, so calls run in parallel
as they did in process. A query that outlives its time limit by `KILL_GRACE_S` (the engine's own
interrupt did not stop it) has the child killed: that query fails with `timeout`; the calls that
were in flight beside it are sent again to a new child. A child that dies by itself is handled the
same way, except that nobody is known to be at fault: each call in flight gets one more try, alone
among the calls being tried again, and one that loses a second child that way fails with
`engine_failed`. A child past its memory bound is killed for the query that has run longest; when
others ran beside it, that is a guess, so the query runs once more in a child of its own and is
blamed only if it passes the bound there too. A query's time limit covers all its sends. A child
with calls in flight that stops answering pings, and uses no CPU, is taken for hung and killed like
one that died.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from loom.engines.contracts import Catalog, Engine, Problem, QueryError, ResultSet
from loom.engines.isolated import child
from loom.engines.isolated.patrol import Patrol
from loom.engines.isolated.protocol import BROKEN, CATALOG, LOG, OK, PING, PONG, REFUSED, STARTED, STOP

log = logging.getLogger(__name__)

KILL_GRACE_S = 3.0  # past a query's time limit before its child is killed
RSS_CHECK_S = 0.1  # how often the children's resident memory is read
PAGE = os.sysconf("SC_PAGE_SIZE")
IDLE_CHECK_S = 30.0  # how often children are looked at for having been idle too long
MAX_SENDS = 4  # a call is sent at most this often, however many children die under it
LOAD_ALLOWANCE_S = 90.0  # a call may wait this long for its source to load before it starts
CALL_LIMIT_S = 600.0  # validate and catalog: a child silent this long is taken for hung
CATALOG_FRESH_S = 1.0  # how long a catalog in hand counts as current (`loaded_catalog`)
STOP_WAIT_S = 2.0
PING_AFTER_S = 2.0  # a child with calls in flight that has said nothing this long is pinged
HUNG_AFTER_S = 10.0  # and one that has not answered the ping this long is taken for hung
WATCH_S = 1.0  # how often children are looked at for answering
# What a child may hold past its runtime and its engine's pool before it counts as holding what a
# query built outside the pool: DuckDB's own overheads (probe 7 saw 1134 MiB on a 953 MiB pool).
POOL_SLACK = 0.25
POOL_SLACK_BYTES = 128 << 20
WAIT_SLICE_S = 0.25
# Modules the fork server imports once, so that each child starts in milliseconds. `__main__` too:
# multiprocessing imports the parent's main module in every child unless the fork server already has.
PRELOAD = ["__main__", "loom.engines.isolated.child", "loom.engines.sql.duckdb_engine"]


@dataclass(frozen=True)
class ProcessMemory:
    """What a child may hold: `resident` bytes (past them the parent kills it), `address_space`, the
    virtual memory it may add past its start (an allocation past that fails in the engine, as its
    own out_of_memory), and `total`, what all the server's children may hold together. None: no
    bound of that kind."""

    resident: int | None = None
    address_space: int | None = None
    total: int | None = None  # what all children of this server may hold together
    pool: int | None = None  # what the engine itself is limited to (DuckDB's memory limit)


def _check_memory(watched: list[_Child]) -> None:
    """A child past its own bound is killed (a value DuckDB built outside its memory limit), and
    when the children together pass their `total`, one of them is — so that many busy sources
    cannot together take more than the server was given."""
    children = [c for c in watched if c.alive]
    held: list[tuple[int, _Child]] = []
    for one in children:
        size = one.resident()
        if size is None:
            continue
        bound = one.memory.resident
        if bound is not None and size > bound:
            one.kill_for_memory(f"{size >> 20} MiB resident, over its {bound >> 20} MiB")
            continue
        held.append((size, one))
    totals = [c.memory.total for _, c in held if c.memory.total is not None]
    together = sum(size for size, _ in held)
    if not totals or together <= min(totals) or not held:
        return
    # A child holding more than its runtime and its engine's own limit holds what a query built
    # outside that limit:
    # the largest of those is to blame. If none is, the total is simply too small for the
    # sources' work; the largest is restarted, its calls sent again, and nobody blamed.
    outside = [(size, c) for size, c in held if c.outside_pool(size)]
    size, chosen = max(outside or held, key=lambda pair: pair[0])
    why = (
        f"the engines hold {together >> 20} MiB together, over their {min(totals) >> 20} MiB; "
        f"this one {size >> 20} MiB"
    )
    if outside:
        chosen.kill_for_memory(why + ", past its engine's own limit")
    else:
        chosen.kill([], "memory", why, innocent=True)


@dataclass(frozen=True)
class _Held:
    number: int  # the child's number for it
    catalog: Catalog


@dataclass(eq=False)
class _Call:
    """One request in flight: when it was sent and started, and how it ended."""

    method: str
    kwargs: dict[str, Any]
    budget_s: float  # its own time limit once started
    grace_s: float  # how far past it the child is killed
    sent: float = field(default_factory=time.monotonic)
    started: float | None = None
    reply: tuple[Any, ...] | None = None
    lost: str | None = None  # the child died under it: why
    culprit: str | None = None  # it is why the child was killed: "time" or "memory"
    bystander: bool = False  # the child was killed for another call: no fault of this one
    done: threading.Event = field(default_factory=threading.Event)

    def ran_for(self) -> float:
        """Seconds its query has run (0 before it started)."""
        return 0.0 if self.started is None else time.monotonic() - self.started

    def deadline(self) -> float:
        if self.started is not None:
            return self.started + self.budget_s + self.grace_s
        return self.sent + LOAD_ALLOWANCE_S + self.budget_s + self.grace_s


class _Child:
    """One child process, its pipe and the calls in flight on it."""

    def __init__(self, factory: Callable[[], Engine], memory: ProcessMemory, label: str) -> None:
        context = _context()
        ours, theirs = context.Pipe()
        args = (theirs, factory, memory.address_space, os.getpid(), label)
        self.process = context.Process(
            target=child.serve, args=args, name=f"loom-engine {label}", daemon=True
        )
        self.process.start()
        theirs.close()
        self.label = label
        self._conn: Connection = ours
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.calls: dict[int, _Call] = {}
        self.alive = True
        self.killed = False  # by the parent, for calls known to be the cause
        self.ended_by: str | None = None  # why the parent ended it (a kill or a stop), if it did
        self.used = time.monotonic()  # when a call was last sent or answered
        self.heard = time.monotonic()  # when the child last said anything
        self._pinged: float | None = None
        self._ping_cpu: int | None = None  # its CPU time when last pinged
        self.floor: int | None = None  # the least it was seen to hold: its runtime, before data
        threading.Thread(target=self._read, name=f"engine-pipe {label}", daemon=True).start()
        self.memory = memory
        if memory.resident is not None or memory.total is not None:
            _GOVERNOR.watch(self)
        _WATCHMAN.watch(self)

    def send(self, call: _Call) -> None:
        with self._lock:
            if not self.alive:
                call.lost, call.bystander = "the engine process had stopped", True
                call.done.set()
                return
            request_id = next(self._ids)
            self.calls[request_id] = call
            self.used = time.monotonic()
            self._conn.send((request_id, call.method, call.kwargs))
        if self.floor is None:  # seen before its first call grows it: the least it holds
            self.resident()

    def kill(self, culprits: list[_Call], cause: str, why: str, innocent: bool = False) -> None:
        """Kill the process for `culprits` (none: the cause is not known to be any one call;
        `innocent`: known to be none of them, so that every call is sent again)."""
        with self._lock:
            for call in culprits:
                call.culprit = cause
            self.killed = bool(culprits) or innocent
            self.ended_by = why
        log.warning("engine %s: killing its process (%s)", self.label, why)
        self.process.kill()

    def resident(self) -> int | None:
        """Bytes of memory the process holds now (None once it is gone)."""
        try:
            with open(f"/proc/{self.process.pid}/statm") as statm:
                size = int(statm.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            return None
        self.floor = size if self.floor is None else min(self.floor, size)
        return size

    def outside_pool(self, size: int) -> bool:
        """Whether it holds more than its runtime and its engine's pool: what a query built outside
        the engine's own limit (a pool in full use is not that)."""
        pool = self.memory.pool
        return pool is not None and size > (self.floor or 0) + pool * (1 + POOL_SLACK) + POOL_SLACK_BYTES

    def check_alive(self, now: float) -> None:
        """Ping a child that has calls in flight and has said nothing for `PING_AFTER_S`. Its
        reading loop answers at once unless something holds its interpreter: a long conversion of
        a huge result does (probe 7: a row of 150 lists of 50,000 decimals held it for 12 s), so a
        child still silent `HUNG_AFTER_S` later is hung only if it has used no CPU meanwhile
        (stopped, or wedged on a lock); one that is working is asked again later. A hung child is
        killed, and its calls go again to a new child."""
        with self._lock:
            if not self.alive or not self.calls or now - self.heard < PING_AFTER_S:
                self._pinged = None
                return
            if self._pinged is not None and now - self._pinged < HUNG_AFTER_S:
                return
            working = self._ping_cpu is not None and self.cpu_ticks() != self._ping_cpu
            if self._pinged is None or working:
                self._pinged, self._ping_cpu = now, self.cpu_ticks()
                try:
                    self._conn.send((None, PING, {}))
                except OSError:
                    pass
                return
        self.kill([], "hung", f"it has answered nothing and used no CPU for {now - self.heard:.0f} s")

    def cpu_ticks(self) -> int | None:
        """The CPU time the process has used (user + system, in clock ticks); None once it is gone."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()  # after the name, which may hold spaces
            return int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            return None

    def kill_for_memory(self, why: str) -> None:
        """The query that has run longest is taken for the cause: a value grown past the bound
        takes seconds to grow, while the queries beside it mostly take milliseconds. The others
        are sent again at once. (Counting every one a suspect, each retried alone, held the
        source's places for a minute under `hardening_load` and refused 84 of 150 normal turns.)
        With others beside it, that is a guess (a long legitimate query may be the oldest), so it
        is only a `suspect`, which `IsolatedEngine` runs again in a child of its own."""
        with self._lock:
            running = [c for c in self.calls.values() if c.method == "execute" and c.started]
        oldest = min(running, key=lambda c: c.started or 0.0, default=None)
        self.kill([oldest] if oldest else [], "memory" if len(running) == 1 else "suspect", why)

    def idle_for(self) -> float:
        """Seconds since it was last used; 0 while a call is in flight."""
        with self._lock:
            return 0.0 if self.calls else time.monotonic() - self.used

    def stop(self) -> None:
        with self._lock:
            self.ended_by = self.ended_by or "stopped"
            if self.alive:
                try:
                    self._conn.send((None, STOP, {}))
                except OSError:
                    pass
        self.process.join(STOP_WAIT_S)
        if self.process.is_alive():
            self.process.kill()

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            self._handle(message)
        self._died()

    def _handle(self, message: tuple[Any, ...]) -> None:
        request_id, kind = message[0], message[1]
        self.heard = time.monotonic()
        if kind == PONG:
            return
        if kind == LOG:
            name, level, text = message[2]
            logging.getLogger(name).log(level, "[engine %s] %s", self.label, text)
            return
        with self._lock:
            call = self.calls.get(request_id) if kind == STARTED else self.calls.pop(request_id, None)
        if call is None:
            return
        if kind == STARTED:  # the first report counts (a KQL call reports before translating)
            call.started = call.started or time.monotonic()
            return
        call.reply = message[1:]
        self.used = time.monotonic()
        call.done.set()

    def _died(self) -> None:
        self.process.join(STOP_WAIT_S)
        code = self.process.exitcode
        with self._lock:
            self.alive = False
            calls, self.calls = list(self.calls.values()), {}
        self._conn.close()
        if self.killed:
            why = "killed to stop another call"
        elif self.ended_by:
            why = f"ended by the server ({self.ended_by}), the cause not known to be any one call"
        else:
            why = f"the engine process ended by itself (exit code {code})"
        if calls:  # the parent's own choice is a warning; a death by itself is what operators must see
            level = logging.WARNING if self.ended_by else logging.ERROR
            log.log(level, "engine %s: %s with %d call(s) in flight", self.label, why, len(calls))
        for call in calls:
            call.lost = "killed to stop this call" if call.culprit else why
            # Stopped for being idle just as a call came: no fault of the call's either.
            call.bystander = (self.killed or self.ended_by == "stopped") and not call.culprit
            call.done.set()


class IsolatedEngine:
    """An `Engine` whose work runs in a child process (see the package docstring).

    `factory` builds the real engine in the child, so it must pickle (a class and its arguments).
    `memory`: what the child may hold (`ProcessMemory`; default unbounded). The engine's
    name, language and dialects are given here so that nothing has to start to read them.
    """

    def __init__(
        self,
        factory: Callable[[], Engine],
        *,
        label: str,
        name: str,
        language: str,
        dialect: str,
        dialects: frozenset[str],
        memory: ProcessMemory | None = None,
        grace_s: float = KILL_GRACE_S,
        idle_s: float | None = None,
    ) -> None:
        self._factory = factory
        self._memory = memory or ProcessMemory()
        self._grace_s = grace_s
        self._idle_s = idle_s
        self.label = label
        self.name, self.language, self.dialect, self.dialects = name, language, dialect, dialects
        self._lock = threading.Lock()
        self._retrying = threading.Lock()
        self._child: _Child | None = None
        self._problem: str | None = None
        self._catalog: _Held | None = None
        self._stamp: tuple[float, int | None] | None = None  # (when, the child's catalog stamp)
        self._closed = False

    # --- Engine protocol ------------------------------------------------------------------------

    def execute(self, query: str, *, max_rows: int, timeout_s: float, **options: Any) -> ResultSet:
        kwargs = {"query": query, "max_rows": max_rows, "timeout_s": timeout_s, **options}
        result: ResultSet = self._call("execute", kwargs, budget_s=timeout_s)
        return result

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        problems: list[Problem] = self._call("validate", {"query": query, "dialect": dialect})
        return problems

    def catalog(self) -> Catalog:
        held = self._catalog
        number, found = self._call(CATALOG, {"held": held.number if held else None})
        if found is None:  # the one held is still current
            assert held is not None
            return held.catalog
        self._catalog = _Held(number, found)
        return found

    def loaded_catalog(self) -> Catalog | None:
        """The catalog held, when the child's latest reply, less than `CATALOG_FRESH_S` ago, said it
        was still current: a busy source answers from here without a call."""
        held, stamp = self._catalog, self._stamp
        if held is None or stamp is None or stamp[1] != held.number:
            return None
        return held.catalog if time.monotonic() - stamp[0] < CATALOG_FRESH_S else None

    def problem(self) -> str | None:
        return self._problem

    def close(self) -> None:
        with self._lock:
            self._closed = True
            running, self._child = self._child, None
        if running is not None:
            running.stop()

    def retire_if_idle(self) -> bool:
        """Stop the child when it has served nothing for `idle_s`: a server with many sources
        would otherwise keep a process (~0.2 GB and a copy of the data) for each one ever asked
        about. The next call starts one again (about a second, with the load)."""
        with self._lock:
            running = self._child
            if self._idle_s is None or running is None or running.idle_for() < self._idle_s:
                return False
            self._child = None
        log.info("engine %s: stopping its process, idle for %.0f s", self.label, running.idle_for())
        running.stop()
        return True

    # --- calls ----------------------------------------------------------------------------------

    def _call(self, method: str, kwargs: dict[str, Any], budget_s: float = CALL_LIMIT_S) -> Any:
        """Send, wait, and answer; again on a new child when the child died under the call and the
        call was not why: a child that died by itself may have died of this call, so that counts
        once; one killed to stop another call does not count (up to `MAX_SENDS` sends). The time
        limit covers every send: a query sent again has what its earlier sends left of it."""
        deaths, spent, restarts = 0, 0.0, 0
        for _ in range(MAX_SENDS):
            left = budget_s - spent
            if left <= 0:
                raise _overran(method, budget_s)
            sent = {**kwargs, "timeout_s": left} if method == "execute" else kwargs
            # A call sent again after a death of unknown cause runs alone among those: when the
            # child dies under it a second time, it is the likely cause, and the calls that were
            # beside it are not. A bystander of a known cause goes again at once.
            with self._retrying if deaths else nullcontext():
                call = _Call(method, sent, left, self._grace_s)
                running = self._running()
                running.send(call)
                self._wait(running, call)
            if call.reply is not None:
                return self._answered(call.reply, budget_s, left)
            spent += call.ran_for()
            if call.culprit == "suspect":
                return self._alone(kwargs, budget_s)
            if call.culprit:
                raise _overran(method, budget_s) if call.culprit == "time" else _outgrew()
            deaths += 0 if call.bystander else 1
            restarts += 1 if call.bystander else 0
            log.warning("engine %s: %s lost (%s); sending it again", self.label, method, call.lost)
            if deaths == 2:
                break
        if deaths < 2:  # every loss was for other calls or the server's total: no fault of this one
            raise QueryError(
                "source_busy",
                f"The engine was restarted {restarts} times while this query ran, for other queries or "
                "because the server's engines needed their memory back; try again in a moment.",
            )
        raise QueryError(
            "engine_failed",
            "The engine stopped while this query ran, more than once, and was restarted; it cannot run "
            "as written. Make it smaller: avoid building very long strings or unbounded recursion.",
        )

    def _alone(self, kwargs: dict[str, Any], budget_s: float) -> Any:
        """A query taken for the cause of a memory kill while others ran beside it runs once more in
        a child of its own, with its whole time limit (it may have been innocent): there nothing
        else can grow, so it is the cause only if it passes the bound again, and answered if not."""
        log.warning("engine %s: running the query taken for a memory kill again, alone", self.label)
        alone = self._start(f"{self.label} (alone)", reaped=False)
        call = _Call("execute", kwargs, budget_s, self._grace_s)
        try:
            alone.send(call)
            self._wait(alone, call)
        finally:
            alone.stop()
        if call.reply is not None:
            return _outcome(*call.reply[:2])
        if call.culprit == "time":
            raise _overran("execute", budget_s)
        if call.culprit:
            raise _outgrew()
        raise QueryError("engine_failed", "The engine stopped while this query ran alone, and was restarted.")

    def _wait(self, running: _Child, call: _Call) -> None:
        """Wait for the reply; kill the child when the call overruns its deadline."""
        while not call.done.wait(WAIT_SLICE_S):
            if time.monotonic() > call.deadline():
                running.kill([call], "time", f"{call.method} overran its {call.budget_s:g} s limit")
                call.done.wait()
                return

    def _answered(self, reply: tuple[Any, ...], budget_s: float, left: float) -> Any:
        """The reply's value; a time limit the engine met on a later send is told as the query's
        whole limit, not as what that send was left with."""
        try:
            return self._answer(reply)
        except QueryError as e:
            if e.code != "timeout" or left >= budget_s:
                raise
            raise QueryError(
                "timeout",
                f"The query was stopped after the {budget_s:g} s time limit, over all its tries (its "
                "engine was restarted while it ran). Make it cheaper: filter earlier, aggregate before "
                "joining.",
            ) from e

    def _answer(self, reply: tuple[Any, ...]) -> Any:
        kind, value, problem, stamp = reply
        self._problem = problem
        self._stamp = (time.monotonic(), stamp)
        return _outcome(kind, value)

    def _running(self) -> _Child:
        """The live child, started when there is none."""
        with self._lock:
            if self._closed:
                raise QueryError("source_unavailable", f"The engine for {self.label!r} was closed.")
            if self._child is None or not self._child.alive:
                self._child = self._start()
                # A new child numbers its catalogs from 1 again: what the old one said is void.
                self._catalog, self._stamp = None, None
            return self._child

    def _start(self, label: str | None = None, reaped: bool = True) -> _Child:
        try:
            made = _Child(self._factory, self._memory, label or self.label)
        except OSError as e:
            self._problem = f"could not start the engine process: {e}"
            log.error("engine %s: %s", self.label, self._problem)
            raise QueryError("source_unavailable", f"The engine for {self.label!r} could not start.") from e
        weakref.finalize(self, made.process.kill)  # an engine dropped unclosed takes its child along
        if reaped and self._idle_s is not None:
            _REAPER.watch(self)
        return made


def _outcome(kind: str, value: Any) -> Any:
    """A reply's value, or the QueryError it carries."""
    if kind == OK:
        return value
    if kind == REFUSED:
        code, message, problems = value
        raise QueryError(code, message, problems)
    assert kind == BROKEN  # its traceback is in the log, forwarded from the child
    raise QueryError("engine_failed", f"The engine failed on this call (an internal {value}).")


def _retire_idle(engines: list[IsolatedEngine]) -> None:
    for engine in engines:
        engine.retire_if_idle()


def _check_alive(children: list[_Child]) -> None:
    now = time.monotonic()
    for one in children:
        one.check_alive(now)


# One thread reads every child's resident memory; one retires idle children, for every engine.
_GOVERNOR: Patrol[_Child] = Patrol("engine-memory", RSS_CHECK_S, _check_memory)
_REAPER: Patrol[IsolatedEngine] = Patrol("engine-reaper", IDLE_CHECK_S, _retire_idle)
_WATCHMAN: Patrol[_Child] = Patrol("engine-watchman", WATCH_S, _check_alive)


def _outgrew() -> QueryError:
    return QueryError(
        "out_of_memory",
        "The query made its engine pass its memory limit (its engine had to be restarted to stop "
        "it). Avoid building very long strings or lists; filter or aggregate earlier.",
    )


def _overran(method: str, budget_s: float) -> QueryError:
    if method == "execute":
        return QueryError(
            "timeout",
            f"The query was stopped after the {budget_s:g} s time limit (its engine had to be "
            "restarted to stop it). Make it cheaper: avoid building very long strings, filter "
            "earlier, aggregate before joining.",
        )
    return QueryError("engine_failed", f"The engine did not answer ({method}) and was restarted.")


_fork_server: multiprocessing.context.ForkServerContext | None = None
_fork_lock = threading.Lock()


def _context() -> multiprocessing.context.ForkServerContext:
    """A fork server, started once, that has imported the engines: children fork from a process
    with no threads (forking this one, which has many, is unsafe) and start without importing."""
    global _fork_server
    with _fork_lock:
        if _fork_server is None:
            _fork_server = multiprocessing.get_context("forkserver")
            _fork_server.set_forkserver_preload(PRELOAD)
        return _fork_server
