"""The calling user's conversations: list, read (with messages, tool calls and results), delete."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable

import anyio.to_thread
from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from loom.agent.store import MAX_SEQ, ConversationStore, StoredText
from loom.api.deps import PrincipalDep, StoreDep
from loom.api.schemas import ApiError, ConversationDetail, ConversationList, ConversationOut, message_json
from loom.api.schemas import error_responses as errors
from loom.api.sse import STALL_S, StalledClient, stalls_after
from loom.identity import Principal

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
PAGE_BYTES = 4 * 1024 * 1024  # of messages' text and metadata in one page (one message always)
SEND_CHUNK = 64 * 1024  # a page is sent in pieces of this size


def _not_found(conversation_id: str) -> ApiError:
    # The same answer whether it never existed or belongs to someone else: existence is not leaked.
    return ApiError(404, "conversation_not_found", f"no conversation {conversation_id!r}")


@router.get("", summary="List my conversations", responses=errors(401))
async def list_conversations(
    principal: PrincipalDep,
    store: StoreDep,
    limit: int = Query(50, ge=1, le=200, description="At most this many, newest first."),
) -> ConversationList:
    found = await store.list_conversations(principal, limit=limit)
    return ConversationList(conversations=[ConversationOut.of(c) for c in found])


@router.get(
    "/{conversation_id}",
    summary="Read a conversation",
    response_model=ConversationDetail,
    responses=errors(401, 404, 429),
)
async def get_conversation(
    conversation_id: str,
    principal: PrincipalDep,
    store: StoreDep,
    limit: int = Query(100, ge=1, le=500, description="At most this many messages, the newest."),
    before: int | None = Query(
        None, ge=1, le=MAX_SEQ, description="Only messages before this `seq` (the `earlier` of a page)."
    ),
) -> Response:
    slot = _READING.take(principal)
    try:
        body = await _page(store, principal, conversation_id, limit, before)
    except BaseException:
        slot.release()
        raise
    _READING.charge(principal, len(body))
    # The slot is held until the client has read the page: released when the handler returned,
    # one user left 200 pages unread in the server's socket buffers (probe 14: R14-1).
    return _PageResponse(_sent(body, slot), media_type="application/json")


async def _page(
    store: ConversationStore, principal: Principal, conversation_id: str, limit: int, before: int | None
) -> bytes:
    conversation = await store.get_conversation(principal, conversation_id)
    if conversation is None:
        raise _not_found(conversation_id)
    # Paged and bounded in bytes: a long conversation read whole was 250 MB and held every
    # tenant's store reads behind it (probe 11: R11-5).
    messages = await store.message_texts(
        principal, conversation_id, before=before, limit=limit, max_bytes=PAGE_BYTES
    )
    earlier = messages[0].seq if messages and messages[0].seq > 1 else None
    head = ConversationOut.of(conversation).model_dump_json()
    # Written off the event loop: a page of several MiB took the loop from every other request.
    return await anyio.to_thread.run_sync(_detail_json, head, messages, earlier)


def _detail_json(head: str, messages: list[StoredText], earlier: int | None) -> bytes:
    """`ConversationDetail` as JSON, its messages written from their stored text (`message_json`)."""
    listed = ",".join(message_json(m) for m in messages)
    return f'{head[:-1]},"messages":[{listed}],"earlier":{json.dumps(earlier)}}}'.encode()


async def _sent(body: bytes, slot: _Slot) -> AsyncGenerator[bytes]:
    """The page in pieces: each is sent only once the client has taken the last (flow control), so
    the slot stays held while the page waits for a reader, and is freed if the client leaves."""
    try:
        for start in range(0, len(body), SEND_CHUNK):
            yield body[start : start + SEND_CHUNK]
    finally:
        slot.release()


class _PageResponse(StreamingResponse):
    """A page that gives up on a client that takes nothing for `STALL_S` (its place is freed)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, stalls_after(send, STALL_S))
        except StalledClient as e:
            log.warning("%s; a conversation page is given up", e)
        finally:  # Starlette stops iterating on disconnect but never closes the iterator
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


