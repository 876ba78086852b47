"""The calling user's conversations: list, read (with messages, tool calls and results), delete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio.to_thread
from fastapi import APIRouter, Query, Response

from loom.agent.store import MAX_SEQ
from loom.api.deps import PrincipalDep, StoreDep
from loom.api.schemas import ApiError, ConversationDetail, ConversationList, ConversationOut, MessageOut
from loom.api.schemas import error_responses as errors
from loom.identity import Principal

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
PAGE_BYTES = 4 * 1024 * 1024  # of messages' text and metadata in one page (one message always)


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
    with _READING.one(principal):
        conversation = await store.get_conversation(principal, conversation_id)
        if conversation is None:
            raise _not_found(conversation_id)
        # Paged and bounded in bytes: a long conversation read whole was 250 MB and held every
        # tenant's store reads behind it (probe 11: R11-5).
        messages = await store.messages(
            principal, conversation_id, before=before, limit=limit, max_bytes=PAGE_BYTES
        )
        earlier = messages[0].seq if messages and messages[0].seq > 1 else None
        detail = ConversationDetail(
            **ConversationOut.of(conversation).model_dump(),
            messages=[MessageOut.of(m) for m in messages],
            earlier=earlier,
        )
        # Written off the event loop: a page of several MiB took the loop from every other request.
        body = await anyio.to_thread.run_sync(detail.model_dump_json)
    return Response(body, media_type="application/json")


class _Readers:
    """How many pages each principal is reading at once: a loop of GETs on 40 connections made
    another tenant's turn wait 22 s (probe 12: R12-4)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.reading: dict[tuple[str, str], int] = {}

    @contextmanager
    def one(self, principal: Principal) -> Iterator[None]:
        key = (principal.tenant_id, principal.user_id)
        if self.reading.get(key, 0) >= self.most:
            raise ApiError(
                429, "too_many_reads", f"at most {self.most} conversation reads at a time; retry shortly"
            )
        self.reading[key] = self.reading.get(key, 0) + 1
        try:
            yield
        finally:
            self.reading[key] -= 1
            if not self.reading[key]:
                del self.reading[key]


_READING = _Readers(most=2)


@router.delete(
    "/{conversation_id}", status_code=204, summary="Delete a conversation", responses=errors(401, 404)
)
async def delete_conversation(conversation_id: str, principal: PrincipalDep, store: StoreDep) -> Response:
    if not await store.delete_conversation(principal, conversation_id):
        raise _not_found(conversation_id)
    return Response(status_code=204)
