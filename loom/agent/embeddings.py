"""Embeddings for schema linking, when an embedding model is configured (`LOOM_EMBEDDING_MODEL`).

Linking is synchronous (it runs in a worker thread beside the query engine), so this uses the
openai SDK's synchronous client against the same endpoint as the chat model. Column descriptions
repeat on every question, so vectors are cached by text and only new texts are sent.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import openai

from loom.cloud import azure_credential
from loom.settings import Provider, Settings

CACHE_TEXTS = 20_000
BATCH = 256  # texts per request: endpoints cap the input list


class OpenAIEmbedder:
    """`Embedder` (see engines/sql/linking.py) over an OpenAI-compatible embeddings endpoint."""

    def __init__(self, client: openai.OpenAI, model: str) -> None:
        self._client = client
        self._model = model
        self._cache: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if not self._cached(t)]
        for start in range(0, len(missing), BATCH):
            self._fetch(missing[start : start + BATCH])
        with self._lock:
            return [self._cache[t] for t in texts]

    def _cached(self, text: str) -> bool:
        with self._lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return True
            return False

    def _fetch(self, texts: list[str]) -> None:
        response = self._client.embeddings.create(model=self._model, input=texts)
        with self._lock:
            for text, item in zip(texts, sorted(response.data, key=lambda d: d.index), strict=True):
                self._cache[text] = list(item.embedding)
            while len(self._cache) > CACHE_TEXTS:
                self._cache.popitem(last=False)


def build_embedder(settings: Settings, *, http_client: Any = None) -> OpenAIEmbedder | None:
    """None unless an embedding model is configured and a model endpoint is."""
    if not settings.embedding_model or settings.provider is Provider.OFFLINE:
        return None
    common: dict[str, Any] = {
        "max_retries": settings.model_max_retries,
        "timeout": settings.model_timeout_s,
        "http_client": http_client,
    }
    if settings.provider is Provider.AZURE:
        return OpenAIEmbedder(openai.AzureOpenAI(**_azure(settings), **common), settings.embedding_model)
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    client = openai.OpenAI(base_url=settings.openai_base_url, api_key=key, **common)
    return OpenAIEmbedder(client, settings.embedding_model)


def _azure(settings: Settings) -> dict[str, Any]:
    auth: dict[str, Any]
    if settings.azure_openai_api_key:
        auth = {"api_key": settings.azure_openai_api_key.get_secret_value()}
    else:
        from azure.identity import get_bearer_token_provider

        provider = get_bearer_token_provider(azure_credential(settings), settings.cognitive_scope)
        auth = {"azure_ad_token_provider": provider}
    return {
        "azure_endpoint": settings.azure_openai_endpoint,
        "api_version": settings.azure_openai_api_version,
        **auth,
    }
