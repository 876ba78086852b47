"""The HTTP API: chat over SSE, conversations, sources, health; errors as `{"error": {"code", "message"}}`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from loom.access import SourceAccess
from loom.agent.sources import SourcesFileError, load_sources
from loom.agent.store import ConversationStore
from loom.agent.turns import TurnRunner
from loom.api.auth import EntraVerifier, JwksProvider, check_auth_config
from loom.api.guard import Guard
from loom.api.in_flight import TurnsInFlight
from loom.api.routes import chat, conversations, health, sources
from loom.api.schemas import error_response
from loom.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """Ask questions about your data; an agent answers by querying it with governed tools.

`POST /v1/chat` streams [AG-UI](https://docs.ag-ui.com) events as Server-Sent Events. Every request
is made as a principal (tenant, user, roles, groups) taken from an Entra ID bearer token, or the fixed
dev principal when the server runs in dev mode on loopback; a caller sees and queries only the sources
whose `allow` list holds one of its roles (`GET /v1/sources`). Errors are `{"error": {"code", "message"}}`.
"""

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "not_ready",
}


# What FastAPI raises (as a 400) for a body it cannot decode as text; malformed JSON it reports as
# a validation error (422). Both are the same mistake to a client, so both answer 422.
_UNDECODABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNDECODABLE_BODY:
        return error_response(422, "invalid_json", "the request body is not valid JSON in UTF-8")
    code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


def _describe(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        reason = error.get("ctx", {}).get("error", "JSON decode error")
        return f"the request body is not valid JSON: {reason} (at position {error['loc'][-1]})"
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc and error.get("type") == "missing":
        return "the request body is required"
    if not loc:
        return f"the request body must be a JSON object (Content-Type: application/json): {message}"
    return f"{'.'.join(loc)}: {message}"


def validation_message(errors: Sequence[Any]) -> str:
    return "; ".join(_describe(e) for e in errors) or "the request is not valid"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    code = "invalid_json" if any(e.get("type") == "json_invalid" for e in errors) else "invalid_request"
    return error_response(422, code, validation_message(errors))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "the server failed to answer; see its log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open what was not injected: the SQLite store, then the runner over it; close what we opened."""
    settings: Settings = app.state.settings
    opened = None
    if app.state.store is None:
        from loom.agent.sqlite_store import SqliteConversationStore

        settings.ensure_home()
        opened = await asyncio.to_thread(SqliteConversationStore, settings.database_path)
        app.state.store = opened
    built = app.state.runner is None
    if built:
        # Imported here: the agent (model clients, engines) loads only when the app really starts.
        from loom.agent.build import build_agent
        from loom.cloud import engine_pool

        app.state.engines = engine_pool(settings)  # kept for the readiness probe, closed at the end
        app.state.runner = build_agent(
            settings, app.state.store, engines=app.state.engines, access=app.state.access
        )
        _warn_closed(settings, app.state.access)
    try:
        yield
    finally:
        if built:
            app.state.runner = None
            app.state.engines, engines = None, app.state.engines
            engines.close()
        if opened is not None:
            app.state.store = None
            await opened.close()


def _warn_closed(settings: Settings, access: SourceAccess) -> None:
    try:
        closed = access.closed(load_sources(settings).values())
    except SourcesFileError:
        return  # /readyz reports it
    if closed:
        log.warning(
            "sources nobody may use until an `allow` list names roles for them: %s", ", ".join(closed)
        )


def create_app(
    settings: Settings | None = None,
    *,
    store: ConversationStore | None = None,
    runner: TurnRunner | None = None,
    jwks: JwksProvider | None = None,
) -> FastAPI:
    """The API app. Injected store/runner are used as given (and not closed); missing ones are built
    at startup. `jwks` replaces the Entra key fetcher (tests, air-gapped key sets)."""
    settings = settings or Settings()
    check_auth_config(settings)
    app = FastAPI(title="Loom Data Agents", description=DESCRIPTION, version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.runner = runner
    app.state.engines = None  # the pool the app built, when it built the runner
    app.state.in_flight = TurnsInFlight(settings.max_turns_per_user)
    app.state.access = SourceAccess.of(settings)
    app.state.verifier = EntraVerifier(settings, jwks) if settings.auth_mode == "entra" else None
    install_error_handlers(app)
    for module in (chat, conversations, sources, health):
        app.include_router(module.router)
    app.add_middleware(
        Guard, max_body_bytes=settings.max_request_bytes, body_timeout_s=settings.request_body_timeout_s
    )
    if settings.cors_origins:
        _allow_origins(app, settings.cors_origins)
    return app


def _allow_origins(app: FastAPI, origins: list[str]) -> None:
    """For a console served from another origin. Bearer tokens travel in a header, never in
    cookies, so credentials stay off and only the listed origins may read responses."""
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
