"""Embeddings for schema linking, over the real HTTP path against the local OpenAI-compatible server."""

from loom.agent.embeddings import build_embedder
from loom.engines.contracts import Catalog, ColumnInfo, TableInfo
from loom.engines.sql.linking import link
from loom.settings import Settings
from tests.support.openai_server import OpenAICompatServer


def settings_for(server: OpenAICompatServer, **extra: object) -> Settings:
    return Settings(openai_base_url=server.base_url, model="m", model_max_retries=0, **extra)  # type: ignore[arg-type]


def test_no_embedding_model_means_no_embedder(openai_server: OpenAICompatServer) -> None:
    assert build_embedder(settings_for(openai_server)) is None
    assert build_embedder(Settings(embedding_model="e")) is None  # offline: no endpoint


def test_vectors_come_back_in_order_and_repeats_are_not_sent_again(openai_server: OpenAICompatServer) -> None:
    embedder = build_embedder(settings_for(openai_server, embedding_model="text-embedding-3-small"))
    assert embedder is not None
    first = embedder.embed(["apple pie", "car engine", "apple pie"])
    assert first[0] == first[2]
    assert first[0] != first[1]
    embedder.embed(["car engine", "new text"])
    sent = [r.body["input"] for r in openai_server.recorded if r.path.endswith("/embeddings")]
    assert sent == [["apple pie", "car engine"], ["new text"]]
    assert openai_server.recorded[0].body["model"] == "text-embedding-3-small"


def test_linking_uses_the_embedder_when_given(openai_server: OpenAICompatServer) -> None:
    embedder = build_embedder(settings_for(openai_server, embedding_model="e"))
    catalog = Catalog(
        tables=[
            TableInfo(
                name="staff", columns=[ColumnInfo(name="wage", type="float", description="yearly salary")]
            ),
            TableInfo(name="parts", columns=[ColumnInfo(name="weight", type="float")]),
        ]
    )
    linked = link("What is the yearly salary?", catalog, [], embedder=embedder)
    reasons = linked.scores["staff"].columns["wage"].reasons
    assert any(r.startswith("embedding") for r in reasons)
    assert [t.name for t in linked.tables][0] == "staff"
