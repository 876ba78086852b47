"""The calling user's conversations: list, read (with messages, tool calls and results), delete."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator

import anyio.to_thread
from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from loom.agent.store import MAX_SEQ, ConversationStore, StoredText
from loom.api.deps import InFlightDep, PrincipalDep, StoreDep
from loom.api.page_limits import PageSlot, page_readers
from loom.api.schemas import ApiError, ConversationDetail, ConversationList, ConversationOut, message_json
from loom.api.schemas import error_responses as errors
from loom.api.sse import StalledClient, stalls_after
from loom.identity import Principal

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
PAGE_BYTES = 4 * 1024 * 1024  # of messages' text and metadata in one page (one message always)
SEND_CHUNK = 64 * 1024  # a page is sent in pieces of this size
# A page's reader takes it at once; one that takes nothing for this long loses it, and its place.
# At 60 s (a chat stream's), 32 users of one tenant, each leaving two pages unread, held all of
# the server's page places for a minute at a time (probe 19: R19-2); at 15 s their own reading has
# made them heavy readers by the time they can ask again, held to their tenant's six.
PAGE_STALL_S = 15.0


_READING = page_readers()  # the process's limits on conversation reads (page_limits.py)


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


async def _sent(body: bytes, slot: PageSlot) -> AsyncGenerator[bytes]:
    """The page in pieces: each is sent only once the client has taken the last (flow control), so
    the slot stays held while the page waits for a reader, and is freed if the client leaves."""
    try:
        for start in range(0, len(body), SEND_CHUNK):
            yield body[start : start + SEND_CHUNK]
    finally:
        slot.release()


class _PageResponse(StreamingResponse):
    """A page that gives up on a client that takes nothing for `PAGE_STALL_S` (its place is freed)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, stalls_after(send, PAGE_STALL_S))
        except StalledClient as e:
            log.warning("%s; a conversation page is given up", e)
        finally:  # Starlette stops iterating on disconnect but never closes the iterator
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


@router.delete(
    "/{conversation_id}", status_code=204, summary="Delete a conversation", responses=errors(401, 404, 409)
)
async def delete_conversation(
    conversation_id: str, principal: PrincipalDep, store: StoreDep, in_flight: InFlightDep
) -> Response:
    # Held while it goes: a turn running in it would fail writing its answer to a conversation
    # gone (store_error and an ERROR line: probe 21, R21-10), and one starting meanwhile too (R22-6).
    with in_flight.held(principal, conversation_id) as free:
        if not free:
            raise ApiError(
                409,
                "turn_in_progress",
                f"a turn is running in conversation {conversation_id!r}; delete it once the turn has ended",
            )
        if not await store.delete_conversation(principal, conversation_id):
            raise _not_found(conversation_id)
    return Response(status_code=204)
