"""Embedded engines in a child process: a value built past DuckDB's own limits costs that query only.

The attacks are the ones a held-out probe found growing one value outside DuckDB's memory limit and
past its interrupt (`printf` with a huge width, `replace()` into longer text): on the in-process
engine they held 4-8 GB for many times the time limit. Here they meet the child's address-space limit
(a clean out_of_memory) or its kill at the time limit plus a grace period (`timeout`), while a query
running beside them is answered. Engines that die are stood in by `Dying`, a tiny engine that exits
its process on request, so each path of the parent is driven without waiting on DuckDB.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from loom.engines.contracts import Catalog, Column, Problem, QueryError, ResultSet
from loom.engines.isolated import query_started
from loom.engines.isolated.engine import IsolatedEngine, ProcessMemory
from loom.engines.registry import CloudAccess, EnginePool
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.limits import ADDRESS_SPACE_SLACK, PROCESS_HEADROOM, LocalLimits, size_bytes
from loom.lakehouse.seed import seed_lakehouse

COUNT = "SELECT count(*) FROM gold.dim_store"
WIDE_PRINTF = "SELECT length(printf('%300000000d', 1))"  # 300 MB in one call: ~1.5 s, deaf to interrupt
REPLACE_GROWTH = "SELECT length(replace(repeat('x', 16000000), 'x', repeat('y', 64)))"  # 1 GB from 16 MB


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("isolation")
    seed_lakehouse(root, orders=100)
    return root


def isolated(
    lake: Path, memory: str = "256MB", process_memory: str | None = None, grace_s: float = 3.0
) -> Any:
    limits = LocalLimits(memory_limit=memory, threads=1, process_memory=process_memory)
    source = DuckDBSource(name="iso", location=str(lake))
    return IsolatedEngine(
        partial(DuckDBEngine, source, limits),
        label="iso",
        name="duckdb",
        language="sql",
        dialect="duckdb",
        dialects=DuckDBEngine.dialects,
        memory=ProcessMemory(limits.resident(), limits.address_space()),
        grace_s=grace_s,
    )


def count(engine: Any) -> list[list[object]]:
    rows: list[list[object]] = engine.execute(COUNT, max_rows=5, timeout_s=30).rows
    return rows


def test_the_pool_runs_embedded_sources_in_a_child_unless_told_not_to(lake: Path) -> None:
    source = DuckDBSource(name="iso", location=str(lake))
    pool = EnginePool(CloudAccess(local=LocalLimits(memory_limit="256MB")))
    inline = EnginePool(CloudAccess(local=LocalLimits(isolated=False)))
    try:
        engine, direct = pool.engine(source, "sql"), inline.engine(source, "sql")
        assert isinstance(engine, IsolatedEngine) and isinstance(direct, DuckDBEngine)
        assert (engine.name, engine.language, engine.dialect) == ("duckdb", "sql", "duckdb")
        # The same answers, refusals and catalog as in process.
        assert count(engine) == count(direct)
        assert (
            engine.validate("SELECT nope FROM gold.dim_store")[0].code
            == direct.validate("SELECT nope FROM gold.dim_store")[0].code
        )
        assert engine.catalog() == direct.catalog()
        assert engine.loaded_catalog() == direct.catalog()  # in hand right after, without a call
        with pytest.raises(QueryError) as refused:
            engine.execute("DROP TABLE gold.dim_store", max_rows=1, timeout_s=5)
        assert refused.value.code == "not_read_only"
    finally:
        pool.close()
        inline.close()


def test_a_value_grown_past_the_memory_bound_is_out_of_memory_and_the_engine_serves_on(lake: Path) -> None:
    engine = isolated(lake, process_memory="1GB")
    try:
        before = count(engine)
        for attack in (WIDE_PRINTF.replace("300000000", "2000000000"), REPLACE_GROWTH):
            pid = engine._child.process.pid
            with pytest.raises(QueryError) as failed:
                engine.execute(attack, max_rows=5, timeout_s=60)
            assert failed.value.code == "out_of_memory"
            assert count(engine) == before
            assert engine._child.process.pid != pid  # the process that held it is gone
    finally:
        engine.close()


def test_a_query_deaf_to_its_interrupt_has_its_child_killed_and_the_query_beside_it_answers(
    lake: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = isolated(lake, process_memory="4GB", grace_s=0.3)
    try:
        before = count(engine)
        first = engine._child.process.pid
        beside: dict[str, Any] = {}

        def slow_but_fine() -> None:  # in flight on the child when it is killed: sent again
            query = "SELECT count(*) FROM range(2000000) a, range(50) b WHERE a.range % 7 = b.range"
            beside["rows"] = engine.execute(query, max_rows=5, timeout_s=30).rows

        other = threading.Thread(target=slow_but_fine)
        with caplog.at_level(logging.WARNING):
            other.start()
            with pytest.raises(QueryError) as stopped:
                engine.execute(WIDE_PRINTF, max_rows=5, timeout_s=0.1)
            other.join()
        assert stopped.value.code == "timeout"
        assert "restarted" in stopped.value.message
        assert beside["rows"] == [[2000000]]
        assert count(engine) == before
        assert engine._child.process.pid != first
        assert "killing its process (execute overran its 0.1 s limit)" in caplog.text
    finally:
        engine.close()


class Dying:
    """An engine whose `execute` can exit its process (`die`), sleep in its query (`sleep <s>`) or
    before it (`load <s>`), log (`log`), or fail as a bug would (`bug`); it answers its pid."""

    name, language, dialect, dialects = "dying", "sql", "duckdb", frozenset({"duckdb"})

    def execute(self, query: str, *, max_rows: int, timeout_s: float, **options: Any) -> ResultSet:
        verb, _, arg = query.partition(" ")
        if verb == "die":
            os._exit(3)
        if verb == "load":
            time.sleep(float(arg))  # before query_started: a load, not the query
            query_started()
        if verb == "sleep":
            query_started()
            time.sleep(float(arg))
        if verb == "hold":  # hold the interpreter lock in one C call: pings go unanswered, CPU is used
            query_started()
            sum(range(int(arg)))
        if verb == "log":
            logging.getLogger("loom.engines.test").warning("hello from pid %d", os.getpid())
        if verb == "bug":
            raise RuntimeError("a bug in the engine")
        if verb == "grow":  # hold this many MB, touched, for a while: past the bound, the parent kills
            query_started()
            held = b"x" * (int(arg) << 20)
            time.sleep(5)
            del held
        return ResultSet(
            columns=[Column(name="pid", type="integer")],
            rows=[[os.getpid()]],
            row_count=1,
            engine="dying",
            query=query,
        )

    def validate(self, query: str, *, dialect: str | None = None) -> list[Problem]:
        return []

    def catalog(self) -> Catalog:
        return Catalog(tables=[])

    def loaded_catalog(self) -> Catalog | None:
        return None

    def problem(self) -> str | None:
        return None

    def close(self) -> None: ...


def dying(grace_s: float = 0.3, label: str = "dying", **options: Any) -> IsolatedEngine:
    """A `Dying` engine in a child, with the parent's options (memory, idle time…)."""
    return IsolatedEngine(
        Dying,
        label=label,
        name="dying",
        language="sql",
        dialect="duckdb",
        dialects=Dying.dialects,
        grace_s=grace_s,
        **options,
    )


