"""Typed dependencies for routes: what the app keeps on `app.state`, and who is calling."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request

from loom.access import SourceAccess
from loom.agent.sources import SourcesFileError, load_sources
from loom.agent.store import ConversationStore
from loom.agent.turns import TurnRunner
from loom.api.auth import authenticate
from loom.api.in_flight import TurnsInFlight
from loom.api.schemas import ApiError
from loom.engines.errors import shown
from loom.engines.sources import Source
from loom.identity import Principal
from loom.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> ConversationStore:
    store: ConversationStore | None = getattr(request.app.state, "store", None)
    if store is None:
        raise ApiError(503, "not_ready", "the conversation store is not open yet")
    return store


def get_runner(request: Request) -> TurnRunner:
    runner: TurnRunner | None = getattr(request.app.state, "runner", None)
    if runner is None:
        raise ApiError(503, "not_ready", "the agent is not ready yet")
    return runner


def get_in_flight(request: Request) -> TurnsInFlight:
    in_flight: TurnsInFlight = request.app.state.in_flight
    return in_flight


def get_access(request: Request) -> SourceAccess:
    access: SourceAccess = request.app.state.access
    return access


def visible_sources(
    settings: Annotated[Settings, Depends(get_settings)],
    access: Annotated[SourceAccess, Depends(get_access)],
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Source]:
    """The sources the caller may use (the others do not exist, as far as the caller can tell)."""
    try:
        return access.visible(principal, load_sources(settings))
    except SourcesFileError as e:  # the server's configuration, not the request, is wrong
        raise ApiError(503, "sources_file_invalid", shown(e, log, "the sources file", logging.WARNING)) from e


log = logging.getLogger(__name__)

SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ConversationStore, Depends(get_store)]
RunnerDep = Annotated[TurnRunner, Depends(get_runner)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]
InFlightDep = Annotated[TurnsInFlight, Depends(get_in_flight)]
VisibleSourcesDep = Annotated[dict[str, Source], Depends(visible_sources)]
