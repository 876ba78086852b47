"""Data sources: what the agent may query, described for the model, with verified queries.

A sources file (YAML) lists sources; with none, the seeded sample lakehouse is the one source,
so zero configuration still gives the agent something real to answer from.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from loom.engines.contracts import QueryError
from loom.engines.registry import answerable
from loom.engines.sources import (
    KINDS,
    DuckDBSource,
    GraphSource,
    IndexSource,
    ModelSource,
    Source,
    SourceSpec,
    VerifiedQuery,
)
from loom.prompts import load_verified_queries
from loom.settings import Settings

SAMPLE_SOURCE = "sales"
STORMS_SOURCE = "storms"
MODEL_SOURCE = "sales-model"
GRAPH_SOURCE = "sales-graph"


class SourcesFile(BaseModel):
    sources: list[SourceSpec]


class SourcesFileError(ValueError):
    """The sources file cannot be used as it is; the message says where and why."""


class UnknownSourceError(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.message = f"unknown source {name!r}; known sources: {', '.join(known) or 'none'}"

    def __str__(self) -> str:
        return self.message


def sample_source(settings: Settings) -> DuckDBSource:
    """The seeded sales lakehouse (`loom data seed`) with its packaged verified queries."""
    return _sample(settings.lakehouse_dir)


def _sample(lakehouse: Path) -> DuckDBSource:
    return DuckDBSource(
        name=SAMPLE_SOURCE,
        location=str(lakehouse),
        description="Sample retail sales lakehouse: a star schema of orders, products, customers and "
        "stores, in bronze (raw), silver (cleaned) and gold (modelled) layers.",
        instructions="Prefer the gold layer. Revenue is fact_sales.net_amount; dates join through "
        "dim_date.date_key. Money is in US dollars.",
        verified_queries=tuple(VerifiedQuery(**q) for q in load_verified_queries(SAMPLE_SOURCE)),
        allow=("*",),  # public sample data: every signed-in user of the server's tenant
    )


SALES_MODEL = Path(__file__).resolve().parents[1] / "lakehouse" / "models" / "sales"


def _sales_model(lakehouse: Path) -> ModelSource:
    """The sample lakehouse's gold layer as a Power BI semantic model (Direct Lake), asked in DAX."""
    return ModelSource(
        kind="model",
        name=MODEL_SOURCE,
        location=str(SALES_MODEL),
        lakehouse=str(lakehouse),
        description="The sample retail sales as a Power BI semantic model: measures Revenue, Orders, "
        "Units, Customers, Average Order Value, Revenue YTD, Revenue Last Year, Revenue Growth %.",
        instructions="Use the model's measures for revenue and counts. Dates are in 'Date'.",
        verified_queries=tuple(VerifiedQuery(**q) for q in load_verified_queries(MODEL_SOURCE)),
        allow=("*",),
        default=False,  # the same data as `sales`: asked in DAX when named (`--source sales-model`)
    )


def _storms(folder: Path) -> DuckDBSource:
    return DuckDBSource(
        name=STORMS_SOURCE,
        location=str(folder),
        description="Sample US severe-weather events of 2007 (StormEvents, shaped as in Microsoft's "
        "KQL documentation, generated) and state populations (PopulationData).",
        instructions="StartTime is when an event began; DamageProperty and DamageCrops are in US "
        "dollars; State names are upper case (TEXAS).",
        languages=("kql",),  # the telemetry-style sample: the agent answers it in KQL
        allow=("*",),
    )


def _graph(folder: Path) -> GraphSource:
    return GraphSource(
        kind="graph",
        name=GRAPH_SOURCE,
        location=str(folder),
        description="The sample sales as a graph: customers, products, stores, categories and regions; "
        "who bought what (bought: orders, revenue), who shopped where (shopped_at), in_category, "
        "in_region; and the lakehouse's lineage (table -feeds-> table).",
        instructions="Vertex names are in 'name'. Revenue is on bought edges, in US dollars.",
        verified_queries=tuple(VerifiedQuery(**q) for q in load_verified_queries(GRAPH_SOURCE)),
        allow=("*",),
        default=False,  # the same data as `sales`: asked in Gremlin when named (`--source sales-graph`)
    )


def load_sources(settings: Settings) -> dict[str, Source]:
    """Sources by name: the sources file if there is one, else the sample lakehouse (and the
    StormEvents sample and the sample graph, once seeded).

    Read on every turn so edits apply without a restart, but parsed again only when the file
    changes: parsing YAML cost more than the rest of a turn's own work.
    """
    path = settings.resolved_sources_file
    if not path.exists():
        storms, graph = settings.storms_dir, settings.graph_dir
        return _sample_sources(
            settings.lakehouse_dir, storms if storms.is_dir() else None, graph if graph.is_dir() else None
        )
    return dict(_parse_sources_file(path, path.stat().st_mtime_ns))