def run(engine: IsolatedEngine, query: str, timeout_s: float = 5.0) -> Any:
    return engine.execute(query, max_rows=1, timeout_s=timeout_s).rows[0][0]


def test_a_child_that_dies_costs_its_query_and_the_calls_beside_it_are_sent_again() -> None:
    engine = dying()
    try:
        first = run(engine, "pid")
        beside: dict[str, Any] = {}
        other = threading.Thread(target=lambda: beside.update(pid=run(engine, "sleep 1")))
        other.start()
        time.sleep(0.3)  # the sleep is in flight when the child dies
        with pytest.raises(QueryError) as failed:
            run(engine, "die")  # dies twice: once in flight beside the sleep, once alone
        other.join()
        assert failed.value.code == "engine_failed"
        assert beside["pid"] != first  # answered by a new child: retried alone, not beside "die"
        assert run(engine, "pid") != first
    finally:
        engine.close()


def growing() -> IsolatedEngine:
    return dying(
        memory=ProcessMemory(resident=600 << 20)
    )  # a Dying child holds ~70 MB; `grow 1000` passes it


def test_a_query_alone_past_the_memory_bound_is_named_the_cause() -> None:
    engine = growing()
    try:
        first = run(engine, "pid")
        with pytest.raises(QueryError) as failed:
            run(engine, "grow 1000", timeout_s=30)
        assert failed.value.code == "out_of_memory" and "restarted" in failed.value.message
        assert run(engine, "pid") != first
    finally:
        engine.close()


