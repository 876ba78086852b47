"""Reaching Azure from Settings: the one Azure credential builder, and the engine pool it signs
cloud sources in with.

The credential is DefaultAzureCredential signing in at the cloud's authority
(login.microsoftonline.us in Azure Government), for the model, embeddings and sources alike;
token scopes are chosen by each caller for its service and cloud. azure-identity is imported when
a credential is first needed, so commands that never reach Azure start without it.
"""

from __future__ import annotations

import os
from functools import partial
from typing import TYPE_CHECKING

from loom.engines.contracts import Embedder
from loom.engines.registry import CloudAccess, EnginePool
from loom.engines.sql.limits import LocalLimits
from loom.settings import LOGIN_AUTHORITY, Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def azure_credential(settings: Settings) -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(authority=LOGIN_AUTHORITY[settings.azure_cloud])


def engine_pool(settings: Settings) -> EnginePool:
    """Engines for the configured sources; cloud ones sign in with the cloud's authority, embedded
    ones get their memory, threads and spill space."""
    token = settings.databricks_token.get_secret_value() if settings.databricks_token else None
    local = LocalLimits(
        memory_limit=settings.duckdb_memory_limit,
        threads=settings.duckdb_threads,
        temp_directory=str(settings.duckdb_temp_dir),
        max_temp_size=settings.duckdb_max_temp_size,
        isolated=settings.engine_processes,
        process_memory=settings.duckdb_process_memory,
        idle_s=settings.engine_idle_s,
        total_memory=settings.engines_memory,
    )
    credential = partial(azure_credential, settings)
    return EnginePool(
        CloudAccess(
            settings.azure_cloud.value,
            credential,
            token,
            local,
            secret=os.environ.get,
            embedding_model=settings.embedding_model,
            embedder=partial(_embedder, settings),
        )
    )


def _embedder(settings: Settings) -> Embedder | None:
    from loom.agent.embeddings import build_embedder

    return build_embedder(settings)
