"""What schema the query-writing model sees: all of a small catalog, the linked part of a large one.

Schema linking (BM25 over names and descriptions, value matching, foreign-key closure) keeps the
prompt small and the model from inventing columns on wide lakehouses; on a small schema, showing
everything costs little and cannot miss a column, so linking starts above `SchemaView.link_above`
columns (60 by default).
A source's foreign keys and value index (for a local source, the distinct values of its text
columns, read through the engine so validation and limits apply; a cloud source is never scanned
for them) are built once per catalog the engine holds and kept; `loom catalog link` uses the same
context.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from loom.engines.contracts import Catalog, Embedder, Engine, ForeignKey
from loom.engines.sources import DuckDBSource, Source
from loom.engines.sql.keys import foreign_keys, infer_foreign_keys
from loom.engines.sql.linking import LinkedSchema, link
from loom.engines.sql.linking_values import ValueIndex, engine_fetcher
from loom.settings import SchemaForm
from loom.tools.querygen import SchemaContext
from loom.tools.schema_prompt import DEFAULT_VIEW, SchemaView, render_schema


@dataclass(frozen=True)
class _Context:
    catalog: Catalog
    keys: list[ForeignKey]
    values: ValueIndex
    whole: dict[SchemaForm, str]  # the whole catalog as the prompt shows it, in each form asked for

    def rendered(self, form: SchemaForm) -> str:
        """The whole catalog in `form`, rendered once (a race renders it twice, to the same text)."""
        text = self.whole.get(form)
        if text is None:
            text = self.whole[form] = render_schema(self.catalog, keys=self.keys, form=form)
        return text


_CONTEXTS: dict[tuple[object, ...], _Context] = {}
_LOCK = threading.Lock()


def _context(source: Source, engine: Engine) -> _Context:
    """The source's context, built again when the engine's catalog is a new one (its data changed)."""
    catalog = engine.catalog()
    with _LOCK:
        known = _CONTEXTS.get(source.connection_key)
    if known is not None and known.catalog is catalog:
        return known
    if isinstance(source, DuckDBSource):
        keys = foreign_keys(Path(source.location), catalog)
        values = ValueIndex.build(catalog, engine_fetcher(engine))
    else:
        # No value sampling on a cloud source: a GROUP BY per text column is a scan per column,
        # which Synapse Serverless and Databricks bill for. Its catalog's own samples (none) serve.
        keys, values = infer_foreign_keys(catalog), ValueIndex.build(catalog)
    made = _Context(catalog, keys, values, {})
    with _LOCK:
        _CONTEXTS[source.connection_key] = made
    return made


def link_question(
    source: Source, engine: Engine, question: str, *, evidence: str = "", embedder: Embedder | None = None
) -> LinkedSchema:
    """The tables and columns of `source` that `question` needs, with the reasons."""
    context = _context(source, engine)
    return link(
        question, context.catalog, context.keys, evidence=evidence, values=context.values, embedder=embedder
    )


def schema_for(
    source: Source,
    engine: Engine,
    question: str,
    embedder: Embedder | None = None,
    view: SchemaView = DEFAULT_VIEW,
) -> SchemaContext:
    """The schema text for the prompt, and the whole catalog (for messages about what exists)."""
    context = _context(source, engine)
    if _small(context.catalog, view):
        return SchemaContext(context.rendered(view.form), context.catalog, tuple(context.keys))
    linked = link_question(source, engine, question, embedder=embedder)
    shown = render_schema(linked.to_catalog(), context.catalog.unavailable, context.keys, view.form)
    return SchemaContext(shown, context.catalog, tuple(context.keys))


def known_whole_schema(
    source: Source, engine: Engine, view: SchemaView = DEFAULT_VIEW
) -> SchemaContext | None:
    """`schema_for`'s answer when it needs no work: the source's context is built from the
    engine's current catalog, and that catalog is small. The caller can then skip the worker
    thread that building, linking or checking the source for changes needs."""
    catalog = engine.loaded_catalog()
    with _LOCK:
        context = _CONTEXTS.get(source.connection_key)
    if catalog is None or context is None or context.catalog is not catalog or not _small(catalog, view):
        return None
    return SchemaContext(context.rendered(view.form), context.catalog, tuple(context.keys))


def _small(catalog: Catalog, view: SchemaView) -> bool:
    return sum(len(t.columns) for t in catalog.tables) <= view.link_above