class _Readers:
    """How much each user and tenant may read at once, and how fast. A loop of GETs on 40
    connections made another tenant's turn wait 22 s (probe 12: R12-4), and eight users of one
    tenant, two loops each, still did with a cap on pages in flight (probes 13-16, last: its turns
    0.24 -> 3.96 s with pages written from stored text): what a loop costs the server is the bytes
    it reads, built and sent on the one process, however few at a time. So each tenant, and the
    process, also has a rate of page bytes (`ByteRate`): past it, reads are refused until it
    has refilled. A place is held until the page is read; two per user, six per tenant, so one
    user who leaves pages unread cannot lock out the others of the tenant (probe 15: R15-4)."""

    def __init__(self, per_user: int, per_tenant: int, tenant_rate: ByteRate, total_rate: ByteRate) -> None:
        self.per_user, self.per_tenant = per_user, per_tenant
        self.tenant_rate, self.total_rate = tenant_rate, total_rate
        self.reading: Counter[tuple[str, ...]] = Counter()

    def take(self, principal: Principal) -> _Slot:
        """A reading place for `principal`, or ApiError 429 when the user or tenant has none left,
        or the tenant or the process has read its rate of bytes lately."""
        user, tenant = (principal.tenant_id, principal.user_id), (principal.tenant_id,)
        if self.reading[user] >= self.per_user:
            raise self._busy(f"at most {self.per_user} conversation reads at a time per user")
        if self.reading[tenant] >= self.per_tenant:
            raise self._busy(f"at most {self.per_tenant} conversation reads at a time per tenant")
        self._check_rates(principal.tenant_id)
        self.reading.update((user, tenant))
        return _Slot(self, (user, tenant))

    def _check_rates(self, tenant: str) -> None:
        tenant_s = self.tenant_rate.wait_s(tenant)
        if tenant_s > 0:
            why = f"your organisation has read conversations faster than {self.tenant_rate.describe()}"
            raise self._busy(why, tenant_s)
        # The server's rate refuses only tenants that have been reading lately (half their burst
        # spent): one tenant's loops must not make every tenant's small page a 429 (probe 17: R17-1).
        total_s = self.total_rate.wait_s("")
        if total_s > 0 and not self.tenant_rate.mostly_full(tenant):
            why = f"the server is reading conversations faster than {self.total_rate.describe()}"
            raise self._busy(why, total_s)

    def charge(self, principal: Principal, size: int) -> None:
        """Count a page of `size` bytes against the tenant's and the process's rates."""
        self.tenant_rate.spend(principal.tenant_id, size)
        self.total_rate.spend("", size)

    def _free(self, keys: tuple[tuple[str, ...], ...]) -> None:
        self.reading.subtract(keys)
        self.reading += Counter()  # drop the keys that reached zero

    @staticmethod
    def _busy(why: str, wait_s: float = 1.0) -> ApiError:
        retry = max(1, math.ceil(wait_s))
        return ApiError(429, "too_many_reads", f"{why}; retry in {retry} s", {"Retry-After": str(retry)})


class ByteRate:
    """A token bucket of bytes per key, allowed into debt: a page is counted once built (its size
    is not known before), and its key reads nothing more until the bucket has refilled past zero."""

    def __init__(self, per_s: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
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
        return f"{self.per_s / 2**20:g} MiB a second"

    def _now_left(self, key: str) -> float:
        now = self._clock()
        left, at = self._left.get(key, (float(self.burst), now))
        return min(float(self.burst), left + (now - at) * self.per_s)

    def _forget_full(self) -> None:
        """Keys whose bucket is full again are dropped: the map holds only recent readers."""
        if len(self._left) > 1024:
            for key in [k for k in self._left if self._now_left(k) >= self.burst]:
                del self._left[key]


class _Slot:
    """One page being read; `release` frees its place (once, however often called)."""

    def __init__(self, readers: _Readers, keys: tuple[tuple[str, ...], ...]) -> None:
        self._readers, self._keys = readers, keys

    def release(self) -> None:
        if self._keys:
            self._readers._free(self._keys)
            self._keys = ()


# A tenant may read 4 MiB of pages a second (one of the largest), after a first 16 MiB; the process
# 8 MiB a second, after 32 MiB. Pages are mostly a few KiB: the rates are for loops. At 16 and
# 48 MiB/s, eight users of one tenant looping pages still slowed another tenant's turns
# 0.37 -> 4.38 s on two cores (probe 17: R17-1).
_READING = _Readers(
    per_user=2,
    per_tenant=6,
    tenant_rate=ByteRate(per_s=4 * 2**20, burst=16 * 2**20),
    total_rate=ByteRate(per_s=8 * 2**20, burst=32 * 2**20),
)


@router.delete(
    "/{conversation_id}", status_code=204, summary="Delete a conversation", responses=errors(401, 404)
)
async def delete_conversation(conversation_id: str, principal: PrincipalDep, store: StoreDep) -> Response:
    if not await store.delete_conversation(principal, conversation_id):
        raise _not_found(conversation_id)
    return Response(status_code=204)
