"""ChatModel over Microsoft Agent Framework's chat-completions client (Azure OpenAI or OpenAI-compatible).

MAF only carries the request: our turn loop runs the tools (approvals, persistence, streaming), so
MAF's function-invocation and middleware layers have nothing to do, and its OpenTelemetry layer is
wanted only when tracing is on (`LOOM_MODEL_TRACING`). Without tracing the model is MAF's raw
chat-completions client, which skips those layers (~0.2 ms per streamed call, measured by
`benchmarks.turn_overhead`); with it, the full `OpenAIChatCompletionClient`.

Retries are the openai SDK's own (429, 408, 409, 5xx and connection errors; exponential backoff from
0.5 s to 8 s, or the server's Retry-After / retry-after-ms up to 120 s); whatever still fails becomes
a ModelError a user can act on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
import openai
from agent_framework import ChatResponse, ChatResponseUpdate, Content, Message
from agent_framework.exceptions import ChatClientException
from agent_framework.openai import OpenAIChatCompletionClient, RawOpenAIChatCompletionClient
from azure.core.exceptions import ClientAuthenticationError

from loom.agent.model import (
    ChatMessage,
    ChatModel,
    ModelError,
    ModelEvent,
    ModelReply,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)
from loom.agent.model_http import ResponseTooLarge, capped_http_client
from loom.agent.model_sdk import AsBuiltAzureOpenAI, AsBuiltOpenAI
from loom.agent.reply_bounds import ReplyBounds
from loom.cloud import azure_credential
from loom.settings import Provider, Settings

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Local OpenAI-compatible servers (vLLM, Ollama) ignore the key, but the SDK insists on one.
PLACEHOLDER_API_KEY = "not-needed"
RETRYABLE_STATUSES = frozenset({408, 409, 429})
# --- conversion: our messages -> MAF ------------------------------------------------------------


def to_maf_message(message: ChatMessage) -> Message:
    if message.role == "tool":
        result = Content.from_function_result(message.tool_call_id or "", result=message.content)
        return Message("tool", [result])
    contents: list[Content | str] = [message.content] if message.content else []
    contents += [Content.from_function_call(c.id, c.name, arguments=c.arguments) for c in message.tool_calls]
    return Message(message.role, contents)


def to_maf_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    return [to_maf_message(m) for m in messages]


# --- conversion: MAF -> our events --------------------------------------------------------------


def arguments_text(arguments: str | Mapping[str, Any] | None) -> str:
    if arguments is None:
        return ""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def clean(text: str) -> str:
    """`text` with any lone surrogate replaced: valid JSON may carry one (`"\\ud800"`), and no
    UTF-8 encoder takes it, so the stream's encoder failed mid-turn (probe 22: R22-3)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # through UTF-16, where a lone surrogate is one unit: one U+FFFD each
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def events_from_update(update: ChatResponseUpdate, named: set[str]) -> Iterator[TextDelta | ToolCallDelta]:
    """Deltas of one streamed update; `named` holds the calls whose name was already given."""
    for content in update.contents:
        if content.type == "text" and content.text:
            yield TextDelta(clean(content.text))
        elif content.type == "function_call" and content.call_id:
            first = content.call_id not in named
            named.add(content.call_id)
            name = clean(content.name) if first and content.name else None
            yield ToolCallDelta(clean(content.call_id), name, clean(arguments_text(content.arguments)))


def update_chars(update: ChatResponseUpdate) -> int:
    """What an update carries, text of any kind (reasoning too) and tool arguments alike."""
    return sum(len(c.text or "") + len(arguments_text(c.arguments)) for c in update.contents)


def tool_calls_of(response: ChatResponse) -> tuple[ToolCall, ...]:
    calls = (c for m in response.messages for c in m.contents if c.type == "function_call")
    return tuple(
        ToolCall(clean(c.call_id or ""), clean(c.name or ""), clean(arguments_text(c.arguments)))
        for c in calls
    )


