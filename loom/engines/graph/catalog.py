"""What a graph holds, read from the graph itself: vertex and edge labels with their counts, each
label's property keys with a type and a few sample values, and the vertex labels each edge label
joins. Property keys are read from a sample of each label's elements (`SAMPLE`), as a schema a
graph does not declare can only be seen."""

from __future__ import annotations

import json
from collections import Counter

import graphersal

from loom.engines.contracts import Catalog, ColumnInfo, EdgeLabel, Value, VertexLabel, json_safe

SAMPLE = 200  # elements of each label read for its property keys
SAMPLE_VALUES = 3  # shown per key
MOST_LABELS = 200  # labels described (a graph with more is described by its largest)


def graph_catalog(graph: graphersal.Graph) -> Catalog:
    vertices = _counts(graph, "V")
    edges = _counts(graph, "E")
    return Catalog(
        tables=[],
        vertex_labels=[
            VertexLabel(name=label, count=count, properties=_keys(graph, "V", label))
            for label, count in vertices.most_common(MOST_LABELS)
        ],
        edge_labels=[_edge_label(graph, label, count) for label, count in edges.most_common(MOST_LABELS)],
    )


def _counts(graph: graphersal.Graph, kind: str) -> Counter[str]:
    found = graph.execute(f"g.{kind}().groupCount().by(T.label)")
    return Counter({str(k): int(v) for k, v in (found[0] if found else {}).items()})


def _keys(graph: graphersal.Graph, kind: str, label: str) -> list[ColumnInfo]:
    maps = graph.execute(f"g.{kind}().hasLabel({_quoted(label)}).limit({SAMPLE}).valueMap()")
    seen: dict[str, list[Value]] = {}
    for item in maps:
        for key, values in item.items():
            listed = values if isinstance(values, list) else [values]
            samples = seen.setdefault(str(key), [])
            for value in listed:
                if len(samples) < SAMPLE_VALUES and json_safe(value) not in samples:
                    samples.append(json_safe(value))
    return [ColumnInfo(name=k, type=_type(v), sample_values=v) for k, v in sorted(seen.items())]


def _edge_label(graph: graphersal.Graph, label: str, count: int) -> EdgeLabel:
    ends = graph.execute(
        f"g.E().hasLabel({_quoted(label)}).limit({SAMPLE * 5})"
        '.project("o", "i").by(__.outV().label()).by(__.inV().label()).dedup()'
    )
    return EdgeLabel(
        name=label,
        count=count,
        out_labels=sorted({str(e["o"]) for e in ends}),
        in_labels=sorted({str(e["i"]) for e in ends}),
        properties=_keys(graph, "E", label),
    )


def _type(samples: list[Value]) -> str:
    kinds = {type(v) for v in samples if v is not None}
    if kinds == {bool}:
        return "boolean"
    if kinds and kinds <= {int}:
        return "long"
    if kinds and kinds <= {int, float}:
        return "double"
    return "string"


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
