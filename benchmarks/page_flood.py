"""What a tenant looping conversation pages costs another tenant's users (probe 17: R17-1).

`loom serve` in its own process (Entra mode, tokens minted here, the scripted model of
`hardening_load`). An innocent tenant's users each loop: one chat turn (a verified question), then
a GET of their conversation. First alone for `--seconds`, then with an attacker tenant's users
looping GETs of their ~3.6 MB conversation pages as fast as the server answers (two loops each,
ignoring Retry-After, as an attacker would). Printed: the innocents' turn and GET latencies
(p50/p90) alone and under the flood, their ratio, the attacker's pages served and refusals, and the
server's CPU. Medians over `--rounds`.

Run: `python -m benchmarks.page_flood [--rounds 3 --seconds 40 --users 8]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.hardening_load import code_root, scripted_model, verified_questions, write_sources
from benchmarks.load_harness import Caller, EntraCallers, LoomServe, Turn, chat, client_for
from benchmarks.page_cost import conversation
from loom.agent.sqlite_store import SqliteConversationStore
from loom.identity import Principal


@dataclass
class Seen:
    turns: list[float] = field(default_factory=list)
    gets: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    page_bytes: int = 0


async def seed_attackers(
    home: Path, callers: EntraCallers, users: int, same_tenant: bool
) -> dict[Caller, str]:
    """Each attacker user gets one conversation whose newest page is ~3.6 MB (page_cost's); the
    attackers are another tenant's users, or (`same_tenant`) other users of the innocents' tenant."""
    store = SqliteConversationStore(home / "loom.db")
    made: dict[Caller, str] = {}
    try:
        for user in range(users):
            caller = (
                callers.caller("normal", 0, 1000 + user)
                if same_tenant
                else callers.caller("attacker", 0, user)
            )
            principal = Principal(tenant_id=caller.tenant.lower(), user_id=caller.user, roles=("Loom.User",))
            made[caller] = await conversation(store, principal)
    finally:
        await store.close()
    return made


async def innocent(
    client: httpx.AsyncClient, url: str, caller: Caller, until: float, think_s: float, seen: Seen
) -> None:
    questions = verified_questions()
    n = 0
    while time.monotonic() < until:
        await asyncio.sleep(think_s)
        out = await chat(client, url, Turn("normal", questions[n % len(questions)], caller))
        n += 1
        seen.codes[f"turn:{out.code}"] += 1
        if not out.ok or out.thread_id is None:
            continue
        seen.turns.append(out.ms / 1000)
        started = time.perf_counter()
        r = await client.get(f"{url}/v1/conversations/{out.thread_id}", headers=caller.headers)
        seen.codes[f"get:{r.status_code}"] += 1
        if r.status_code == 200:
            seen.gets.append(time.perf_counter() - started)


async def attacker(
    client: httpx.AsyncClient, url: str, caller: Caller, cid: str, until: float, seen: Seen
) -> None:
    while time.monotonic() < until:
        try:
            r = await client.get(f"{url}/v1/conversations/{cid}", headers=caller.headers)
        except httpx.HTTPError as e:
            seen.codes[f"page:{type(e).__name__}"] += 1
            continue
        seen.codes[f"page:{r.status_code}"] += 1
        seen.page_bytes += len(r.content) if r.status_code == 200 else 0


async def attack(spec: dict[str, Any]) -> Seen:
    """The attackers' loops (run in a process of their own, so the innocents' client does not
    throttle them): two per conversation in `spec`, until `spec["seconds"]` have passed."""
    bad, until = Seen(), time.monotonic() + spec["seconds"]
    async with client_for(len(spec["pages"]) * 2, 120) as client:
        await asyncio.gather(
            *(
                attacker(client, spec["url"], Caller("", "", headers), cid, until, bad)
                for headers, cid in spec["pages"]
                for _ in range(2)
            )
        )
    return bad


async def phase(
    server: LoomServe, callers: EntraCallers, args: argparse.Namespace, pages: dict[Caller, str] | None
) -> tuple[Seen, Seen, float]:
    """Innocents (and attackers when `pages`) for `args.seconds`: what each saw, the server's CPU s."""
    good, bad = Seen(), Seen()
    cpu, until = server.cpu_seconds(), time.monotonic() + args.seconds
    flood = None
    if pages:
        spec = {
            "url": server.url,
            "seconds": args.seconds,
            "pages": [(c.headers, i) for c, i in pages.items()],
        }
        flood = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.page_flood",
            "--attack",
            json.dumps(spec),
            stdout=asyncio.subprocess.PIPE,
            cwd=code_root(),
        )
    async with client_for(args.users * 2, 120) as client:
        jobs = [
            innocent(client, server.url, callers.caller("normal", 0, u), until, args.think, good)
            for u in range(args.users)
        ]
        await asyncio.gather(*jobs)
    if flood is not None:
        out, _ = await flood.communicate()
        seen = json.loads(out)
        bad.codes, bad.page_bytes = Counter(seen["codes"]), seen["page_bytes"]
    return good, bad, server.cpu_seconds() - cpu


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(alone: Seen, flood: Seen, bad: Seen, cpu: tuple[float, float]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name in ("turns", "gets"):
        for q in (0.5, 0.9):
            a, f = pct(getattr(alone, name), q), pct(getattr(flood, name), q)
            figures[f"{name}_p{int(q * 100)}"] = (a, f, f / a)
    figures["innocent_codes"] = (dict(alone.codes), dict(flood.codes))
    figures["attacker"] = {**dict(bad.codes), "MiB": round(bad.page_bytes / 2**20, 1)}
    figures["server_cpu_s"] = cpu
    return figures


def print_row(r: int, figures: dict[str, Any]) -> None:
    print(f"round {r}:")
    for name, value in figures.items():
        if isinstance(value, tuple) and len(value) == 3:
            print(f"  {name:10} alone {value[0]:.3f} s  flood {value[1]:.3f} s  ×{value[2]:.2f}")
        else:
            print(f"  {name:10} {value}")


async def run(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from loom.lakehouse.seed import seed_lakehouse

    seeded = tmp / "seeded"
    seed_lakehouse(seeded / "lakehouse", orders=2000)
    callers = EntraCallers({"normal": 1, "attacker": 1})
    write_sources(seeded)
    pages = await seed_attackers(seeded, callers, args.attackers, args.same_tenant)
    rows = []
    try:
        with scripted_model() as model:
            for r in range(1, args.rounds + 1):
                home = tmp / f"round-{r}"
                shutil.copytree(seeded, home)
                server = LoomServe(home, model.base_url, callers, {}, code_root())
                server.start()
                try:
                    await phase(server, callers, argparse.Namespace(**{**vars(args), "seconds": 3}), None)
                    alone, _, cpu_a = await phase(server, callers, args, None)
                    flood, bad, cpu_f = await phase(server, callers, args, pages)
                finally:
                    server.stop()
                rows.append(row(alone, flood, bad, (round(cpu_a, 1), round(cpu_f, 1))))
                print_row(r, rows[-1])
    finally:
        callers.close()
    return rows


def print_medians(rows: list[dict[str, Any]]) -> None:
    print(f"\nmedians of {len(rows)} rounds:")
    for name in ("turns_p50", "turns_p90", "gets_p50", "gets_p90"):
        a = statistics.median(r[name][0] for r in rows)
        f = statistics.median(r[name][1] for r in rows)
        ratio = statistics.median(r[name][2] for r in rows)
        print(f"  innocent {name:10} alone {a:.3f} s  flood {f:.3f} s  ratio ×{ratio:.2f}")
    served = statistics.median(r["attacker"].get("page:200", 0) for r in rows)
    refused = statistics.median(r["attacker"].get("page:429", 0) for r in rows)
    print(f"  attacker pages served {served:g}, refused {refused:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--users", type=int, default=8, help="innocent users, one loop each")
    parser.add_argument("--think", type=float, default=1.0, help="an innocent's pause between turns (s)")
    parser.add_argument("--attackers", type=int, default=8, help="attacker users, two loops each")
    parser.add_argument(
        "--same-tenant", action="store_true", help="attackers are users of the innocents' tenant"
    )
    parser.add_argument("--attack", help=argparse.SUPPRESS)  # the attackers' own process
    args = parser.parse_args()
    if args.attack:
        bad = asyncio.run(attack(json.loads(args.attack)))
        print(json.dumps({"codes": bad.codes, "page_bytes": bad.page_bytes}))
        return
    with tempfile.TemporaryDirectory(prefix="loom-page-flood-") as tmp:
        print_medians(asyncio.run(run(args, Path(tmp))))


if __name__ == "__main__":
    main()