def usage_of(response: ChatResponse) -> dict[str, Any]:
    """Token counts under the OpenAI names; MAF's other details are kept as they come."""
    usage: dict[str, Any] = dict(response.usage_details or {})
    renames = {
        "input_token_count": "prompt_tokens",
        "output_token_count": "completion_tokens",
        "total_token_count": "total_tokens",
    }
    return {renames.get(key, key): value for key, value in usage.items() if value is not None}


def reply_from_response(response: ChatResponse) -> ModelReply:
    finish = str(response.finish_reason) if response.finish_reason else None
    return ModelReply(clean(response.text), tool_calls_of(response), usage_of(response), finish)


# --- errors -------------------------------------------------------------------------------------

# What to check, by the status the endpoint answered.
STATUS_HINTS = {
    400: "the endpoint rejected the request; check the model or deployment supports tools",
    401: "check the API key (or the identity's sign-in)",
    403: "check the identity has the 'Cognitive Services OpenAI User' role, or the key's permissions",
    404: "check the model name or deployment name, and the endpoint's path",
    429: "the endpoint is rate limiting; wait, or raise the deployment's quota",
}


@dataclass(frozen=True)
class Endpoint:
    """Where requests go, for error messages. The key is kept only to scrub it from what we show."""

    url: str
    setting: str  # the variable a user would fix, e.g. OPENAI_BASE_URL
    max_retries: int
    timeout_s: float
    secret: str | None = field(default=None, repr=False)

    def scrub(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text


def public_url(url: str) -> str:
    """The URL without user info or query string, both of which may carry credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _after(retries: int) -> str:
    return "" if retries == 0 else f" after {retries} retr{'y' if retries == 1 else 'ies'}"


def describe_failure(error: BaseException, where: Endpoint) -> str:
    after = _after(where.max_retries)
    if isinstance(error, json.JSONDecodeError):
        where_in = f"{error.msg}, at character {error.pos}"
        return f"The model endpoint {where.url} sent a reply that is not JSON ({where_in})."
    if isinstance(error, ResponseTooLarge):
        return f"The model endpoint {where.url} was stopped reading its reply: {error}."
    if isinstance(error, openai.APITimeoutError):
        return f"The model endpoint {where.url} did not answer within {where.timeout_s:g}s{after}."
    if isinstance(error, openai.APIConnectionError):
        return (
            f"The model endpoint {where.url} is unreachable ({_reason(error)}){after} "
            f"— check {where.setting}."
        )
    if isinstance(error, openai.APIStatusError):
        return describe_status(error, where)
    if isinstance(error, ClientAuthenticationError):
        return (
            f"Could not get an Entra ID token for {where.url}: {_first_line(error)} — sign in "
            "(az login, or a managed identity) or set AZURE_OPENAI_API_KEY."
        )
    detail = where.scrub(str(error))[:300]
    kind = type(error).__name__
    return f"The model endpoint {where.url} sent a reply that could not be read ({kind}: {detail})."


def _first_line(error: BaseException) -> str:
    # azure-identity's messages list every credential it tried; the first line says what failed.
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def describe_status(error: openai.APIStatusError, where: Endpoint) -> str:
    status = error.status_code
    if _provider_code(error) == "content_filter":
        return f"The model endpoint {where.url} refused the request: its content filter was triggered."
    retried = status in RETRYABLE_STATUSES or status >= 500
    after = _after(where.max_retries) if retried else ""
    detail = where.scrub(_provider_message(error))[:300]
    hint = STATUS_HINTS.get(status, "the endpoint is failing; try again later" if status >= 500 else "")
    text = f"The model endpoint {where.url} answered {status} {_phrase(status)}{after}"
    return text + (f": {detail}" if detail else "") + (f" — {hint}." if hint else ".")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _provider_error(error: openai.APIStatusError) -> Mapping[str, Any]:
    # The SDK hands over the body's "error" object when there is one, else the whole body.
    body = error.body
    if not isinstance(body, Mapping):
        return {}
    inner = body.get("error")
    return inner if isinstance(inner, Mapping) else body


def _provider_message(error: openai.APIStatusError) -> str:
    return str(_provider_error(error).get("message") or "")


def _provider_code(error: openai.APIStatusError) -> str:
    return str(_provider_error(error).get("code") or "")


# The OS error at the bottom of httpx2's chain says more than "All connection attempts failed".
CONNECTION_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (socket.gaierror, "host name not found"),
    (ssl.SSLError, "TLS handshake failed"),
    (TimeoutError, "connection timed out"),
)


def _reason(error: BaseException) -> str:
    for link in _chain(error):
        for kind, reason in CONNECTION_REASONS:
            if isinstance(link, kind):
                return reason
    return str(error.__cause__ or error).strip() or type(error).__name__


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = error
    for _ in range(20):  # bounded: chains are short, and a cycle must not hang an error path
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def root_cause(error: BaseException) -> BaseException:
    """The SDK error inside MAF's wrapper (MAF raises `from` it), else the innermost cause."""
    while error.__cause__ is not None and not isinstance(error, openai.OpenAIError):
        error = error.__cause__
    return error


# What reading a reply of the wrong shape raises inside MAF and the SDK (pydantic's errors are
# ValueErrors); anything else wrapped by MAF (a transport's own failure) stays a bug.
MISREAD = (TypeError, ValueError, KeyError, AttributeError, IndexError)


def is_endpoint_failure(error: BaseException) -> bool:
    """The endpoint or the sign-in failed (a user can act); anything else is a bug and stays loud.
    What MAF's client raises reading the endpoint's reply is the endpoint's doing: a body that does
    not parse, or parses to the wrong shape (`"choices": null`), was internal_error (R21-3, R22-3)."""
    cause = root_cause(error)
    if isinstance(cause, openai.OpenAIError | ClientAuthenticationError | json.JSONDecodeError):
        return True
    return isinstance(error, ChatClientException) and isinstance(cause, MISREAD)


def as_model_error(error: Exception, where: Endpoint) -> ModelError:
    return ModelError(describe_failure(root_cause(error), where))


# --- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    """How the model generates: sent with every call. `None` leaves the endpoint's default."""

    temperature: float | None = None
    max_tokens: int | None = None  # bounds a model that would otherwise generate without end

    @classmethod
    def of(cls, settings: Settings) -> Generation:
        return cls(settings.model_temperature, settings.model_max_output_tokens)

    def options(self, tools: Sequence[dict[str, Any]]) -> Any:  # MAF's typed options dict
        # MAF passes dict tools through unchanged as OpenAI function schemas.
        chosen: dict[str, Any] = {"tools": list(tools)} if tools else {}
        if self.temperature is not None:
            chosen["temperature"] = self.temperature
        if self.max_tokens is not None:
            chosen["max_tokens"] = self.max_tokens
        return chosen


class MafChatModel:
    """One endpoint behind a MAF chat-completions client; streaming and not, one conversion."""

    def __init__(
        self,
        client: RawOpenAIChatCompletionClient,
        endpoint: Endpoint,
        name: str,
        generation: Generation = Generation(),
        bounds: ReplyBounds | None = None,
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        self._generation = generation
        self._bounds = bounds or ReplyBounds()
        self.name = name

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> AsyncIterator[ModelEvent]:
        response_stream = self._client.get_response(
            to_maf_messages(messages), stream=True, options=self._generation.options(tools)
        )
        named: set[str] = set()
        # All an update carries counts, reasoning text too, not only what becomes a delta (the
        # SSE events themselves are counted as they are read: `model_http`).
        chars = 0
        try:
            async for update in response_stream:
                chars += update_chars(update)
                if chars > self._bounds.max_chars:
                    raise self._bounds.too_long()
                for event in events_from_update(update, named):
                    yield event
            final = await response_stream.get_final_response()
        except Exception as error:  # MAF wraps every failure; unwrap and describe the endpoint's
            if not is_endpoint_failure(error):
                raise
            raise as_model_error(error, self._endpoint) from error
        yield reply_from_response(final)

    async def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] = ()
    ) -> ModelReply:
        try:
            response = await self._client.get_response(
                to_maf_messages(messages), options=self._generation.options(tools)
            )
        except Exception as error:
            if not is_endpoint_failure(error):
                raise
            raise as_model_error(error, self._endpoint) from error
        return reply_from_response(response)


