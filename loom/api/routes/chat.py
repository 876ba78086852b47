"""POST /v1/chat: one turn, streamed as AG-UI events over SSE.

Everything that can be refused is checked before the stream starts, so a refusal is a plain HTTP
error and not a half-open stream.
"""

from __future__ import annotations

from fastapi import APIRouter

from loom.agent.sources import UnknownSourceError, pick_sources
from loom.agent.store import ConversationFull, ConversationStore, StoreUsage
from loom.agent.turns import TurnRequest
from loom.api.deps import (
    InFlightDep,
    PrincipalDep,
    RunnerDep,
    SettingsDep,
    StoreDep,
    VisibleSourcesDep,
)
from loom.api.in_flight import Claim, TooManyTurns, TurnsInFlight
from loom.api.schemas import ApiError, ChatRequest, error_responses
from loom.api.sse import EventStreamResponse, sse_response
from loom.engines.sources import Source
from loom.identity import Principal
from loom.settings import Settings

router = APIRouter(prefix="/v1", tags=["chat"])

_STREAM_DOC = {
    "description": "AG-UI events as Server-Sent Events (`data: {json}` in camelCase): RUN_STARTED, "
    "TEXT_MESSAGE_*, TOOL_CALL_*, TOOL_CALL_RESULT, CUSTOM, then RUN_FINISHED or RUN_ERROR.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def check_message_size(message: str, limit: int) -> None:
    size = len(message.encode("utf-8"))
    if size > limit:
        raise ApiError(
            413,
            "message_too_large",
            f"the message is {size} bytes; the limit is {limit} bytes ({limit / 1024:g} KiB) of UTF-8",
        )


def check_sources(visible: dict[str, Source], names: list[str] | None) -> None:
    """Each named source exists and the caller may use it: the same 422 either way, so a source
    the caller may not use is not revealed."""
    try:
        pick_sources(visible, names)
    except UnknownSourceError as e:
        raise ApiError(422, "unknown_source", e.message) from e


def check_quota(usage: StoreUsage, settings: Settings) -> None:
    """A turn stores its messages and results: refused once the user's, or the tenant's,
    conversations hold their quota (probe 20: one tenant stored 4 MiB/s, and the store is shared)."""
    if usage.user_bytes >= settings.max_user_store_bytes:
        held, most = _mib(usage.user_bytes), _mib(settings.max_user_store_bytes)
        message = (
            f"your conversations hold {held} of the {most} you may keep: delete some "
            f"(DELETE /v1/conversations/{{id}}) to ask more"
        )
        raise ApiError(409, "storage_quota_exceeded", message)
    if usage.tenant_bytes >= settings.max_tenant_store_bytes:
        held, most = _mib(usage.tenant_bytes), _mib(settings.max_tenant_store_bytes)
        message = (
            f"your organization's conversations hold {held} of the {most} it may keep: "
            f"deleting conversations frees it; an administrator can raise LOOM_MAX_TENANT_STORE_BYTES"
        )
        raise ApiError(409, "storage_quota_exceeded", message)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


@router.post(
    "/chat",
    summary="Ask the agent (streams AG-UI events)",
    status_code=200,
    response_class=EventStreamResponse,
    responses={200: _STREAM_DOC, **error_responses(401, 404, 409, 413, 422, 429, 503)},
)
async def chat(
    body: ChatRequest,
    principal: PrincipalDep,
    settings: SettingsDep,
    store: StoreDep,
    runner: RunnerDep,
    in_flight: InFlightDep,
    visible: VisibleSourcesDep,
) -> EventStreamResponse:
    """Run one turn of the conversation `conversation_id` (a new one when omitted)."""
    check_message_size(body.message, settings.max_message_bytes)
    claim = _claim(in_flight, principal, body.conversation_id)
    try:  # claimed before anything is read of it: a delete meanwhile would fail the turn (R22-6)
        await _check_turn(body, principal, settings, store, visible)
    except BaseException:
        in_flight.release(claim)
        raise
    turn = TurnRequest(conversation_id=body.conversation_id, message=body.message, sources=body.sources)
    events = in_flight.held_until_done(claim, runner.run_turn(principal, turn))
    return sse_response(events, settings.response_stall_s)


def _claim(in_flight: TurnsInFlight, principal: Principal, wanted: str | None) -> Claim:
    try:
        claim = in_flight.claim(principal, wanted)
    except TooManyTurns as e:
        raise ApiError(429, "too_many_turns", str(e), {"Retry-After": "5"}) from e
    if claim is None:
        raise ApiError(
            409,
            "turn_in_progress",
            f"conversation {wanted!r} is busy: a turn is running in it, or it is being deleted; "
            "wait for that to end",
        )
    return claim


async def _check_turn(
    body: ChatRequest,
    principal: Principal,
    settings: Settings,
    store: ConversationStore,
    visible: dict[str, Source],
) -> None:
    """What refuses a turn before it streams: a conversation not found or full, the quota, sources."""
    wanted = body.conversation_id
    if wanted is not None and await store.get_conversation(principal, wanted) is None:
        raise ApiError(404, "conversation_not_found", f"no conversation {wanted!r}")
    if wanted is not None and await store.last_seq(principal, wanted) >= settings.max_conversation_messages:
        raise ApiError(
            409, "conversation_full", str(ConversationFull(wanted, settings.max_conversation_messages))
        )
    check_quota(await store.usage(principal), settings)
    check_sources(visible, body.sources)
