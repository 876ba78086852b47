"""Heavy queries and kill -9 under load, against a real `loom serve` (hardening, issue 8, "done when").

A. Heavy queries among normal turns. `loom serve` runs in its own process on a seeded sample
   lakehouse, with the settings a deployment on this machine would use (printed), its model the
   scripted OpenAI-compatible server in this process. Normal turns are the sample's verified
   questions (two model calls, the verified query) and simple generated ones (the tool also asks the
   model for SQL); heavy turns are the issue's attacks, each asked as `SQL: <query>` so the scripted
   model writes exactly that query. Each round runs the normal turns alone (the baseline), then the
   same normal turns with the heavy ones, all started at once, and compares the normal turns' p50 and
   p99; it counts how every turn ended, by code, and samples the server's RSS every ~50 ms.
   In entra mode (default) normal users and attackers are different tenants and users, so the
   per-tenant and per-user query limits act as they would in service; `--auth dev` is one user.

B. kill -9 under load. ~500 normal turns start at once; the server is SIGKILLed 1.5, 2.5 and 4 s in
   (the issue's times) and 10 s in (on a busy machine the first RUN_STARTED of 500 can come after
   2.5 s), one run each on a fresh copy of the home, restarted on the same LOOM_HOME, and every
   conversation whose RUN_STARTED (threadId) a client received is read back as its caller: the
   target is 0 missing, each with the user's message.

Run: `python -m benchmarks.hardening_load` (~5 min on the 2-core machine, ~11 when it is busy; `--solo`
adds each heavy query alone first, ~1 min) or `--quick` (~2-4 min); `--help` for the knobs.
Figures go in benchmarks/README.md; nothing here is asserted in a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

import loom
from benchmarks.load_harness import (
    GIB,
    Callers,
    DevCallers,
    EntraCallers,
    LoomServe,
    Outcome,
    ProcessMemory,
    RssSampler,
    ScriptedModel,
    Turn,
    chat,
    client_for,
    run_all,
)

# What a deployment on this machine (2 cores, 24 GiB) would set: a DuckDB budget of a sixth of
# memory, queries stopped at 10 s, twice as many query threads as cores, no tenant able to hold
# more than half of them, and a wait for a place longer than the time limit.
DEPLOYMENT = {
    "LOOM_DUCKDB_MEMORY_LIMIT": "4GB",
    "LOOM_DUCKDB_THREADS": "2",
    "LOOM_DUCKDB_MAX_TEMP_SIZE": "4GiB",
    "LOOM_QUERY_TIMEOUT_S": "10",
    "LOOM_QUERY_MAX_BYTES": str(8 * 1024 * 1024),
    "LOOM_QUERY_WORKERS": "4",
    "LOOM_QUERY_PER_TENANT": "2",
    "LOOM_QUERY_PER_USER": "2",
    "LOOM_QUERY_WAIT_S": "30",  # longer than the time limit, as the default is
}

# The attacks (plus a slow query that only a time limit stops).
HEAVY = {
    "cte_doubling": "WITH RECURSIVE r AS (SELECT 'x' AS s UNION ALL SELECT s || s FROM r) "
    "SELECT max(length(s)) FROM r",
    "repeat_2gib_concat": "SELECT length(s || s) FROM (SELECT repeat('x', 2147483648) AS s)",
    "repeat_100m_x3": "SELECT repeat('x', 100000000) AS s FROM range(3)",
    "string_agg_5gb": "SELECT length(string_agg(repeat('x', 1000000), ',')) FROM range(5000)",
    "slow_cross_join": "SELECT count(*) FROM range(1000000) AS a, range(1000000) AS b "
    "WHERE (a.range * b.range) % 7 = 3",
    # What the second held-out probe grew past DuckDB's memory limit and its interrupt in process.
    "printf_width_2e9": "SELECT length(printf('%2000000000d', 1))",
    "replace_growth": "SELECT length(replace(repeat('x', 16000000), 'x', repeat('y', 200)))",
    "concat_60_repeats": "SELECT length(" + " || ".join(["repeat('x', 16000000)"] * 60) + ")",
    # The eighth probe: one row of 1,000 long values (300 MB per turn before values shared the
    # byte budget), and 150 lists of 50,000 decimals (their conversion held the child's GIL).
    "wide_1000_columns": "WITH t AS (SELECT repeat('x', 99990) AS s) SELECT "
    + ", ".join(f"s AS c{i}" for i in range(1000))
    + " FROM t",
    "wide_nested_decimals": "WITH t AS (SELECT repeat([1::DECIMAL(38,0)], 49960) AS l) SELECT "
    + ", ".join(f"l AS c{i}" for i in range(150))
    + " FROM t",
}

# Simple questions the model writes SQL for (the tool's third model call).
GENERATED = (
    "SELECT COUNT(*) AS order_lines FROM gold.fact_sales WHERE store_key = {k}",
    "SELECT SUM(net_amount) AS revenue FROM gold.fact_sales WHERE product_key = {k}",
    "SELECT d.year, COUNT(DISTINCT f.order_id) AS orders FROM gold.fact_sales AS f "
    "JOIN gold.dim_date AS d ON d.date_key = f.date_key WHERE f.customer_key = {k} GROUP BY d.year",
)

NORMAL_TENANTS, NORMAL_USERS = 10, 5
HEAVY_TENANTS, HEAVY_USERS = 5, 2
TURN_TIMEOUT_S = 300


# --- turns -------------------------------------------------------------------------------------


def verified_questions() -> list[str]:
    from loom.prompts import load_verified_queries

    return [q["question"] for q in load_verified_queries("sales")]


def normal_turns(callers: Callers, n: int, seed: int) -> list[Turn]:
    """Two in three a verified question, one in three a generated query; spread over the normal
    tenants and users."""
    rng, verified = random.Random(seed), verified_questions()
    turns = []
    for i in range(n):
        if i % 3 == 2:
            question = "SQL: " + rng.choice(GENERATED).format(k=rng.randint(1, 20))
        else:
            question = verified[i % len(verified)]
        caller = callers.caller("normal", i % NORMAL_TENANTS, (i // NORMAL_TENANTS) % NORMAL_USERS)
        turns.append(Turn("normal", question, caller))
    return turns


def heavy_turns(callers: Callers, n: int) -> list[Turn]:
    """Each attack in turn, each from every attacking tenant and both of its users."""
    names = list(HEAVY)
    turns = []
    for j in range(n):
        name = names[j % len(names)]
        caller = callers.caller("attacker", (j // len(names)) % HEAVY_TENANTS, (j // 25) % HEAVY_USERS)
        turns.append(Turn(name, f"SQL: {HEAVY[name]}", caller))
    return turns


# --- figures -----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def codes(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(Counter(o.code for o in outcomes).most_common())


def samples(outcomes: list[Outcome]) -> dict[str, str]:
    """One message for each way a turn failed (what the user or the model read)."""
    return {o.code: o.detail for o in reversed(outcomes) if not o.ok}


def answered(outcomes: list[Outcome]) -> int:
    return sum(1 for o in outcomes if o.ok)


def not_ok(outcomes: list[Outcome]) -> dict[str, int]:
    return {code: n for code, n in codes(outcomes).items() if not code.startswith("ok")}


def latency(outcomes: list[Outcome]) -> dict[str, float]:
    ms = [o.ms for o in outcomes]
    return {"p50_ms": statistics.median(ms), "p99_ms": pct(ms, 0.99), "max_ms": max(ms)}


# --- A: heavy queries among normal turns -------------------------------------------------------


@dataclass
class Phase:
    outcomes: list[Outcome]
    wall_s: float
    peak_rss: int
    peak_parts: list[ProcessMemory]
    hwm: int
    samples: int
    stopped_server: str | None
    idle_wait_s: float


async def phase(server: LoomServe, rss: RssSampler, turns: list[Turn]) -> Phase:
    rss.reset()
    outcomes, wall = await run_all(server.url, turns, TURN_TIMEOUT_S)
    hwm = rss.hwm()
    idle = await asyncio.to_thread(server.wait_idle)  # queries that outlive their turns count too
    peak, hwm = max(rss.peak, rss.rss()), max(hwm, rss.hwm())
    return Phase(outcomes, wall, peak, rss.peak_parts, hwm, rss.samples, rss.stopped_server, idle)


def round_row(base: Phase, mixed: Phase) -> dict[str, Any]:
    normal = [o for o in mixed.outcomes if o.turn.kind == "normal"]
    heavy = [o for o in mixed.outcomes if o.turn.kind != "normal"]
    b, m = latency(base.outcomes), latency(normal)
    return {
        "baseline": b
        | {"errors": not_ok(base.outcomes), "wall_s": base.wall_s, "ok": answered(base.outcomes)},
        "mixed_normal": m | {"errors": not_ok(normal), "wall_s": mixed.wall_s, "ok": answered(normal)},
        "ratio_p50": m["p50_ms"] / b["p50_ms"],
        "ratio_p99": m["p99_ms"] / b["p99_ms"],
        "heavy": {name: codes([o for o in heavy if o.turn.kind == name]) for name in HEAVY},
        "heavy_s": {name: [round(o.ms / 1000, 1) for o in heavy if o.turn.kind == name] for name in HEAVY},
        "rss_gib": {
            "baseline_peak": base.peak_rss / GIB,
            "baseline_hwm": base.hwm / GIB,
            "mixed_peak": mixed.peak_rss / GIB,
            "mixed_hwm": mixed.hwm / GIB,
            "samples": mixed.samples,
            "mixed_peak_pss": sum(p.pss for p in mixed.peak_parts) / GIB,
            "mixed_peak_parts": [
                {"pid": p.pid, "role": p.role, "rss_gib": p.rss / GIB, "pss_gib": p.pss / GIB}
                for p in sorted(mixed.peak_parts, key=lambda p: -p.rss)
            ],
        },
        "error_samples": samples(base.outcomes + mixed.outcomes),
        "server_stopped_by_safety": mixed.stopped_server or base.stopped_server,
        "idle_wait_after_mixed_s": mixed.idle_wait_s,
        "turns": [record(o) for o in mixed.outcomes],
    }


def record(o: Outcome) -> dict[str, Any]:
    return {"kind": o.turn.kind, "tenant": o.turn.caller.tenant, "code": o.code, "ms": round(o.ms, 1)}


async def after_check(server: LoomServe, callers: Callers) -> dict[str, Any]:
    """The server after the load: ready, and answering a verified question."""
    async with client_for(1, 60) as client:
        ready = (await client.get(f"{server.url}/readyz")).status_code
        turn = Turn("normal", verified_questions()[0], callers.caller("normal", 0, 0))
        answered = await chat(client, server.url, turn)
    return {"readyz": ready, "verified_turn": answered.code, "verified_turn_ms": answered.ms}


def alone_line(name: str, seen: dict[str, Any]) -> str:
    took, peak = seen["s"], seen["peak_rss_gib"]
    return f"  alone: {name:<20} {seen['code']:<28} {took:6.1f} s   peak RSS {peak:5.2f} GiB"


async def solo(server: LoomServe, rss: RssSampler, callers: Callers) -> dict[str, dict[str, Any]]:
    """Each heavy query by itself on the idle server: how it ends, how long, the server's peak RSS."""
    found = {}
    for name, sql in HEAVY.items():
        turn = Turn(name, f"SQL: {sql}", callers.caller("attacker", 0, 0))
        ran = await phase(server, rss, [turn])
        o = ran.outcomes[0]
        found[name] = {"code": o.code, "s": o.ms / 1000, "peak_rss_gib": ran.peak_rss / GIB}
        print(
            f"  alone: {name:<20} {o.code:<28} {o.ms / 1000:6.1f} s   peak RSS {ran.peak_rss / GIB:5.2f} GiB"
        )
        if not server.alive():
            print(f"  the server is gone ({ran.stopped_server or 'it died'}); restarting it", flush=True)
            server.start()
    return found


