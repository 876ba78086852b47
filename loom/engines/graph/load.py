"""A local graph source, loaded into the embedded engine with its own element ids.

Two forms: a GraphSON file (`.json`, `.graphson`: one vertex per line, with its edges), read by the
engine as it is; or a folder with the air-routes CSV form, a nodes file (`~id,~label,name:type,…`)
and an edges file (`~id,~from,~to,~label,name:type,…`). The engine has no CSV reader and takes no
lists from Python, so the CSV becomes plain GraphSON lines in a temporary file first (0.5 s for
air-routes' 3,749 vertices and 57,645 edges; the engine's import 0.2 s). `~id` stays the element's
id, so `g.V(3)`, `hasId(8)` and `g.E(5161)` find what the files call 3, 8 and 5161.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import graphersal

GRAPHSON_SUFFIXES = (".json", ".graphson", ".jsonl")


# A column's `:type` → how its text is read (Neptune's CSV types); anything else stays text.
def _boolean(text: str) -> bool:
    return text.strip().lower() == "true"


_READERS: dict[str, Callable[[str], object]] = {
    "int": int, "long": int, "short": int, "byte": int,
    "double": float, "float": float, "bool": _boolean, "boolean": _boolean,
}  # fmt: skip


class GraphLoadError(ValueError):
    """The files are not a graph this loader reads; the message names what is wrong, not where."""


def load_graph(location: Path, *, memory_limit: int | None = None) -> graphersal.Graph:
    """The graph at `location` (a GraphSON file, or a folder of nodes and edges CSV files)."""
    if location.is_file() and location.suffix.lower() in GRAPHSON_SUFFIXES:
        return graphersal.Graph.from_graphson(str(location), memory_limit=memory_limit)
    nodes, edges = graph_files(location)
    with tempfile.TemporaryDirectory(prefix="loom-graph-") as folder:
        lines = Path(folder) / "graph.json"
        write_graphson(nodes, edges, lines)
        return graphersal.Graph.from_graphson(str(lines), memory_limit=memory_limit)


def graph_files(folder: Path) -> tuple[Path, Path]:
    """The nodes and edges CSV files of a graph folder (`nodes.csv`, or a name ending in it)."""
    if not folder.is_dir():
        raise GraphLoadError(f"{folder.name!r} is neither a GraphSON file nor a folder of nodes and edges")
    found = {}
    for kind in ("nodes", "edges"):
        named = sorted(p for p in folder.glob("*.csv") if p.stem.lower().endswith(kind))
        if len(named) != 1:
            raise GraphLoadError(
                f"a graph folder holds one *{kind}.csv file; {folder.name!r} has {len(named)}"
            )
        found[kind] = named[0]
    return found["nodes"], found["edges"]


def write_graphson(nodes: Path, edges: Path, out: Path) -> None:
    """Plain GraphSON lines (untyped values, out-edges only: what the engine imports fastest)."""
    vertices: dict[str, dict[str, object]] = {}
    for row in _rows(nodes):
        vertices[row.id] = {"id": _id(row.id), "label": row.label, "properties": {
            k: [{"id": 0, "value": v}] for k, v in row.properties.items()
        }}  # fmt: skip
    for row in _rows(edges):
        start = vertices.get(row.start)
        if start is None or row.end not in vertices:
            raise GraphLoadError(f"edge {row.id} joins a vertex the nodes file does not have")
        out_edges = start.setdefault("outE", {})
        assert isinstance(out_edges, dict)
        out_edges.setdefault(row.label, []).append(
            {"id": _id(row.id), "inV": _id(row.end), "properties": row.properties}
        )
    with out.open("w", encoding="utf-8") as file:
        for vertex in vertices.values():
            file.write(json.dumps(vertex, ensure_ascii=False) + "\n")


class _Row:
    __slots__ = ("id", "label", "start", "end", "properties")

    def __init__(self, fields: dict[str, str], properties: dict[str, object]) -> None:
        self.id, self.label = fields.get("~id", ""), fields.get("~label", "")
        self.start, self.end = fields.get("~from", ""), fields.get("~to", "")
        self.properties = properties


def _rows(path: Path) -> Iterator[_Row]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = [_column(c) for c in next(reader, [])]
        if not any(name == "~id" for name, _ in header):
            raise GraphLoadError(f"{path.name}: the first line names the columns, ~id among them")
        for values in reader:
            fields: dict[str, str] = {}
            properties: dict[str, object] = {}
            for (name, kind), text in zip(header, values, strict=False):
                if name.startswith("~"):
                    fields[name] = text
                elif text != "":
                    properties[name] = _value(text, kind, path)
            yield _Row(fields, properties)


def _column(header: str) -> tuple[str, str]:
    name, _, kind = header.partition(":")
    return name.strip(), kind.strip().lower()


def _value(text: str, kind: str, path: Path) -> object:
    read = _READERS.get(kind)
    if read is None:
        return text
    try:
        return read(text)
    except ValueError:
        raise GraphLoadError(f"{path.name}: {text[:40]!r} is not a {kind}") from None


def _id(text: str) -> object:
    """A numeric id as a number (the engine keeps every id as text either way)."""
    return int(text) if text.isdigit() else text
