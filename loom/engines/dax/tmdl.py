"""TMDL: the `definition/` folder Power BI Desktop projects (PBIP) save a model as.

TMDL is indentation-based: an object is `<type> <name>` (names with spaces in single quotes), with
`= <expression>` for one that has a default expression (a measure's DAX, on the same line or on the
lines below, indented two levels deeper, or between ``` fences); its properties (`key: value`, or a
flag such as `isHidden`) and child objects are indented one level deeper; `///` lines before an
object are its description. This reads every `.tmdl` file under the folder into one tree and takes
what a query needs from it (see `tmsl.py` for the same model as JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loom.engines.dax.model import Measure, ModelColumn, ModelError, ModelTable, Relationship, SemanticModel
from loom.engines.dax.tmsl import data_type, relationship


@dataclass
class _Object:
    kind: str
    name: str
    expression: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    children: list[_Object] = field(default_factory=list)
    description: str = ""

    def child(self, kind: str) -> _Object | None:
        return next((c for c in self.children if c.kind == kind), None)


def is_tmdl_folder(folder: Path) -> bool:
    return folder.is_dir() and any(folder.rglob("*.tmdl"))


def load_tmdl(folder: Path, name: str) -> SemanticModel:
    objects: list[_Object] = []
    for path in sorted(folder.rglob("*.tmdl")):
        try:
            objects.extend(_parse(path.read_text(encoding="utf-8-sig"), path.name))
        except OSError as e:
            raise ModelError(f"{path.name} cannot be read: {e}") from e
    model = SemanticModel(name)
    for obj in objects:
        if obj.kind == "model":
            model.description = obj.description
        elif obj.kind == "table":
            _table(model, obj)
        elif obj.kind == "relationship":
            model.relationships.append(_relationship(obj))
    return model


def _table(model: SemanticModel, obj: _Object) -> None:
    table = ModelTable(
        obj.name,
        description=obj.description,
        hidden="isHidden" in obj.properties,
        is_date_table=obj.properties.get("dataCategory") == "Time",
    )
    for child in obj.children:
        if child.kind == "column":
            table.add(_column(child))
        elif child.kind == "measure":
            model.add_measure(
                Measure(
                    child.name,
                    obj.name,
                    child.expression or "",
                    child.description,
                    child.properties.get("formatString", ""),
                    "isHidden" in child.properties,
                )
            )
        elif child.kind == "partition" and not table.data:
            table.data = _partition_data(child)
    model.add_table(table)


def _column(obj: _Object) -> ModelColumn:
    props = obj.properties
    return ModelColumn(
        obj.name,
        data_type(props.get("dataType", "string")),
        source=_unquote(props.get("sourceColumn", "")),
        hidden="isHidden" in props,
        description=obj.description,
        sort_by=_unquote(props["sortByColumn"]) if "sortByColumn" in props else None,
        expression=obj.expression,
        format_string=props.get("formatString", ""),
    )


def _partition_data(obj: _Object) -> str:
    source = obj.child("source")
    if obj.expression is not None and obj.expression.strip() == "entity" and source is not None:
        entity = _unquote(source.properties.get("entityName", ""))
        schema = _unquote(source.properties.get("schemaName", "")) or "main"
        return f"{schema}.{entity}" if entity else ""
    return ""


def _relationship(obj: _Object) -> Relationship:
    props = obj.properties
    try:
        from_table, from_column = _column_path(props["fromColumn"])
        to_table, to_column = _column_path(props["toColumn"])
    except KeyError as e:
        raise ModelError(f"the relationship {obj.name} has no {e.args[0]}") from e
    return relationship(
        {
            "fromTable": from_table,
            "fromColumn": from_column,
            "toTable": to_table,
            "toColumn": to_column,
            "isActive": props.get("isActive", "true").lower() != "false",
            "crossFilteringBehavior": props.get("crossFilteringBehavior", "oneDirection"),
            "fromCardinality": props.get("fromCardinality", "many"),
            "toCardinality": props.get("toCardinality", "one"),
        }
    )


# --- the text --------------------------------------------------------------------------------------


def _parse(text: str, file: str) -> list[_Object]:
    lines = text.replace("\r\n", "\n").split("\n")
    unit = _indent_unit(lines)
    top: list[_Object] = []
    stack: list[tuple[int, _Object]] = []
    description: list[str] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        i += 1
        if not stripped:
            continue
        depth = _depth(raw, unit)
        if stripped.startswith("///"):
            description.append(stripped[3:].strip())
            continue
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if not stack or _is_declaration(stripped, stack[-1][1]):
            obj, i = _declaration(stripped, lines, i, depth, unit, file)
            obj.description = "\n".join(description)
            description = []
            (stack[-1][1].children if stack else top).append(obj)
            stack.append((depth, obj))
            continue
        key, value, i = _property(stripped, lines, i, depth, unit)
        stack[-1][1].properties[key] = value
        description = []
    return top


_KINDS = frozenset(
    {"model", "database", "table", "column", "measure", "relationship", "partition", "hierarchy", "level",
     "annotation", "extendedProperty", "role", "tablePermission", "perspective", "culture", "expression",
     "ref", "calculationGroup", "calculationItem", "dataSource", "source", "linguisticMetadata",
     "queryGroup", "variation", "changedProperty", "formatStringDefinition", "detailRowsDefinition",
     "perspectiveTable", "perspectiveColumn", "perspectiveMeasure", "function"}
)  # fmt: skip


def _is_declaration(line: str, parent: _Object) -> bool:
    first = line.split(None, 1)[0]
    if ":" in first:
        return False  # a property: `dataType: int64`
    if first == "source" and parent.kind == "partition":
        return "=" not in line  # `source = let …` is the partition's M; a bare `source` holds an entity
    return first in _KINDS


def _declaration(
    line: str, lines: list[str], i: int, depth: int, unit: int, file: str
) -> tuple[_Object, int]:
    kind, _, rest = line.partition(" ")
    name, expression = rest, None
    head, eq, tail = _split_outside_quotes(rest, "=")
    if eq:
        name = head.strip()
        expression, i = _expression(tail.strip(), lines, i, depth, unit)
    if kind not in _KINDS:
        raise ModelError(f"{file}: {kind!r} is not a TMDL object")
    return _Object(kind, _unquote(name.strip()), expression), i


def _property(line: str, lines: list[str], i: int, depth: int, unit: int) -> tuple[str, str, int]:
    head, eq, tail = _split_outside_quotes(line, "=")
    key, colon, value = line.partition(":")
    if eq and (not colon or len(head) < len(key)):  # `source = …`, `expression = …`: an expression
        text, i = _expression(tail.strip(), lines, i, depth, unit)
        return head.strip(), text, i
    if not colon:
        return line.strip(), "true", i  # a flag: `isHidden`
    return key.strip(), value.strip(), i


def _expression(first: str, lines: list[str], i: int, depth: int, unit: int) -> tuple[str, int]:
    """An expression starting after `=`: the rest of the line, the lines below indented deeper
    than the object's properties, or a ``` fenced block."""
    if first.startswith("```"):
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        return _dedent(body), i + 1
    body = [first] if first else []
    while i < len(lines) and (not lines[i].strip() or _depth(lines[i], unit) > depth + 1):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
    return _dedent(body), i


