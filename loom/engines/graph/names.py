"""Labels and property keys a traversal names that the graph does not have, with the closest names
(for the repair loop), checked against the catalog before a query runs on either graph engine."""

from __future__ import annotations

import json
from collections.abc import Callable

from loom.engines.contracts import Catalog, Problem
from loom.engines.graph.gremlin import Traversal
from loom.engines.graph.validate import named_in, unknown_name

Run = Callable[[str], list[object]]  # runs one traversal written in the common form


def unknown_names(traversal: Traversal, catalog: Catalog, has_key: Callable[[str], bool]) -> list[Problem]:
    """The catalog lists every label, but its keys come from a sample of each label: a key it lacks
    is looked for in the graph (`has_key`) before it is called unknown."""
    vertex_labels = {v.name for v in catalog.vertex_labels}
    edge_labels = {e.name for e in catalog.edge_labels}
    sampled = {p.name for v in catalog.vertex_labels for p in v.properties}
    sampled |= {p.name for e in catalog.edge_labels for p in e.properties}
    labels, edges, keys = named_in(traversal)
    problems = [
        unknown_name("label", n, vertex_labels | edge_labels)
        for n in sorted(labels - vertex_labels - edge_labels)
    ]
    problems += [unknown_name("edge label", n, edge_labels) for n in sorted(edges - edge_labels)]
    problems += [unknown_name("property", k, sampled) for k in sorted(keys - sampled) if not has_key(k)]
    return problems


def has_key(run: Run, key: str) -> bool:
    """Whether any vertex or edge carries `key`: two reads of at most one element each."""
    quoted = json.dumps(key, ensure_ascii=False)
    return any(_count(run(f"g.{kind}().has({quoted}).limit(1).count()")) for kind in ("V", "E"))


def _count(found: list[object]) -> int:
    return int(found[0]) if found and isinstance(found[0], int | float) else 0
