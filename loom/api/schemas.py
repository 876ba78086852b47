"""Request and response models of the HTTP API, one group per resource; they are the OpenAPI docs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from itertools import islice
from typing import Annotated, Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from loom.agent.store import Conversation, StoredMessage, StoredText

# --- errors ------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable reason, e.g. `not_found`, `token_expired`.")
    message: str = Field(description="What went wrong, for a person to read.")


class ErrorBody(BaseModel):
    """Every error response has this shape, whatever the status code."""

    error: ErrorDetail


class ApiError(HTTPException):
    """An HTTP error with a stable code; the app's handler renders it as an ErrorBody."""

    def __init__(
        self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    return {code: {"model": ErrorBody} for code in codes}


MAX_ID_CHARS = 200  # conversation ids and source names
MAX_SOURCES = 64  # names in one request: each is listed to the model on every call

# --- chat --------------------------------------------------------------------------------------


class ChatRequest(BaseModel):
    """One user message; the answer streams back as AG-UI events over SSE."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"message": "Number of orders per channel", "sources": ["sales"]}]},
    )

    conversation_id: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="Continue this conversation; omit to start one (its id is the run's threadId).",
    )
    message: str = Field(description="The user's message: not empty, at most `max_message_bytes` UTF-8 bytes")
    sources: list[Annotated[str, Field(max_length=MAX_ID_CHARS)]] | None = Field(
        None,
        max_length=MAX_SOURCES,
        description="Data sources the agent may use; omit it for all of them (an empty list is refused).",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: object) -> object:
        """Unknown keys refused in one error: one error each, 24,000 of them made a 925 KB 422 and
        cost 0.12 s of the event loop a request (probe 30: R30-2)."""
        if isinstance(data, dict):
            unknown = [str(k) for k in islice((k for k in data if k not in cls.model_fields), 4)]
            if unknown:
                named = ", ".join(repr(k[:MAX_ID_CHARS]) for k in unknown[:3])
                raise ValueError(f"unknown fields: {named}{' and more' if len(unknown) > 3 else ''}")
        return data

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be empty")
        return value

    @field_validator("message", "conversation_id", "sources")
    @classmethod
    def _valid_unicode(cls, value: str | list[str] | None) -> str | list[str] | None:
        # JSON can spell a lone surrogate ("\\ud800"); it is no text, and would fail later on encoding.
        for text in [value] if isinstance(value, str) else value or []:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
        return value

    @field_validator("sources")
    @classmethod
    def _names_some(cls, value: list[str] | None) -> list[str] | None:
        # An empty list read as "all sources" would silently widen what the caller asked for.
        if value is not None and not value:
            raise ValueError("must name at least one source; omit it to use all of them")
        return value


# --- conversations -----------------------------------------------------------------------------


class ConversationOut(BaseModel):
    """A conversation of the calling user."""

    id: str
    title: str = Field(description="Set from the first message.")
    created_at: dt.datetime
    updated_at: dt.datetime = Field(description="Time of the last appended message.")

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationOut:
        return cls.model_validate(conversation.model_dump())


class ConversationList(BaseModel):
    conversations: list[ConversationOut] = Field(description="Newest first (by last activity).")


class ToolCallOut(BaseModel):
    id: str
    name: str = Field(description="The tool the assistant called.")
    arguments: str = Field(description="The call's arguments as JSON text, exactly as the model wrote them.")


class MessageOut(BaseModel):
    """One stored message: user text, assistant text and tool calls, or a tool result."""

    id: str
    seq: int = Field(description="Position in the conversation, increasing from 1.")
    role: str = Field(description="`user`, `assistant`, `tool` or `system`.")
    content: str = Field(description="Text, or for `tool` messages the tool's result.")
    tool_calls: list[ToolCallOut] = Field(default_factory=list)
    tool_call_id: str | None = Field(None, description="For `tool` messages: the call this result answers.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: dt.datetime

    @classmethod
    def of(cls, message: StoredMessage) -> MessageOut:
        # Built from the stored message's own (validated) values: dumping and validating them again
        # was a third of a 4 MiB page's cost (probe 14: R14-1).
        fields = {name: getattr(message, name) for name in cls.model_fields if name != "tool_calls"}
        calls = [ToolCallOut.model_construct(**c) for c in message.tool_calls]
        return cls.model_construct(**fields, tool_calls=calls)


_WHEN = TypeAdapter(dt.datetime)


def message_json(message: StoredText) -> str:
    """One message of a page as `MessageOut` writes it, from the stored text: the tool calls and
    metadata (result tables of up to 8 MiB) are JSON already and go in as they are, where decoding
    and encoding them again cost a page ~5 times the interpreter time (probe 15: R15-5)."""
    return (
        f'{{"id":{json.dumps(message.id)},"seq":{int(message.seq)},"role":{json.dumps(message.role)},'
        f'"content":{json.dumps(message.content, ensure_ascii=False)},"tool_calls":{message.tool_calls},'
        f'"tool_call_id":{json.dumps(message.tool_call_id)},"metadata":{message.metadata},'
        f'"created_at":{_WHEN.dump_json(dt.datetime.fromisoformat(message.created_at)).decode()}}}'
    )


class ConversationDetail(ConversationOut):
    """A conversation with a page of its messages, in order: the newest ones, or those before
    `before`. A page holds at most `limit` messages and about 16 MiB (one message always)."""

    messages: list[MessageOut]
    earlier: int | None = Field(
        None, description="When older messages exist: pass it as `before` to read the page before this one."
    )


# --- sources -----------------------------------------------------------------------------------


class SourceOut(BaseModel):
    """A data source the caller may use."""

    name: str = Field(description="What a chat request's `sources` names it by.")
    kind: str = Field(description="`duckdb` (local), `synapse`, `databricks`, …")
    description: str
    languages: list[str] = Field(description="Query languages the agent can answer from it, e.g. `sql`.")


class SourceList(BaseModel):
    sources: list[SourceOut] = Field(description="In the order the sources file lists them.")


# --- health ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: str = Field(description="`ok` when alive.")


class Readiness(BaseModel):
    status: str = Field(description="`ready` when every check passed, else `not_ready`.")
    checks: dict[str, str] = Field(description="Each dependency and `ok` or the reason it failed.")
