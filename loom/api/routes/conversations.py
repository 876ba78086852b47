"""The calling user's conversations: list, read (with messages, tool calls and results), delete."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from loom.api.deps import PrincipalDep, StoreDep
from loom.api.schemas import ApiError, ConversationDetail, ConversationList, ConversationOut, MessageOut
from loom.api.schemas import error_responses as errors

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
PAGE_BYTES = 16 * 1024 * 1024  # of messages' text and metadata in one page


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


@router.get("/{conversation_id}", summary="Read a conversation", responses=errors(401, 404))
async def get_conversation(
    conversation_id: str,
    principal: PrincipalDep,
    store: StoreDep,
    limit: int = Query(100, ge=1, le=500, description="At most this many messages, the newest."),
    before: int | None = Query(
        None, ge=1, description="Only messages before this `seq` (the `earlier` of a page)."
    ),
) -> ConversationDetail:
    conversation = await store.get_conversation(principal, conversation_id)
    if conversation is None:
        raise _not_found(conversation_id)
    # Paged and bounded in bytes: a long conversation read whole was 250 MB and held every
    # tenant's store reads behind it (probe 11: R11-5).
    messages = await store.messages(
        principal, conversation_id, before=before, limit=limit, max_bytes=PAGE_BYTES
    )
    earlier = messages[0].seq if messages and messages[0].seq > 1 else None
    return ConversationDetail(
        **ConversationOut.of(conversation).model_dump(),
        messages=[MessageOut.of(m) for m in messages],
        earlier=earlier,
    )


@router.delete(
    "/{conversation_id}", status_code=204, summary="Delete a conversation", responses=errors(401, 404)
)
async def delete_conversation(conversation_id: str, principal: PrincipalDep, store: StoreDep) -> Response:
    if not await store.delete_conversation(principal, conversation_id):
        raise _not_found(conversation_id)
    return Response(status_code=204)
