"""Liveness and readiness probes (no authentication: they reveal nothing but up or down)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from loom.agent.sources import SourcesFileError, load_sources
from loom.agent.store import ConversationStore
from loom.api.schemas import Health, Readiness
from loom.engines.registry import EnginePool
from loom.identity import Principal
from loom.settings import Settings

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
_PROBE = Principal(tenant_id="loom-readiness-probe", user_id="loom-readiness-probe")


@router.get("/healthz", summary="Is the process alive")
async def healthz() -> Health:
    return Health(status="ok")


async def _probe_store(store: ConversationStore | None) -> str:
    if store is None:
        return "not open"
    ping = getattr(store, "ping", None)
    try:
        # Stores without ping() answer a cheap query for a principal that owns nothing.
        probe = ping() if ping is not None else store.list_conversations(_PROBE, limit=1)
        await asyncio.wait_for(probe, PROBE_TIMEOUT_S)
    except Exception as e:  # any failure means "not ready"; why goes to the log (this is unauthenticated)
        log.warning("not ready: the conversation store does not answer: %s", e)
        return f"failed: {type(e).__name__} (see the server log)"
    return "ok"


def _probe_sources(settings: Settings | None) -> str:
    if settings is None:
        return "not configured"
    try:
        load_sources(settings)
    except SourcesFileError as e:
        # Unauthenticated callers learn that it is broken; the log says how (paths, field names).
        log.warning("not ready: %s", e)
        return "failed: the sources file cannot be used (see the server log)"
    return "ok"


def _probe_engines(engines: EnginePool | None) -> str:
    """Engines that could not serve at their last try (a source that will not load, a service that
    will not connect); each tries again on its next query, so this clears when the cause does."""
    failing = engines.problems() if engines is not None else {}
    if not failing:
        return "ok"
    for where, problem in failing.items():
        log.warning("not ready: the engine for %s cannot serve: %s", where, problem)
    # Counted, not named: the probe is unauthenticated, and a source's name is for those it answers.
    count = len(failing)
    return f"failed: {count} engine{'s' if count != 1 else ''} cannot serve (see the server log)"


@router.get(
    "/readyz",
    summary="Can the service answer (store reachable, agent built, sources file usable, engines serving)",
    responses={503: {"model": Readiness}},
)
async def readyz(request: Request) -> JSONResponse:
    checks = {
        "store": await _probe_store(getattr(request.app.state, "store", None)),
        "runner": "ok" if getattr(request.app.state, "runner", None) is not None else "not built",
        "sources": _probe_sources(getattr(request.app.state, "settings", None)),
        "engines": _probe_engines(getattr(request.app.state, "engines", None)),
    }
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
