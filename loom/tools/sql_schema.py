"""What schema the query-writing model sees: all of a small catalog, the linked part of a large one.

Schema linking (BM25 over names and descriptions, value matching, foreign-key closure) keeps the
prompt small and the model from inventing columns on wide lakehouses; on a small schema, showing
everything costs little and cannot miss a column, so linking starts above `LINK_ABOVE` columns.
The foreign keys and value index are built once per source and kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from loom.engines.contracts import Catalog, Engine
from loom.engines.sources import Source
from loom.engines.sql.keys import ForeignKey, foreign_keys, infer_foreign_keys
from loom.engines.sql.linking import Embedder, link
from loom.engines.sql.linking_values import ValueIndex
from loom.tools.schema_prompt import render_schema

LINK_ABOVE = 60  # columns


@dataclass(frozen=True)
class _Context:
    catalog: Catalog
    keys: list[ForeignKey]
    values: ValueIndex


_CONTEXTS: dict[tuple[object, ...], _Context] = {}
_LOCK = threading.Lock()


def _context(source: Source, engine: Engine) -> _Context:
    with _LOCK:
        known = _CONTEXTS.get(source.connection_key)
    if known is not None:
        return known
    catalog = engine.catalog()
    keys = foreign_keys(Path(source.location), catalog) if source.is_local else infer_foreign_keys(catalog)
    made = _Context(catalog, keys, ValueIndex.build(catalog))
    with _LOCK:
        return _CONTEXTS.setdefault(source.connection_key, made)


def schema_for(
    source: Source, engine: Engine, question: str, embedder: Embedder | None = None
) -> tuple[str, Catalog]:
    """The schema text for the prompt, and the whole catalog (for messages about what exists)."""
    context = _context(source, engine)
    catalog = context.catalog
    if sum(len(t.columns) for t in catalog.tables) <= LINK_ABOVE:
        return render_schema(catalog), catalog
    linked = link(question, catalog, context.keys, values=context.values, embedder=embedder)
    return render_schema(linked.to_catalog()), catalog