async def part_a(
    server: LoomServe, rss: RssSampler, callers: Callers, args: argparse.Namespace
) -> dict[str, Any]:
    await run_all(server.url, normal_turns(callers, 20, seed=0), TURN_TIMEOUT_S)  # warm-up
    await asyncio.to_thread(server.wait_idle)
    idle_rss = rss.rss()
    alone = await solo(server, rss, callers) if args.solo else {}
    rows = []
    for r in range(args.rounds):
        normal = normal_turns(callers, args.normal, seed=r)
        mixed = normal + heavy_turns(callers, args.heavy)
        random.Random(r).shuffle(mixed)
        base = await phase(server, rss, normal)
        both = await phase(server, rss, mixed)
        row = round_row(base, both)
        rows.append(row)
        print_round(r + 1, args.rounds, row)
        if not server.alive():
            print(f"  the server is gone ({both.stopped_server or 'it died'}); restarting it", flush=True)
            server.start()
    after = await after_check(server, callers) | {"server_log_errors": log_errors(server.home)}
    return {"idle_rss_gib": idle_rss / GIB, "alone": alone, "rounds": rows, "after": after}


def log_errors(home: Path) -> dict[str, int]:
    """ERROR and CRITICAL lines in the server's logs, by logger (`ERROR loom.engines…: …`)."""
    found: Counter[str] = Counter()
    for log in sorted(home.glob("serve-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            words = [w.rstrip(":") for w in line.split()[:5]] + ["?"]
            levels = [i for i, w in enumerate(words[:4]) if w in ("ERROR", "CRITICAL")]
            if levels:
                found[f"{words[levels[0]]} {words[levels[0] + 1]}"] += 1
    return dict(found.most_common())


def print_round(r: int, rounds: int, row: dict[str, Any]) -> None:
    b, m, mem = row["baseline"], row["mixed_normal"], row["rss_gib"]
    print(
        f"round {r}/{rounds}: normal p50 {b['p50_ms']:.0f} → {m['p50_ms']:.0f} ms "
        f"({row['ratio_p50']:.2f}×), p99 {b['p99_ms']:.0f} → {m['p99_ms']:.0f} ms ({row['ratio_p99']:.2f}×); "
        f"normal errors alone {b['errors'] or 0}, with heavy {m['errors'] or 0}; "
        f"peak RSS {mem['baseline_peak']:.2f} → {mem['mixed_peak']:.2f} GiB (HWM {mem['mixed_hwm']:.2f}); "
        f"wall {b['wall_s']:.1f} / {m['wall_s']:.1f} s",
        flush=True,
    )
    print(f"  heavy: {json.dumps(row['heavy'])}", flush=True)
    for code, detail in row["error_samples"].items():
        print(f"  {code}: {detail[:200]}", flush=True)


# --- B: kill -9 under load ---------------------------------------------------------------------


async def read_back(server: LoomServe, announced: list[Outcome]) -> Counter[str]:
    """Each announced conversation, read as its caller after the restart."""
    found: Counter[str] = Counter()
    gate = asyncio.Semaphore(32)

    async def one(client: httpx.AsyncClient, o: Outcome) -> None:
        url = f"{server.url}/v1/conversations/{o.thread_id}"
        while True:
            async with gate:
                r = await client.get(url, headers=o.turn.caller.headers)
            if r.status_code != 429:  # a tenant reads two pages at once; the others wait their turn
                break
            await asyncio.sleep(0.05)
        if r.status_code == 404:
            found["missing"] += 1
            return
        r.raise_for_status()
        users = [m for m in r.json()["messages"] if m["role"] == "user"]
        found["present"] += 1
        found[
            "with_user_message" if any(m["content"] == o.turn.question for m in users) else "no_user_message"
        ] += 1

    async with client_for(32, 60) as client:
        await asyncio.gather(*(one(client, o) for o in announced))
    return found


async def kill_run(
    seeded: Path, tmp: Path, model_url: str, callers: Callers, settings: dict[str, str], at_s: float, n: int
) -> dict[str, Any]:
    home = tmp / f"kill-{at_s:g}"
    shutil.copytree(seeded, home)
    server = LoomServe(home, model_url, callers, settings, code_root())
    server.start()
    try:
        await run_all(server.url, normal_turns(callers, 4, seed=99), 60)  # warm: the engine is loaded
        turns = normal_turns(callers, n, seed=int(at_s * 10))
        load = asyncio.ensure_future(run_all(server.url, turns, 120))
        await asyncio.sleep(at_s)
        server.kill9()
        outcomes, _ = await load
        restart_s = server.start()
        announced = [o for o in outcomes if o.thread_id]
        found = await read_back(server, announced)
    finally:
        server.stop()
    return {
        "kill_at_s": at_s,
        "turns_sent": n,
        "turns_announced": len(announced),
        "turns_finished_before_kill": sum(1 for o in outcomes if o.finished),
        "first_announced_s": min((o.announced_ms / 1000 for o in announced if o.announced_ms), default=None),
        "announced_missing_after_restart": found["missing"],
        "announced_present": found["present"],
        "present_with_user_message": found["with_user_message"],
        "present_without_user_message": found["no_user_message"],
        "client_outcomes": codes(outcomes),
        "restart_s": restart_s,
    }


async def part_b(
    seeded: Path, tmp: Path, model_url: str, callers: Callers, args: argparse.Namespace
) -> list[dict[str, Any]]:
    runs = []
    for at_s in args.kill_at:
        run = await kill_run(seeded, tmp, model_url, callers, settings_of(args), at_s, args.kill_turns)
        runs.append(run)
        print(
            f"kill -9 at {at_s:g} s into {run['turns_sent']} turns: {run['turns_announced']} announced "
            f"(RUN_STARTED received), {run['turns_finished_before_kill']} finished; after restart "
            f"{run['announced_missing_after_restart']} announced missing, "
            f"{run['present_with_user_message']} with the user's message, "
            f"{run['present_without_user_message']} without",
            flush=True,
        )
    return runs


# --- the report --------------------------------------------------------------------------------


def _med(rows: list[dict[str, Any]], *path: str) -> float:
    values = []
    for row in rows:
        value: Any = row
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


def _summed(rows: list[dict[str, Any]], *path: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for row in rows:
        value: Any = row
        for key in path:
            value = value[key]
        total.update(value)
    return dict(total.most_common())


def _line(label: str, alone: float, loaded: float, fmt: str, ratio: float | None = None) -> str:
    shown = f"{ratio:>7.2f}×" if ratio is not None else ""
    return f"  {label:<36} {alone:>14{fmt}} {loaded:>14{fmt}} {shown}"


def print_a(a: dict[str, Any]) -> None:
    rows = a["rounds"]

    def med(*path: str) -> float:
        return _med(rows, *path)

    print("\nA. heavy queries among normal turns")
    for name, seen in a["alone"].items():
        print(alone_line(name, seen))
    print(f"  with normal turns: medians of {len(rows)} rounds")
    print(f"  {'figure':<36} {'normal alone':>14} {'with heavy':>14} {'ratio':>8}")
    for label, key in (("p50", "p50_ms"), ("p99", "p99_ms")):
        alone, loaded = med("baseline", key), med("mixed_normal", key)
        print(_line(f"normal turn {label} (ms)", alone, loaded, ".0f", med(f"ratio_{label}")))
    print(_line("normal turn max (ms)", med("baseline", "max_ms"), med("mixed_normal", "max_ms"), ".0f"))
    mem = ("rss_gib",)
    print(_line("server peak RSS, sampled (GiB)", med(*mem, "baseline_peak"), med(*mem, "mixed_peak"), ".2f"))
    print(_line("server VmHWM (GiB)", med(*mem, "baseline_hwm"), med(*mem, "mixed_hwm"), ".2f"))
    by_round = {k: [round(r[k], 2) for r in rows] for k in ("ratio_p50", "ratio_p99")}
    print(f"  ratios by round: {by_round}")
    peaks = [round(r["rss_gib"]["mixed_peak"], 2) for r in rows]
    print(f"  peak RSS by round (GiB): {peaks}; idle after warm-up {a['idle_rss_gib']:.2f}")
    for i, r in enumerate(rows, 1):
        print(f"  round {i} at its peak: PSS {r['rss_gib']['mixed_peak_pss']:.2f} GiB; {peak_parts(r)}")
    n = sum(len([t for t in r["turns"] if t["kind"] == "normal"]) for r in rows)
    ok = {k: sum(r[k]["ok"] for r in rows) for k in ("baseline", "mixed_normal")}
    print(f"  normal turns answered in all: alone {ok['baseline']}/{n}, with heavy {ok['mixed_normal']}/{n}")
    errors = {
        "alone": _summed(rows, "baseline", "errors"),
        "with heavy": _summed(rows, "mixed_normal", "errors"),
    }
    print(f"  normal turns not answered, by code: {errors}")
    for name in HEAVY:
        took = sorted(t for r in rows for t in r["heavy_s"][name])
        spread = f"{took[0]:.1f}–{took[-1]:.1f} s" if took else "-"
        print(f"  heavy {name:<20} all rounds: {_summed(rows, 'heavy', name)}, {spread}")
    stopped = [r["server_stopped_by_safety"] for r in rows if r["server_stopped_by_safety"]]
    print(f"  server stopped by the safety cap: {stopped or 'never'}; after the load: {a['after']}")


def peak_parts(row: dict[str, Any]) -> str:
    """The processes at the round's peak sample, largest first: `role rss/pss` in GiB."""
    parts = row["rss_gib"]["mixed_peak_parts"]
    shown = ", ".join(f"{p['role']} {p['rss_gib']:.2f}/{p['pss_gib']:.2f}" for p in parts[:6])
    return f"{len(parts)} processes (RSS/PSS): {shown}"


def print_b(runs: list[dict[str, Any]]) -> None:
    print("\nB. kill -9 under load")
    head = ("kill at", "sent", "announced", "1st ann.", "finished", "missing", "with msg", "no msg")
    print("  " + " ".join(f"{h:>10}" for h in head))
    for r in runs:
        first = f"{r['first_announced_s']:.1f} s" if r["first_announced_s"] is not None else "-"
        cells = [f"{r['kill_at_s']:g} s", r["turns_sent"], r["turns_announced"], first]
        cells += [r["turns_finished_before_kill"], r["announced_missing_after_restart"]]
        cells += [r["present_with_user_message"], r["present_without_user_message"]]
        print("  " + " ".join(f"{c:>10}" for c in cells))


# --- main --------------------------------------------------------------------------------------


def code_root() -> Path:
    """The folder holding the `loom` this process imports: the server runs the same code."""
    return Path(loom.__file__).resolve().parents[1]


def settings_of(args: argparse.Namespace) -> dict[str, str]:
    extra = dict(item.split("=", 1) for item in args.setting)
    return DEPLOYMENT | extra


def write_sources(home: Path) -> None:
    """Entra mode: the sample lakehouse as a sources-file source open to every tenant used here
    (a sample without a file answers only the server's own tenant)."""
    from loom.engines.sources import DuckDBSource

    source: dict[str, Any] = {"name": "sales", "location": "lakehouse", "description": "Sample retail sales"}
    source["instructions"] = "Prefer the gold layer. Revenue is fact_sales.net_amount."
    from loom.prompts import load_verified_queries

    source["verified_queries"] = load_verified_queries("sales")
    for name, value in (("allow", ["*"]), ("tenants", ["*"])):
        if name in DuckDBSource.model_fields:
            source[name] = value
    (home / "sources.yaml").write_text(yaml.safe_dump({"sources": [source]}, sort_keys=False))


def make_callers(mode: str) -> Callers:
    if mode == "dev":
        return DevCallers()
    return EntraCallers({"normal": NORMAL_TENANTS, "attacker": HEAVY_TENANTS})


@contextmanager
def scripted_model() -> Iterator[ScriptedModel]:
    model = ScriptedModel()
    # Its uvicorn would print a traceback for each model call a killed server cut off (set after the
    # server's config, which sets this logger's level).
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    model.start()
    try:
        yield model
    finally:
        model.stop()


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from loom.lakehouse.seed import seed_lakehouse

    seeded = tmp / "seeded"
    seed_lakehouse(seeded / "lakehouse", orders=args.orders)
    callers = make_callers(args.auth)
    if callers.mode == "entra":
        write_sources(seeded)
    print_settings(args, callers)
    report: dict[str, Any] = {"settings": settings_of(args), "auth": callers.describe(), "args": vars(args)}
    try:
        with scripted_model() as model:
            if not args.skip_a:
                report["a"] = await run_a(seeded, tmp, model, callers, args)
                print_a(report["a"])
            if not args.skip_b:
                report["b"] = await part_b(seeded, tmp, model.base_url, callers, args)
                print_b(report["b"])
            report["model_calls"] = model.calls
    finally:
        callers.close()
    return report


async def run_a(
    seeded: Path, tmp: Path, model: ScriptedModel, callers: Callers, args: argparse.Namespace
) -> dict[str, Any]:
    home = tmp / "load"
    shutil.copytree(seeded, home)
    server = LoomServe(home, model.base_url, callers, settings_of(args), code_root())
    print(f"A: loom serve started in {server.start():.1f} s (pid {server.pid})", flush=True)
    cap, floor = int(args.rss_cap_gib * GIB), int(args.min_available_gib * GIB)
    rss = RssSampler(lambda: server.pid if server.alive() else None, cap=cap, floor=floor).start()
    try:
        return await part_a(server, rss, callers, args)
    finally:
        rss.close()
        server.stop()


def print_settings(args: argparse.Namespace, callers: Callers) -> None:
    print("loom serve settings:")
    for name, value in settings_of(args).items():
        print(f"  {name}={value}")
    print(f"callers: {callers.describe()}")
    print(
        f"A: {args.rounds} rounds of {args.normal} normal turns alone, then with {args.heavy} heavy "
        f"({', '.join(HEAVY)}), all at once; B: {args.kill_turns} turns, kill -9 at {args.kill_at} s",
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 75+25 turns, one kill at 2.5 s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--normal", type=int, default=150, help="normal turns per round")
    parser.add_argument("--heavy", type=int, default=50, help="heavy turns per round (with the normal ones)")
    parser.add_argument("--kill-turns", type=int, default=500)
    parser.add_argument(
        "--kill-at",
        type=float,
        nargs="+",
        default=[1.5, 2.5, 4.0, 10.0],
        metavar="S",
        help="the issue's 1.5, 2.5 and 4 s, and 10 s: on a loaded machine the first RUN_STARTED of 500 "
        "turns can come after 2.5 s",
    )
    parser.add_argument("--auth", choices=["entra", "dev"], default="entra")
    parser.add_argument("--orders", type=int, default=20000, help="orders in the sample lakehouse")
    parser.add_argument("--setting", action="append", default=[], metavar="LOOM_X=V", help="override one")
    parser.add_argument("--rss-cap-gib", type=float, default=18, help="SIGKILL the server past this RSS")
    parser.add_argument("--min-available-gib", type=float, default=2, help="… or when the machine has less")
    parser.add_argument("--solo", action="store_true", help="first run each heavy query alone (~1 min)")
    parser.add_argument("--skip-a", action="store_true")
    parser.add_argument("--skip-b", action="store_true")
    parser.add_argument(
        "--attacks", nargs="+", choices=list(HEAVY), default=list(HEAVY), help="the heavy queries to send"
    )
    parser.add_argument("--json", type=Path, help="also write the whole report here")
    parser.add_argument("--keep", action="store_true", help="keep the homes and server logs")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.normal, args.heavy, args.kill_at = 1, 75, 25, [2.5]
    for name in set(HEAVY) - set(args.attacks):  # the one table every part reads
        del HEAVY[name]
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    if args.keep:
        tmp = tempfile.mkdtemp(prefix="loom-hardening-")
        print(f"keeping the homes and server logs in {tmp}")
        report = asyncio.run(run(args, Path(tmp)))
    else:
        with tempfile.TemporaryDirectory(prefix="loom-hardening-") as tmp:
            report = asyncio.run(run(args, Path(tmp)))
    report["wall_s"] = time.perf_counter() - started
    print(f"\ntotal {report['wall_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
