"""The limits on reading conversation pages: places at once, byte rates, heavy and light readers."""

from __future__ import annotations

import pytest

from loom.api.page_limits import MIB, ByteRate, PageReaders, Places
from loom.api.schemas import ApiError
from loom.identity import Principal

ALICE, CAROL, DAVE = (Principal(tenant_id="t1", user_id=u) for u in ("alice", "carol", "dave"))
BOB = Principal(tenant_id="t2", user_id="bob")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def readers(clock: Clock, places: Places | None = None, *, tenant: int = 4, total: int = 10) -> PageReaders:
    """Recent reading: 8 MiB, refilled 64 KiB/s; the tenant `tenant` MiB/s after twice that; the
    process `total` MiB/s after 12 MiB."""
    return PageReaders(
        places or Places(),
        recent=ByteRate(per_s=64 * 1024, burst=8 * MIB, clock=clock),
        tenant_rate=ByteRate(per_s=tenant * MIB, burst=2 * tenant * MIB, clock=clock),
        total_rate=ByteRate(per_s=total * MIB, burst=12 * MIB, clock=clock),
    )


def read(limits: PageReaders, who: Principal, size: int) -> None:
    limits.take(who).release()
    limits.charge(who, size)


def refused(limits: PageReaders, who: Principal, match: str) -> ApiError:
    with pytest.raises(ApiError, match=match) as caught:
        limits.take(who)
    assert caught.value.status_code == 429 and caught.value.code == "too_many_reads"
    return caught.value


def test_pages_read_at_once_are_bounded_per_user_and_for_heavy_readers_per_tenant() -> None:
    # Probe 12 (R12-4): 40 GET loops of one user held another tenant's turn reads for 22 s.
    # Probe 13 (R13-2): eight users of one tenant, two loops each, still did (GETs 0.06 -> 1.1 s).
    clock = Clock()
    limits = readers(clock, Places(per_user=2, per_tenant=3, per_process=5))
    limits.charge(ALICE, 5 * MIB)  # alice has been reading: a heavy reader
    first, second = limits.take(ALICE), limits.take(ALICE)
    refused(limits, ALICE, "at most 2 conversation reads at a time per user")
    carols = limits.take(CAROL)  # a colleague reads meanwhile: the tenant's third
    limits.charge(DAVE, 5 * MIB)
    refused(limits, DAVE, "at most 3 conversation reads at a time per tenant")  # heavy: waits
    light = limits.take(Principal(tenant_id="t1", user_id="erin"))  # light: read little, served
    bobs = limits.take(BOB)  # another tenant reads meanwhile: the fifth page in flight
    frank = Principal(tenant_id="t3", user_id="frank")
    limits.charge(frank, 5 * MIB)
    refused(limits, frank, "the server is sending 5 conversation pages")  # heavy: the process's cap
    gina = limits.take(Principal(tenant_id="t3", user_id="gina"))  # light: past it (probe 19: R19-2)
    for slot in (first, second, carols, carols, light, bobs, gina):  # a place is freed once, however released
        slot.release()
    clock.now = 2.0  # the tenant's rate refilled (dave's 5 MiB put it into debt)
    mine = limits.take(ALICE)  # and alice again, once hers ended
    assert dict(limits.reading) == {("t1", "alice"): 1, ("t1",): 1, (): 1}
    mine.release()
    assert not limits.reading


def test_a_tenant_reading_faster_than_its_rate_waits_and_other_tenants_read_on() -> None:
    # Probe 16 (R16-6): with pages in flight capped, eight users of one tenant looping GETs still
    # slowed another tenant's turns 0.24 -> 3.96 s: the bytes read per second are what costs.
    clock = Clock()
    limits = readers(clock)
    for _ in range(3):  # 3 pages of 3 MiB: the first two fit the tenant's burst, the third goes into debt
        read(limits, ALICE, 3 * MIB)
    error = refused(limits, ALICE, "your organisation has read conversations faster than 4 MiB")
    assert error.headers == {"Retry-After": "1"}
    read(limits, BOB, 5 * MIB)  # another tenant reads on; the server's burst is spent (14 of 12 MiB)
    refused(limits, BOB, "the server is reading conversations faster than 10 MiB")
    # Probe 17 (R17-1): a tenant that has read little is not refused for the others' reading.
    read(limits, Principal(tenant_id="t3", user_id="carol"), 1 * MIB)
    clock.now = 0.5  # refilled: the server by 5 MiB, alice's tenant by 2 MiB, bob's by 2 MiB
    read(limits, ALICE, 1)
    read(limits, BOB, 1)


def test_one_user_looping_pages_does_not_stop_the_rest_of_the_tenant_reading() -> None:
    # Most deployments are one Entra tenant: when the tenant's rate refused all its users, a few
    # looping users stopped every other user's GETs (140 of 140 refused, page_flood --same-tenant).
    clock = Clock()
    limits = readers(clock)
    for _ in range(3):
        read(limits, ALICE, 3 * MIB)  # the tenant's 8 MiB spent, 9 of the server's 12
    refused(limits, ALICE, "your organisation has read conversations faster than 4 MiB")
    for colleague in (CAROL, DAVE):  # read little lately: served, tenant and server rates spent or not
        read(limits, colleague, 200 * 1024)
    read(limits, CAROL, 3 * MIB)
    read(limits, CAROL, 1 * MIB)  # past half of her recent 8 MiB: a heavy reader now
    refused(limits, CAROL, "your organisation has read conversations faster than 4 MiB")


def test_a_looping_user_does_not_turn_light_by_pausing_a_moment() -> None:
    clock = Clock()
    limits = readers(clock)
    for _ in range(3):
        read(limits, ALICE, 3 * MIB)
    refused(limits, ALICE, "your organisation")
    clock.now = 5.0  # the tenant's rate has refilled; alice's recent reading has not
    for _ in range(3):
        read(limits, ALICE, 3 * MIB)
    refused(limits, ALICE, "your organisation")  # still heavy: the tenant's rate applies to her
    clock.now = 5.0 + 400  # minutes later (18 MiB read, 64 KiB a second back) she reads little again
    assert limits.recent.mostly_full("t1\x00alice")


def test_byte_rate_goes_into_debt_and_says_when_it_has_refilled() -> None:
    clock = Clock()
    rate = ByteRate(per_s=MIB, burst=2 * MIB, clock=clock)
    assert rate.wait_s("k") == 0 and rate.mostly_full("k")
    rate.spend("k", 5 * MIB)  # 3 MiB of debt
    assert rate.wait_s("k") == pytest.approx(3 + 1 / MIB)
    clock.now = 3.5
    assert rate.wait_s("k") == 0 and not rate.mostly_full("k")
    clock.now = 10
    assert rate.mostly_full("k") and rate.describe() == "1 MiB a second"
