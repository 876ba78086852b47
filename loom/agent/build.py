"""Building the agent from Settings: model (or offline stand-in), tools, engines, store.

The model and embedding clients (openai, Agent Framework) are imported where they are built, so
commands that only query data (`loom query`, `loom catalog`, `--help`) start without them.
"""

from __future__ import annotations

from functools import partial

from loom.access import SourceAccess
from loom.agent.loop import Agent, TurnLimits
from loom.agent.model import ChatModel
from loom.agent.offline import OfflineModel
from loom.agent.reply_bounds import ReplyBounds
from loom.agent.sources import load_sources
from loom.agent.store import ConversationStore
from loom.cloud import engine_pool
from loom.engines.registry import EnginePool
from loom.settings import Settings
from loom.tools.base import QueryLimits
from loom.tools.registry import TOOLS
from loom.tools.result_room import ResultRoom
from loom.tools.scheduler import QueryScheduler


def build_model(settings: Settings) -> ChatModel:
    """The configured model, or the offline stand-in when none is configured."""
    from loom.agent.model_maf import build_chat_model

    model = build_chat_model(settings)
    if model is not None:
        return model
    return OfflineModel(partial(load_sources, settings), TOOLS, settings.verified_match_threshold)


def build_agent(
    settings: Settings,
    store: ConversationStore,
    *,
    model: ChatModel | None = None,
    engines: EnginePool | None = None,
    access: SourceAccess | None = None,
) -> Agent:
    """The agent for `settings`; `access` decides who may use which source (by default, as the
    settings' sign-in mode says: see loom.access)."""
    from loom.agent.embeddings import build_embedder

    return Agent(
        model=model or build_model(settings),
        tools=TOOLS,
        store=store,
        engines=engines or engine_pool(settings),
        sources=partial(load_sources, settings),
        access=access or SourceAccess.of(settings),
        limits=TurnLimits.of(settings),
        bounds=ReplyBounds.of(settings),
        query_limits=QueryLimits.of(settings),
        embedder=build_embedder(settings),
        results=ResultRoom(
            settings.turn_result_bytes or 2 * settings.query_max_bytes,
            settings.tenant_result_bytes,
            settings.result_bytes_total,
        ),
        scheduler=QueryScheduler(
            settings.query_workers,
            settings.query_per_tenant,
            settings.query_per_user,
            settings.query_wait_s,
            per_source=settings.query_per_source,
        ),
    )
