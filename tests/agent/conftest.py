from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from loom.access import OPEN
from loom.agent.loop import Agent, TurnLimits
from loom.agent.model import ChatModel
from loom.agent.sqlite_store import SqliteConversationStore
from loom.engines.registry import EnginePool
from loom.engines.sources import DuckDBSource, Source, VerifiedQuery
from loom.lakehouse.seed import seed_lakehouse
from loom.settings import DEFAULTS
from loom.tools.base import Tool
from loom.tools.registry import TOOLS

VERIFIED = (
    VerifiedQuery(
        question="Number of orders per channel",
        query="SELECT s.channel, COUNT(DISTINCT f.order_id) AS orders FROM gold.fact_sales f "
        "JOIN gold.dim_store s USING (store_key) GROUP BY s.channel ORDER BY s.channel",
    ),
)


@pytest.fixture(scope="session")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lakehouse")
    seed_lakehouse(root, orders=1500)
    return root


@pytest.fixture
def source(lakehouse: Path) -> Source:
    return DuckDBSource(
        name="sales", location=str(lakehouse), description="test sales", verified_queries=VERIFIED
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteConversationStore]:
    s = SqliteConversationStore(tmp_path / "loom.db")
    yield s
    await s.close()


@pytest.fixture(scope="session")
def engines() -> EnginePool:
    return EnginePool()


AgentFactory = Callable[..., Agent]


@pytest.fixture
def make_agent(store: SqliteConversationStore, engines: EnginePool, source: Source) -> AgentFactory:
    def make(model: ChatModel, tools: Sequence[Tool] = TOOLS, **limits: Any) -> Agent:
        return Agent(
            model=model,
            tools=tools,
            store=store,
            engines=engines,
            sources=lambda: {source.name: source},
            access=OPEN,
            limits=replace(TurnLimits.of(DEFAULTS), **limits),
        )

    return make