# --- construction -------------------------------------------------------------------------------

TokenProvider = Callable[[], Awaitable[str]]


def build_chat_model(
    settings: Settings,
    *,
    http_client: httpx2.AsyncClient | None = None,
    credential: object | None = None,
) -> ChatModel | None:
    """The configured endpoint as a ChatModel, or None when no model is configured (offline)."""
    if settings.provider is Provider.OFFLINE:
        return None
    sdk: openai.AsyncOpenAI
    if settings.provider is Provider.AZURE:
        sdk, endpoint = _azure_client(settings, http_client, credential)
    else:
        sdk, endpoint = _openai_client(settings, http_client)
    client = _maf_client(settings, sdk)
    return MafChatModel(
        client, endpoint, settings.model_name, Generation.of(settings), ReplyBounds.of(settings)
    )


def _maf_client(settings: Settings, sdk: openai.AsyncOpenAI) -> RawOpenAIChatCompletionClient:
    if not settings.model_tracing:
        return RawOpenAIChatCompletionClient(model=settings.model_name, async_client=sdk)
    return OpenAIChatCompletionClient(
        model=settings.model_name, async_client=sdk, function_invocation_configuration={"enabled": False}
    )


def _endpoint(settings: Settings, url: str, setting: str, secret: str | None) -> Endpoint:
    return Endpoint(public_url(url), setting, settings.model_max_retries, settings.model_timeout_s, secret)


