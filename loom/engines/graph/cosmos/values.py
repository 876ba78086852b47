"""Cosmos DB's Gremlin results as the graph tools carry them (DESIGN.md: one `value` per traverser
result; vertices and edges as `{id, label, properties}`; a path as a list).

Cosmos DB answers in GraphSON 2 without type tags: a vertex is `{"id", "label", "type": "vertex",
"properties": {"name": [{"id", "value"}]}}` (every property a list of vertex properties), an edge
`{"id", "label", "type": "edge", "inV", "outV", "inVLabel", "outVLabel", "properties": {"w": 1}}`,
a path `{"labels": [...], "objects": [...]}`. A typed answer (`g:Vertex`…, as another Gremlin server
sends) arrives as gremlinpython's objects and is shaped the same way.
"""

from __future__ import annotations

from gremlin_python.structure.graph import Edge, Path, Property, Vertex, VertexProperty

from loom.engines.contracts import Value, json_safe


def cosmos_value(item: object) -> Value:
    if isinstance(item, dict):
        return _element(item) if item.get("type") in ("vertex", "edge") else _mapping(item)
    if isinstance(item, Vertex | Edge):
        return _typed(item)
    if isinstance(item, Path):
        return [cosmos_value(v) for v in item.objects]
    if isinstance(item, VertexProperty | Property):
        return cosmos_value(item.value)
    if isinstance(item, list | tuple | set):
        return [cosmos_value(v) for v in item]
    return json_safe(item)


def _mapping(item: dict[object, object]) -> Value:
    if set(item) == {"labels", "objects"} and isinstance(item["objects"], list):
        return [cosmos_value(v) for v in item["objects"]]  # a path
    return {_key(k): cosmos_value(v) for k, v in item.items()}


def _element(item: dict[object, object]) -> Value:
    shaped: dict[str, Value] = {"id": json_safe(item.get("id")), "label": json_safe(item.get("label"))}
    if item.get("type") == "edge":
        shaped["outV"], shaped["inV"] = json_safe(item.get("outV")), json_safe(item.get("inV"))
    properties = item.get("properties")
    shaped["properties"] = _properties(properties) if isinstance(properties, dict) else {}
    return shaped


def _properties(properties: dict[object, object]) -> dict[str, Value]:
    """A vertex's properties as `{key: value}` (a list when the key holds several), an edge's as sent."""
    out: dict[str, Value] = {}
    for key, held in properties.items():
        if isinstance(held, list):
            values = [p.get("value") if isinstance(p, dict) else cosmos_value(p) for p in held]
            out[str(key)] = json_safe(values[0]) if len(values) == 1 else [json_safe(v) for v in values]
        else:
            out[str(key)] = cosmos_value(held)
    return out


def _typed(item: Vertex | Edge) -> Value:
    shaped: dict[str, Value] = {"id": json_safe(item.id), "label": item.label}
    if isinstance(item, Edge):
        shaped["outV"], shaped["inV"] = json_safe(item.outV.id), json_safe(item.inV.id)
    grouped: dict[str, list[Value]] = {}
    for held in item.properties or []:
        key = getattr(held, "label", None) or getattr(held, "key", "")
        grouped.setdefault(str(key), []).append(json_safe(held.value))
    shaped["properties"] = {k: v[0] if len(v) == 1 else v for k, v in grouped.items()}
    return shaped


def _key(key: object) -> str:
    if isinstance(key, Vertex | Edge):
        return str(key.id)
    return str(key) if not isinstance(key, str) else key
