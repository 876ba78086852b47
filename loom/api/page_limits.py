"""How much of the conversations' pages each user, tenant and the process may read, and how fast.

What a loop of page GETs costs the server is the bytes it reads, builds and sends on the one
process, however few at a time: a loop on 40 connections made another tenant's turn wait 22 s
(probe 12: R12-4), and eight users of one tenant, two loops each, still did with a cap on pages in
flight (probes 13-16). So the tenant and the process each have a rate of page bytes (`ByteRate`);
past it, reads are refused (429 with Retry-After) until it has refilled.

Those shared limits refuse only **heavy readers**: users who have read more than half their
`recent` bucket (4 MiB within the last minute or so), of tenants that have read lately. Most
deployments are one Entra tenant, so a tenant's limit is everyone's: when every user of a tenant
was refused once a few of them looped pages, one user could stop the whole agency reading its
conversations (all of 140 innocent GETs refused: `benchmarks/page_flood.py --same-tenant`). A user
who opens a conversation now and then stays light and is served, within their own two pages at once.
The `recent` bucket refills slowly so that a looping user cannot turn light again by pausing for a
moment. Pages in flight are also bounded for the process (a bound on the memory they hold).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from loom.api.schemas import ApiError
from loom.identity import Principal

MIB = 2**20


class ByteRate:
    """A token bucket of bytes per key, allowed into debt: a page is counted once built (its size
    is not known before), and its key reads nothing more until the bucket has refilled past zero."""

    def __init__(self, per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s, self.burst, self._clock = per_s, burst, clock
        self._left: dict[str, tuple[float, float]] = {}  # key → (bytes left, as of when)

    def wait_s(self, key: str) -> float:
        """Seconds until `key` may read again (0: now)."""
        left = self._now_left(key)
        return 0.0 if left > 0 else (1 - left) / self.per_s

    def mostly_full(self, key: str) -> bool:
        """Whether `key` has more than half its burst left: it has read little lately."""
        return self._now_left(key) > self.burst / 2

    def spend(self, key: str, size: int) -> None:
        self._left[key] = (self._now_left(key) - size, self._clock())
        self._forget_full()

    def describe(self) -> str:
        return f"{self.per_s / MIB:g} MiB a second"

    def _now_left(self, key: str) -> float:
        now = self._clock()
        left, at = self._left.get(key, (float(self.burst), now))
        return min(float(self.burst), left + (now - at) * self.per_s)

    def _forget_full(self) -> None:
        """Keys whose bucket is full again are dropped: the map holds only recent readers."""
        if len(self._left) > 1024:
            for key in [k for k in self._left if self._now_left(k) >= self.burst]:
                del self._left[key]


@dataclass(frozen=True)
class Places:
    """Pages being read at once: per user (always), per tenant (for heavy readers), per process (for
    heavy readers; light ones up to twice as many)."""

    per_user: int = 2
    per_tenant: int = 6
    per_process: int = 64


class PageReaders:
    """The places and byte rates of conversation reads (see the module's doc)."""

    def __init__(self, places: Places, recent: ByteRate, tenant_rate: ByteRate, total_rate: ByteRate) -> None:
        self.places = places
        self.recent, self.tenant_rate, self.total_rate = recent, tenant_rate, total_rate
        self.reading: Counter[tuple[str, ...]] = Counter()

    def take(self, principal: Principal) -> PageSlot:
        """A reading place for `principal`, or ApiError 429 with the reason and when to retry."""
        user, tenant = (principal.tenant_id, principal.user_id), (principal.tenant_id,)
        if self.reading[user] >= self.places.per_user:
            raise _busy(f"at most {self.places.per_user} conversation reads at a time per user")
        light = self.recent.mostly_full(_key(user))
        # The process's places refuse heavy readers first: 32 users leaving pages unread while
        # still light held all of them and refused everyone else (probe 19: R19-2). A light
        # reader may go past them, to twice as many.
        most = self.places.per_process * (2 if light else 1)
        if self.reading[()] >= most:
            raise _busy(f"the server is sending {self.reading[()]} conversation pages already")
        if not light:
            self._check_shared(principal.tenant_id, tenant)
        keys = (user, tenant, ())
        self.reading.update(keys)
        return PageSlot(self, keys)

    def charge(self, principal: Principal, size: int) -> None:
        """Count a page of `size` bytes against the user's, the tenant's and the process's rates."""
        self.recent.spend(_key((principal.tenant_id, principal.user_id)), size)
        self.tenant_rate.spend(principal.tenant_id, size)
        self.total_rate.spend("", size)

    def _check_shared(self, tenant_id: str, tenant: tuple[str, ...]) -> None:
        """The limits a heavy reader shares with the tenant and the server."""
        if self.reading[tenant] >= self.places.per_tenant:
            raise _busy(f"at most {self.places.per_tenant} conversation reads at a time per tenant")
        tenant_s = self.tenant_rate.wait_s(tenant_id)
        if tenant_s > 0:
            why = f"your organisation has read conversations faster than {self.tenant_rate.describe()}"
            raise _busy(why, tenant_s)
        # The server's rate refuses only tenants that have been reading lately (half their burst
        # spent): one tenant's loops must not make every tenant's page a 429 (probe 17: R17-1).
        total_s = self.total_rate.wait_s("")
        if total_s > 0 and not self.tenant_rate.mostly_full(tenant_id):
            why = f"the server is reading conversations faster than {self.total_rate.describe()}"
            raise _busy(why, total_s)

    def _free(self, keys: tuple[tuple[str, ...], ...]) -> None:
        self.reading.subtract(keys)
        self.reading += Counter()  # drop the keys that reached zero


class PageSlot:
    """One page being read; `release` frees its place (once, however often called)."""

    def __init__(self, readers: PageReaders, keys: tuple[tuple[str, ...], ...]) -> None:
        self._readers, self._keys = readers, keys

    def release(self) -> None:
        if self._keys:
            self._readers._free(self._keys)
            self._keys = ()


def _key(user: tuple[str, str]) -> str:
    return "\x00".join(user)  # tenant ids are allow-listed, without NUL: no two users share a key


def _busy(why: str, wait_s: float = 1.0) -> ApiError:
    retry = max(1, math.ceil(wait_s))
    return ApiError(429, "too_many_reads", f"{why}; retry in {retry} s", {"Retry-After": str(retry)})


def page_readers() -> PageReaders:
    """The process's limits. A tenant may read 4 MiB of pages a second (one of the largest), after a
    first 16 MiB; the process 8 MiB a second, after 32 MiB: pages are mostly a few KiB, the rates
    are for loops. A user is a heavy reader past 4 MiB read within about a minute (their `recent`
    bucket refills 64 KiB a second)."""
    return PageReaders(
        Places(),
        recent=ByteRate(per_s=64 * 1024, burst=8 * MIB),
        tenant_rate=ByteRate(per_s=4 * MIB, burst=16 * MIB),
        total_rate=ByteRate(per_s=8 * MIB, burst=32 * MIB),
    )
