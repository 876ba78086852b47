"""Before any work: who is calling, and how much they may send.

FastAPI reads and parses a request's body before it runs the route's dependencies, so without this
a 200 MB body with no token was read whole (and eight at once took 3.6 GB) before the 401. This
ASGI middleware authenticates `/v1` requests from their headers first, refuses a declared body over
the limit at once, and stops reading a streamed one as soon as it passes the limit (413 either
way) or has taken longer than the body time limit to arrive (408: a client trickling its body
would otherwise hold a connection and a handler for as long as it liked). The principal it found
is kept on the request, so the route's own dependency does not verify the token twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom.api.auth import authenticate
from loom.api.schemas import ApiError, error_response
from loom.identity import Principal

GUARDED = "/v1/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass
class _Body:
    limit: int
    timeout_s: float
    received: int = 0
    complete: bool = False  # the last part has arrived: reads from here on wait for a disconnect
    deadline: float | None = None  # set at the first read
    refused: ApiError | None = None  # why reading stopped
    replaced: bool = False
    release: Callable[[], None] | None = None  # frees the sender's place once the body is in

    def done(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()


SENDING_PER_USER = 8  # requests of one user whose bodies are still arriving


class Guard:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        # Requests per user whose bodies are still arriving: one account trickling 4,096 bodies
        # held every connection the server keeps, and nobody else got in (probe 19: R19-1).
        self.sending: Counter[tuple[str, str]] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A CORS preflight carries no credentials by design; the CORS layer answers it.
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not scope["path"].startswith(GUARDED):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            request.state.principal = await authenticate(request)
            self._check_declared(request)
        except ApiError as e:
            await _error(e)(scope, receive, send)
            return
        body = _Body(self.max_body_bytes, self.body_timeout_s)
        if scope["method"] in BODY_METHODS:
            try:
                body.release = self._take_sending(request.state.principal)
            except ApiError as e:
                await _error(e)(scope, receive, send)
                return
        try:
            await self.app(scope, _counting(receive, body), _replacing(scope, receive, send, body))
        finally:
            body.done()

    def _take_sending(self, principal: Principal) -> Callable[[], None]:
        key = (principal.tenant_id, principal.user_id)
        if self.sending[key] >= SENDING_PER_USER:
            raise ApiError(
                429,
                "too_many_requests",
                f"at most {SENDING_PER_USER} of your requests may be sending their body at once",
                {"Retry-After": "1"},
            )
        self.sending[key] += 1

        def release() -> None:
            self.sending[key] -= 1
            if self.sending[key] <= 0:
                del self.sending[key]

        return release

    def _check_declared(self, request: Request) -> None:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "request_too_large", f"the request body is over the limit of {limit} bytes")


def _too_slow(timeout_s: float) -> ApiError:
    return ApiError(408, "request_timeout", f"the request body did not arrive within {timeout_s:g} s")


def _counting(receive: Receive, body: _Body) -> Receive:
    async def receive_counted() -> Message:
        if body.refused is not None:  # stop reading: what the app gets next is a disconnect
            return {"type": "http.disconnect"}
        if body.complete:
            return await receive()
        if body.deadline is None:
            body.deadline = time.monotonic() + body.timeout_s
        try:
            message = await asyncio.wait_for(receive(), max(0.0, body.deadline - time.monotonic()))
        except TimeoutError:
            body.refused = _too_slow(body.timeout_s)
            body.done()
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            body.received += len(message.get("body", b""))
            body.complete = not message.get("more_body", False)
            if body.received > body.limit:
                body.refused = _too_large(body.limit)
                body.done()
                return {"type": "http.disconnect"}
            if body.complete:
                body.done()
        return message

    return receive_counted


def _replacing(scope: Scope, receive: Receive, send: Send, body: _Body) -> Send:
    """Whatever the app answers to a body cut short (a 400, a disconnect), the client gets why it
    was cut (413 or 408)."""

    async def send_checked(message: Message) -> None:
        if body.replaced:
            return
        if body.refused is not None and message["type"] == "http.response.start":
            body.replaced = True
            await _error(body.refused)(scope, receive, send)
            return
        await send(message)

    return send_checked


def _error(error: ApiError) -> JSONResponse:
    return error_response(error.status_code, error.code, str(error.detail), error.headers)