@lru_cache(maxsize=8)
def _sample_sources(lakehouse: Path, storms: Path | None, graph: Path | None = None) -> dict[str, Source]:
    samples: dict[str, Source] = {SAMPLE_SOURCE: _sample(lakehouse), MODEL_SOURCE: _sales_model(lakehouse)}
    if storms is not None:
        samples[STORMS_SOURCE] = _storms(storms)
    if graph is not None:
        samples[GRAPH_SOURCE] = _graph(graph)
    return samples


@lru_cache(maxsize=8)
def _parse_sources_file(path: Path, mtime_ns: int) -> tuple[tuple[str, Source], ...]:
    """The file's sources; SourcesFileError naming the file and each problem when it is unusable."""
    try:
        parsed = SourcesFile.model_validate(yaml.safe_load(path.read_text()) or {"sources": []})
    except yaml.YAMLError as e:
        raise SourcesFileError(f"the sources file {path} is not valid YAML: {_yaml_problem(e)}") from e
    except ValidationError as e:
        raise SourcesFileError(f"the sources file {path} has problems: {_problems(e)}") from e
    except OSError as e:
        raise SourcesFileError(f"the sources file {path} cannot be read: {e}") from e
    unanswered = [_unanswered(s) for s in parsed.sources if _unanswered(s)]
    if unanswered:
        raise SourcesFileError(f"the sources file {path} has problems: {'; '.join(unanswered)}")
    names = [s.name for s in parsed.sources]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SourcesFileError(f"the sources file {path} names more than one source {', '.join(repeated)}")
    return tuple((s.name, resolve_location(s, path.parent)) for s in parsed.sources)


def _unanswered(source: Source) -> str:
    """What `source` lists in `languages` that its kind does not answer ("" when nothing)."""
    known = answerable(source)
    missing = [language for language in source.languages if language not in known]
    if not missing:
        return ""
    listed, answered = ", ".join(missing), ", ".join(known)
    return f"source {source.name!r} lists {listed}; a {source.kind} source answers {answered}"


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def _problems(error: ValidationError, most: int = 5) -> str:
    """`sources[1].kind: kind must be one of …` for each problem (the first `most`)."""
    shown = [
        f"{_where(problem['loc'], problem['type']) or 'the file'}: {_message(problem)}"
        for problem in error.errors()[:most]
    ]
    more = error.error_count() - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _where(loc: tuple[int | str, ...], kind: str) -> str:
    # A source's kind appears in the location as the union's tag (`sources[2].synapse.database`):
    # the user wrote no such key, so it is left out.
    parts = [p for i, p in enumerate(loc) if not (p in KINDS and i and isinstance(loc[i - 1], int))]
    if kind == "unknown_kind":
        parts.append("kind")
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def _message(problem: Any) -> str:
    if problem["type"] == "extra_forbidden":
        kind = next((p for p in problem["loc"] if p in KINDS), "this")
        return f"not a field of a {kind} source"
    return str(problem["msg"])


def resolve_location(source: Source, base: Path) -> Source:
    if not isinstance(source, DuckDBSource | GraphSource | IndexSource):  # a host name, not a path
        return source
    location = Path(source.location).expanduser()
    if not location.is_absolute():
        location = base / location
    return source.model_copy(update={"location": str(location)})


def pick_sources(all_sources: Mapping[str, Source], names: list[str] | None) -> list[Source]:
    if not names:
        return [s for s in all_sources.values() if s.default]
    missing = [n for n in names if n not in all_sources]
    if missing:
        raise UnknownSourceError(missing[0], sorted(all_sources))
    return [all_sources[n] for n in names]


def resolve_source(ref: str, settings: Settings, language: str | None = None) -> Source:
    """A configured source by name, else a local file or folder given by path (QueryError if neither,
    or if the sources file is unusable: the query commands report both the same way). A folder
    asked for in DAX is a semantic model folder; a path asked for in Gremlin, a graph."""
    try:
        sources = load_sources(settings)
    except SourcesFileError as e:
        raise QueryError("sources_file_invalid", str(e)) from e
    if ref in sources:
        return sources[ref]
    path = Path(ref).expanduser()
    if path.is_dir() and language == "dax":
        return ModelSource(kind="model", name=path.name or "model", location=str(path.resolve()))
    if path.exists() and language == "gremlin":  # a GraphSON file, or a nodes and edges folder
        return GraphSource(kind="graph", name=path.stem or "graph", location=str(path.resolve()))
    if path.is_dir() and language == "search":  # an index folder
        return IndexSource(kind="index", name=path.name or "index", location=str(path.resolve()))
    if path.exists():
        return DuckDBSource(name=path.stem or "source", location=str(path.resolve()))
    known = ", ".join(sorted(sources)) or "none"
    raise QueryError("unknown_source", f"{ref!r} is neither a configured source (known: {known}) nor a path.")
