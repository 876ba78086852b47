"""What schema the query-writing model sees: all of a small catalog, the linked part of a large one.

Schema linking (BM25 over names and descriptions, value matching, foreign-key closure) keeps the
prompt small and the model from inventing columns on wide lakehouses; on a small schema, showing
everything costs little and cannot miss a column, so linking starts above `LINK_ABOVE` columns.
The foreign keys and value index are built once per source and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from loom.engines.contracts import Catalog, Engine
from loom.engines.sources import Source
from loom.engines.sql.keys import ForeignKey, foreign_keys, infer_foreign_keys
from loom.engines.sql.linking import link
from loom.engines.sql.linking_values import ValueIndex
from loom.tools.schema_prompt import render_schema

LINK_ABOVE = 60  # columns


@dataclass(frozen=True)
class _Context:
    catalog: Catalog
    keys: list[ForeignKey]
    values: ValueIndex


@lru_cache(maxsize=32)
def _context(source: Source, engine: Engine) -> _Context:
    catalog = engine.catalog()
    location = Path(source.location)
    keys = foreign_keys(location, catalog) if location.exists() else infer_foreign_keys(catalog)
    return _Context(catalog, keys, ValueIndex.build(catalog))


def schema_for(source: Source, engine: Engine, question: str) -> tuple[str, Catalog]:
    """The schema text for the prompt, and the whole catalog (for messages about what exists)."""
    context = _context(source, engine)
    catalog = context.catalog
    if sum(len(t.columns) for t in catalog.tables) <= LINK_ABOVE:
        return render_schema(catalog), catalog
    linked = link(question, catalog, context.keys, values=context.values)
    return render_schema(linked.to_catalog()), catalog
