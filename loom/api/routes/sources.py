"""GET /v1/sources: the data sources the caller may use, for a client to offer or pick from."""

from __future__ import annotations

from fastapi import APIRouter

from loom.api.deps import VisibleSourcesDep
from loom.api.schemas import SourceList, SourceOut, error_responses
from loom.engines.registry import languages

router = APIRouter(prefix="/v1/sources", tags=["sources"])


@router.get("", summary="List the sources I may use", responses=error_responses(401, 503))
async def list_sources(visible: VisibleSourcesDep) -> SourceList:
    return SourceList(
        sources=[
            SourceOut(name=s.name, kind=s.kind, description=s.description, languages=list(languages(s)))
            for s in visible.values()
        ]
    )