def _dedent(lines: list[str]) -> str:
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    cut = min(indents, default=0)
    return "\n".join([lines[0].strip() if lines else "", *(line[cut:] for line in lines[1:])]).strip()


def _indent_unit(lines: list[str]) -> int:
    """Tabs are one level each; with spaces, the narrowest indentation used is a level."""
    widths = [len(line) - len(line.lstrip(" ")) for line in lines if line.startswith(" ") and line.strip()]
    return min(widths, default=4) or 4


def _depth(line: str, unit: int) -> int:
    leading = line[: len(line) - len(line.lstrip())]
    return leading.count("\t") + leading.count(" ") // unit


def _split_outside_quotes(text: str, sep: str) -> tuple[str, str, str]:
    quoted = False
    for k, c in enumerate(text):
        if c == "'":
            quoted = not quoted
        elif c == sep and not quoted:
            return text[:k], sep, text[k + 1 :]
    return text, "", ""


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
        return name[1:-1].replace(name[0] * 2, name[0])
    return name


def _column_path(ref: str) -> tuple[str, str]:
    """`Sales.'Product Key'` → ("Sales", "Product Key")."""
    quoted = False
    for k, c in enumerate(ref):
        if c == "'":
            quoted = not quoted
        elif c == "." and not quoted:
            return _unquote(ref[:k]), _unquote(ref[k + 1 :])
    raise ModelError(f"{ref!r} is not a Table.Column reference")
