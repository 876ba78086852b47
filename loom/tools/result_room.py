"""How many bytes of query results the server holds at once: per turn, per tenant, per process.

One query's result is bounded (`LOOM_QUERY_MAX_BYTES`), but a turn may run many queries, and many
turns run at once: ten parallel calls of an 8 MiB query held ~165 MiB in the server for the turn's
life, and 24 such turns 4 GiB (probe 13: R13-7). What a result holds is counted, once it arrives,
against three pools — its turn's, its tenant's and the process's — until its turn ends. A query
runs with at most what is left in the tightest pool (at most its own bound; more rows are cut and
marked as for that bound), and is refused with why when that is nearly nothing.

The last quarter of a tenant's room goes only to a user whose results hold little (under a
sixteenth of it), and the last quarter of the process's only to a tenant's that hold little: one
user's four turns of 8 MiB
results filled their tenant's 64 MiB, and a colleague's one-row question was refused (probe 29:
R29-1), as the query scheduler keeps the last of its places.

Room is not reserved while a query runs: queries that return a few rows would hold a full bound
each, and 150 concurrent turns refused a third of themselves (hardening_load). What runs at once
is bounded by the query scheduler (its workers, two per user), so what results can hold before
they are counted is at most that many bounds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

MIN_ROOM = 64 * 1024  # below this a query is refused: its result would be cut to nothing


@dataclass
class _Pool:
    total: int
    held: int = 0
    closed: bool = False  # a turn's pool once the turn has ended: nothing more is counted in it

    @property
    def left(self) -> int:
        return self.total - self.held


class RoomSpent(Exception):
    """No room is left for another result; the message says whose."""


@dataclass
class ResultRoom:
    """The process's pools, shared by every turn (thread-safe: tools run on the event loop, drivers
    may not)."""

    per_turn: int
    per_tenant: int
    total: int
    _process: _Pool = field(init=False)
    _tenants: dict[str, _Pool] = field(default_factory=dict, init=False)
    _users: dict[tuple[str, str], int] = field(default_factory=dict, init=False)  # what each holds
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._process = _Pool(self.total)

    def for_turn(self, tenant: str, user: str = "") -> TurnRoom:
        return TurnRoom(self, tenant, _Pool(self.per_turn), user)

    def held(self, tenant: str | None = None) -> int:
        """What results hold now, in all or in one tenant's turns."""
        with self._lock:
            pool = self._process if tenant is None else self._tenants.get(tenant)
            return pool.held if pool is not None else 0

    def _room(self, turn: _Pool, who: tuple[str, str], most: int) -> int:
        with self._lock:
            if turn.closed:
                raise RoomSpent("this turn has ended: its queries are not run")
            tenant = self._tenants.get(who[0]) or _Pool(self.per_tenant)
            pools = (turn, tenant, self._process)
            kept = (
                0,
                self.per_tenant // 4 if self._users.get(who, 0) >= self.per_tenant // 16 else 0,
                self.total // 4 if tenant.held >= self.total // 16 else 0,
            )
            lefts = tuple(p.left - k for p, k in zip(pools, kept, strict=True))
            room = min(most, *lefts)
            if room < MIN_ROOM:
                raise RoomSpent(_why(pools, lefts, kept))
            return room

    def _hold(self, turn: _Pool, who: tuple[str, str], amount: int) -> None:
        with self._lock:
            if turn.closed:
                return  # a query that outlived its turn (the client left): its result is dropped
            for pool in (turn, self._tenants.setdefault(who[0], _Pool(self.per_tenant)), self._process):
                pool.held += amount
            self._users[who] = self._users.get(who, 0) + amount

    def _close(self, turn: _Pool, who: tuple[str, str]) -> None:
        """Give back all a turn holds, and count nothing more for it: a query still running on a
        worker thread when its turn ended settles afterwards (probe 15: R15-1, every disconnect
        during a query leaked what it returned, until each tenant and then the server refused
        every query)."""
        with self._lock:
            turn.closed = True
            amount, turn.held = turn.held, 0
            if not amount:
                return
            for pool in (self._tenants[who[0]], self._process):
                pool.held -= amount
            if not self._tenants[who[0]].held:
                del self._tenants[who[0]]
            self._users[who] -= amount
            if not self._users[who]:
                del self._users[who]


def _why(pools: tuple[_Pool, _Pool, _Pool], lefts: tuple[int, ...], kept: tuple[int, ...]) -> str:
    tightest = min(range(3), key=lambda i: lefts[i])
    whose = ("this turn's", "your organisation's", "the server's")[tightest]
    size = _size(pools[tightest].total)
    if tightest == 0:
        return (
            f"this turn's query results have reached {size}, the most one turn may hold: answer "
            "from the results so far, or ask for less (fewer columns, an aggregate) in a new message"
        )
    if kept[tightest] and pools[tightest].left >= MIN_ROOM:  # what is left is kept for others
        held = "your other questions'" if tightest == 1 else "your organisation's"
        return (
            f"{held} query results hold most of {whose} room for them ({size}), and the rest is kept "
            "for others; retry when they have ended"
        )
    return f"{whose} room for query results ({size}) is in use by other questions; retry shortly"


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


@dataclass
class TurnRoom:
    """One turn's share: `take` before a query, `settle` when its result is in, `release` at the end."""

    room: ResultRoom
    tenant: str
    pool: _Pool
    user: str = ""

    def take(self, most: int) -> int:
        """The bytes the next query may return (at most `most`); RoomSpent when none are left."""
        return self.room._room(self.pool, (self.tenant, self.user), most)

    def settle(self, taken: int, used: int | None) -> None:
        """Count what a result holds: `used` bytes (0 for a query that failed), or all it was
        allowed when the engine did not count (`used` None)."""
        held = taken if used is None else used
        if held:
            self.room._hold(self.pool, (self.tenant, self.user), held)

    def release(self) -> None:
        """The turn has ended: everything its results held goes back, and a result that arrives
        later is not counted."""
        self.room._close(self.pool, (self.tenant, self.user))