def _openai_client(
    settings: Settings, http_client: httpx2.AsyncClient | None
) -> tuple[openai.AsyncOpenAI, Endpoint]:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    base_url = settings.openai_base_url or OPENAI_DEFAULT_BASE_URL
    sdk = AsBuiltOpenAI(
        base_url=base_url,
        api_key=key or PLACEHOLDER_API_KEY,
        max_retries=settings.model_max_retries,
        timeout=settings.model_timeout_s,
        http_client=http_client or capped_http_client(ReplyBounds.of(settings)),
    )
    return sdk, _endpoint(settings, base_url, "OPENAI_BASE_URL", key)


def _azure_client(
    settings: Settings, http_client: httpx2.AsyncClient | None, credential: object | None
) -> tuple[openai.AsyncAzureOpenAI, Endpoint]:
    if not settings.azure_openai_endpoint or not settings.model_name:
        raise ModelError("Azure OpenAI needs AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT to be set.")
    key = settings.azure_openai_api_key.get_secret_value() if settings.azure_openai_api_key else None
    auth: dict[str, Any] = (
        {"api_key": key} if key else {"azure_ad_token_provider": entra_token_provider(settings, credential)}
    )
    sdk = AsBuiltAzureOpenAI(
        azure_endpoint=settings.azure_openai_endpoint,
        azure_deployment=settings.model_name,
        api_version=settings.azure_openai_api_version,
        max_retries=settings.model_max_retries,
        timeout=settings.model_timeout_s,
        http_client=http_client or capped_http_client(ReplyBounds.of(settings)),
        **auth,
    )
    return sdk, _endpoint(settings, settings.azure_openai_endpoint, "AZURE_OPENAI_ENDPOINT", key)


def entra_token_provider(settings: Settings, credential: object | None) -> TokenProvider:
    """A bearer-token provider for the cloud's scope (.us in Azure Government).

    A credential object handed to the SDK or MAF would ask for the commercial scope, so the scope is
    always chosen here. The provider caches the token; the first fetch may block on I/O, so it runs
    in a worker thread rather than on the event loop.
    """
    from azure.identity import get_bearer_token_provider

    if credential is None:
        credential = azure_credential(settings)
    fetch = get_bearer_token_provider(credential, settings.cognitive_scope)  # type: ignore[arg-type]

    async def provide() -> str:
        return await asyncio.to_thread(fetch)

    return provide