def in_thread(
    engine: IsolatedEngine, query: str, timeout_s: float
) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `query` on a thread: `out["pid"]` when answered, `out["code"]` when it failed."""
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["pid"] = run(engine, query, timeout_s=timeout_s)
        except QueryError as e:
            out["code"] = e.code

    thread = threading.Thread(target=go)
    thread.start()
    return thread, out


def test_among_several_queries_the_longest_running_is_taken_for_the_cause_and_the_others_go_again() -> None:
    engine = growing()
    try:
        run(engine, "pid")
        grower, failed = in_thread(engine, "grow 1000", 30)
        time.sleep(0.05)  # the grower runs first, the quick one beside it when the bound is passed
        assert run(engine, "sleep 0.5", timeout_s=30) > 0  # sent again to a new child, answered
        grower.join()
        assert failed["code"] == "out_of_memory"
    finally:
        engine.close()


def test_a_long_query_taken_for_a_memory_kill_beside_others_is_blamed_only_if_it_grows_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = growing()
    try:
        first = run(engine, "pid")
        innocent, answered = in_thread(engine, "sleep 2", 30)  # long, and older than the grower
        time.sleep(0.3)
        grower, failed = in_thread(engine, "grow 1000", 30)
        innocent.join()
        grower.join()
        assert answered["pid"] != first  # run again alone in a child of its own, and answered
        assert failed["code"] == "out_of_memory"  # sent again beside nothing, then blamed for sure
        assert "running the query taken for a memory kill again, alone" in caplog.text
    finally:
        engine.close()


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[IsolatedEngine]:
    """A `Dying` engine whose child is pinged after 0.2 s of silence and taken for hung 0.5 s later."""
    from loom.engines.isolated import engine as parent

    monkeypatch.setattr(parent, "PING_AFTER_S", 0.2)
    monkeypatch.setattr(parent, "HUNG_AFTER_S", 0.5)
    engine = dying()
    yield engine
    engine.close()


def test_a_child_that_stops_answering_is_killed_and_its_calls_go_to_a_new_one(
    watched: IsolatedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    first = run(watched, "pid")
    waiting, out = in_thread(watched, "sleep 0.5", 30)
    time.sleep(0.2)
    os.kill(first, signal.SIGSTOP)  # wedged: alive, but deaf to everything
    started = time.monotonic()
    waiting.join(10)
    assert out["pid"] != first and time.monotonic() - started < 5  # not the 30 s limit
    assert "has answered nothing and used no CPU" in caplog.text


def test_a_child_that_holds_its_interpreter_but_works_is_not_taken_for_hung(watched: IsolatedEngine) -> None:
    first = run(watched, "pid")
    started = time.monotonic()
    assert run(watched, "hold 300000000", timeout_s=60) == first  # answered by the same child
    assert time.monotonic() - started > 1.5  # long enough for pings to go unanswered


def test_the_time_limit_covers_every_send_of_a_query() -> None:
    engine = dying(grace_s=0.3)
    try:
        run(engine, "pid")
        beside, out = in_thread(engine, "sleep 1.5", 1.4)  # alone, within 1.4 s + grace
        time.sleep(0.1)
        with pytest.raises(QueryError):
            run(engine, "sleep 5", timeout_s=0.1)  # killed at ~0.4 s: the one beside goes again
        beside.join()
        assert out == {"code": "timeout"}  # its second send had only what the first left
    finally:
        engine.close()


def test_the_time_limit_counts_from_the_query_not_from_the_wait_for_its_source() -> None:
    engine = dying(grace_s=0.2)
    try:
        assert run(engine, "load 1.0", timeout_s=0.2) > 0  # a 1 s load under a 0.2 s limit
        with pytest.raises(QueryError) as stopped:
            run(engine, "sleep 5", timeout_s=0.2)
        assert stopped.value.code == "timeout"
    finally:
        engine.close()


def test_what_the_child_logs_reaches_the_servers_log_and_a_bug_is_an_error_not_a_death(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = dying()
    try:
        with caplog.at_level(logging.INFO):
            pid = run(engine, "log")
            with pytest.raises(QueryError) as failed:
                run(engine, "bug")
        assert f"[engine dying] hello from pid {pid}" in caplog.text
        assert failed.value.code == "engine_failed" and "internal RuntimeError" in failed.value.message
        assert "a bug in the engine" not in failed.value.message  # its text and traceback: the log's
        assert "RuntimeError: a bug in the engine" in caplog.text
        assert run(engine, "pid") == pid
    finally:
        engine.close()


def test_a_closed_engine_refuses_and_its_child_is_gone() -> None:
    engine = dying()
    run(engine, "pid")
    process = engine._child.process  # type: ignore[union-attr]
    engine.close()
    assert not process.is_alive()
    with pytest.raises(QueryError) as refused:
        run(engine, "pid")
    assert refused.value.code == "source_unavailable"


PARENT = textwrap.dedent(
    """
    import os, sys, threading, time
    from tests.engines.test_isolation import dying, run
    if __name__ == "__main__":
        engine = dying()
        pid = run(engine, "pid")
        if sys.argv[1] == "busy":  # a query runs in the child when the parent is killed
            threading.Thread(target=run, args=(engine, "sleep 60", 120), daemon=True).start()
            time.sleep(0.5)
        print(pid, flush=True)
        time.sleep(60)
    """
)


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_a_child_does_not_outlive_a_parent_killed_with_sigkill(tmp_path: Path, state: str) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, str(script), state],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline().split()[0])
    os.kill(pid, 0)  # the child is alive while its parent is
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):  # it watches its owner (a pidfd), and the pipe's end
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"engine process {pid} outlived its parent by 10 s")


def test_sizes_read_the_way_duckdb_reads_them() -> None:
    assert size_bytes("4GB") == 4 * 10**9
    assert size_bytes("512MiB") == 512 << 20
    assert size_bytes("1.5 GB") == 1_500_000_000
    assert 0 < size_bytes("25%") < size_bytes("50%")
    assert size_bytes("4g") == 4 * 10**9
    assert LocalLimits(memory_limit="1GB").resident() == 10**9 + PROCESS_HEADROOM
    assert LocalLimits(process_memory="3GiB").resident() == 3 << 30
    assert LocalLimits(process_memory="3GiB").address_space() == (6 << 30) + ADDRESS_SPACE_SLACK
    with pytest.raises(ValueError, match="not a size"):
        size_bytes("100000000")  # DuckDB wants a unit too
    with pytest.raises(ValueError, match="not a size"):
        size_bytes("lots")


def test_the_catalog_crosses_once_per_load_and_is_in_hand_while_the_source_is_unchanged(lake: Path) -> None:
    import shutil

    copy = lake.parent / "isolation-catalog"
    shutil.copytree(lake, copy)
    engine = isolated(copy)
    try:
        first = engine.catalog()
        assert engine.catalog() is first  # the child said "the one you hold": nothing sent again
        count(engine)
        assert engine.loaded_catalog() is first  # the query's reply said it is still current
        shutil.rmtree(copy / "gold" / "dim_store")  # the data changes: a new load, a new catalog
        time.sleep(1.1)  # past the freshness window, so the next query looks at the files
        with pytest.raises(QueryError):
            count(engine)
        assert engine.loaded_catalog() is None
        assert engine.catalog().table("gold.dim_store") is None
    finally:
        engine.close()


def test_a_child_idle_past_its_time_is_stopped_and_the_next_call_starts_another() -> None:
    engine = dying(label="idle", idle_s=0.5)
    try:
        first = run(engine, "pid")
        assert not engine.retire_if_idle()  # just used
        process = engine._child.process  # type: ignore[union-attr]
        # Stopped by the reaper thread or by this call, whichever looks first once it is idle
        # (asserting this call did it raced the reaper on a loaded machine).
        deadline = time.monotonic() + 10
        while process.is_alive() and time.monotonic() < deadline:
            engine.retire_if_idle()
            time.sleep(0.1)
        assert not process.is_alive()
        assert run(engine, "pid") != first
    finally:
        engine.close()


def test_engines_together_past_their_total_lose_the_largest() -> None:
    # An idle child holds what the fork server had imported (70-250 MB, by which tests ran before):
    # the total is set from it, so that the greedy one is past its pool and slack (~250 MB over its
    # floor) whenever the total is first seen passed.
    probe = dying(label="probe")
    run(probe, "pid")
    idle = probe._child.resident() or 0  # type: ignore[union-attr]
    probe.close()

    def engine(label: str) -> IsolatedEngine:
        return dying(label=label, memory=ProcessMemory(total=2 * idle + (400 << 20), pool=100 << 20))

    quiet, greedy = engine("quiet"), engine("greedy")
    try:
        quiet_pid = run(quiet, "pid")
        run(greedy, "pid")
        with pytest.raises(QueryError) as failed:
            run(greedy, "grow 700", timeout_s=30)  # no bound of its own: over the two together
        assert failed.value.code == "out_of_memory"
        assert run(quiet, "pid") == quiet_pid  # the small one was left alone
    finally:
        quiet.close()
        greedy.close()


def test_a_new_child_does_not_vouch_for_the_old_ones_catalog(lake: Path) -> None:
    engine = isolated(lake)
    try:
        engine.catalog()
        assert engine.loaded_catalog() is not None
        assert engine._child is not None
        engine._child.kill([], "time", "a test")  # the next call starts a new child
        count(engine)
        assert engine._catalog is None  # its catalog number 1 need not be the old one's
        assert engine.catalog().table("gold.dim_store") is not None
    finally:
        engine.close()


def test_a_wide_nested_result_does_not_hold_up_the_other_queries_of_its_child(lake: Path) -> None:
    # Probe 8 (R8-2): building Python objects for 150 lists of 50,000 decimals held the child's
    # interpreter for ~20 s, and the queries beside it timed out. Nested values now cross as text.
    lists = ", ".join(f"l AS c{i}" for i in range(150))
    wide = f"WITH t AS (SELECT repeat([1::DECIMAL(38,0)], 49960) AS l) SELECT {lists} FROM t"
    engine = isolated(lake, memory="1GB")
    try:
        count(engine)  # the child is up and the source loaded
        outcome: dict[str, Any] = {}
        attacker = threading.Thread(
            target=lambda: outcome.update(r=engine.execute(wide, max_rows=5, timeout_s=60))
        )
        attacker.start()
        answers: list[list[list[object]]] = []
        while attacker.is_alive() or not answers:  # the whole time it runs and converts its row
            answers.append(engine.execute(COUNT, max_rows=5, timeout_s=10).rows)
        attacker.join()
        assert all(rows == answers[0] for rows in answers)  # none stopped by the limit
        assert outcome["r"].row_count == 1 and len(outcome["r"].model_dump_json().encode()) < 9_000_000
    finally:
        engine.close()
