"""What schema the Gremlin-writing model sees: the graph's vertex and edge labels, each label's
property keys with their types and a few sample values, and which vertex labels each edge label
joins (`route: airport → airport`) — the shape a traversal walks."""

from __future__ import annotations

from loom.engines.contracts import Catalog, ColumnInfo, Embedder, Engine, Value
from loom.engines.sources import Source
from loom.tools.querygen import SchemaContext
from loom.tools.schema_prompt import DEFAULT_VIEW, MAX_SAMPLES, SchemaView


def graph_schema_for(
    source: Source,
    engine: Engine,
    question: str,
    embedder: Embedder | None = None,
    view: SchemaView = DEFAULT_VIEW,
) -> SchemaContext:
    catalog = engine.catalog()
    return SchemaContext(render_graph_schema(catalog), catalog)


def known_graph_schema(
    source: Source, engine: Engine, view: SchemaView = DEFAULT_VIEW
) -> SchemaContext | None:
    """`graph_schema_for`'s answer when the engine's catalog is in hand: no worker needed."""
    catalog = engine.loaded_catalog()
    return None if catalog is None else SchemaContext(render_graph_schema(catalog), catalog)


def render_graph_schema(catalog: Catalog) -> str:
    vertices = [f"- {v.name}{_count(v.count)}: {_keys(v.properties)}" for v in catalog.vertex_labels]
    edges = [
        f"- {e.name}{_count(e.count)}: {_ends(e.out_labels)} → {_ends(e.in_labels)}"
        + (f"; {_keys(e.properties)}" if e.properties else "")
        for e in catalog.edge_labels
    ]
    direction = (
        "An edge goes from the label on its left to the one on its right: out('e') walks that way, "
        "in('e') back (the vertices that reach this one), both('e') either way."
    )
    lines = ["Vertex labels:", *vertices, "Edge labels (from → to):", *edges, direction]
    if catalog.partition_key:
        key = catalog.partition_key
        lines.append(
            f"The graph is partitioned by the property {key!r}: when the question names its value, "
            f"start with has({key!r}, value) so the traversal reads one partition, not all of them."
        )
    return "\n".join(lines)


def _count(count: int | None) -> str:
    return f" ({count:,})" if count is not None else ""


def _ends(labels: list[str]) -> str:
    return " | ".join(labels) or "?"


def _keys(properties: list[ColumnInfo]) -> str:
    return ", ".join(f"{p.name}: {p.type}{_samples(p.sample_values)}" for p in properties) or "no properties"


def _samples(values: list[Value]) -> str:
    shown = [repr(v) for v in values[:MAX_SAMPLES]]
    return f" e.g. {', '.join(shown)}" if shown else ""
