"""What a graph holds, read from the graph itself: vertex and edge labels with their counts, each
label's property keys with a type and a few sample values, and the vertex labels each edge label
joins. Property keys are read from a sample of each label's elements (`SAMPLE`), as a schema a
graph does not declare can only be seen.

The catalog is read with Gremlin traversals, written here once in the common form and handed to
the engine's `Run`, which renders them for its engine (graphersal, or a Gremlin server). A graph
that charges for reading (Cosmos DB) is counted over at most `scan` elements of each kind: past
that, labels are listed without counts rather than read whole.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from loom.engines.contracts import Catalog, ColumnInfo, EdgeLabel, Value, VertexLabel, json_safe

SAMPLE = 200  # elements of each label read for its property keys
SAMPLE_VALUES = 3  # shown per key
MOST_LABELS = 200  # labels described (a graph with more is described by its largest)


Run = Callable[[str], list[object]]  # runs one traversal (common form) and returns its results


def graph_catalog(run: Run, scan: int | None = None) -> Catalog:
    vertices, vertices_whole = _counts(run, "V", scan)
    edges, edges_whole = _counts(run, "E", scan)
    return Catalog(
        tables=[],
        vertex_labels=[
            VertexLabel(
                name=label, count=count if vertices_whole else None, properties=_keys(run, "V", label)
            )
            for label, count in vertices.most_common(MOST_LABELS)
        ],
        edge_labels=[
            _edge_label(run, label, count if edges_whole else None)
            for label, count in edges.most_common(MOST_LABELS)
        ],
    )


def _counts(run: Run, kind: str, scan: int | None) -> tuple[Counter[str], bool]:
    """Elements per label, and whether every element was counted."""
    cut = f".limit({scan})" if scan else ""
    found = run(f"g.{kind}(){cut}.groupCount().by(label)")
    first = found[0] if found else {}
    counts = Counter({str(k): int(v) for k, v in first.items()} if isinstance(first, dict) else {})
    return counts, scan is None or counts.total() < scan


def _keys(run: Run, kind: str, label: str) -> list[ColumnInfo]:
    maps = run(f"g.{kind}().hasLabel({_quoted(label)}).limit({SAMPLE}).valueMap()")
    seen: dict[str, list[Value]] = {}
    for item in maps:
        for key, values in item.items() if isinstance(item, dict) else ():
            listed = values if isinstance(values, list) else [values]
            samples = seen.setdefault(str(key), [])
            for value in listed:
                if len(samples) < SAMPLE_VALUES and json_safe(value) not in samples:
                    samples.append(json_safe(value))
    return [ColumnInfo(name=k, type=_type(v), sample_values=v) for k, v in sorted(seen.items())]


def _edge_label(run: Run, label: str, count: int | None) -> EdgeLabel:
    ends = [
        e
        for e in run(
            f"g.E().hasLabel({_quoted(label)}).limit({SAMPLE * 5})"
            ".project('o', 'i').by(outV().label()).by(inV().label()).dedup()"
        )
        if isinstance(e, dict)
    ]
    return EdgeLabel(
        name=label,
        count=count,
        out_labels=sorted({str(e["o"]) for e in ends}),
        in_labels=sorted({str(e["i"]) for e in ends}),
        properties=_keys(run, "E", label),
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
