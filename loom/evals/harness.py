"""A suite run from start to finish: choose how the model is reached, build the agent the API would
build, run the cases (and the plain baseline when asked), score, and write the run folder.

How the model is reached (`mode`):
- `replay`: from the suite's cassette, offline and deterministic; no model needs configuring;
- `record`: the configured model, its answers kept in the cassette;
- `live`: the configured model, nothing kept.
Left unset: replay when the suite has a cassette, else live. A live or recording run first checks
the model answers, so an unreachable endpoint is one clear error before any case runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import httpx2

from loom.access import OPEN
from loom.agent.model import ChatMessage, ChatModel, ModelError
from loom.agent.sources import load_sources
from loom.agent.sqlite_store import SqliteConversationStore
from loom.engines.registry import EnginePool, answering
from loom.engines.sources import Source
from loom.evals.baseline import plain_case, plain_schema
from loom.evals.cassettes import CASE, Cassette, CassetteTransport
from loom.evals.checks import Failure, GoldCheck
from loom.evals.drivers import DirectTool, Driver, FunctionCalls, InProcess, MeteredModel, OverHttp
from loom.evals.report import summarise, write_run
from loom.evals.runner import Progress, RunOptions, run_cases
from loom.evals.scoring import Verdict, execution_match
from loom.evals.suite import Case, Expect, Suite
from loom.settings import Provider, Settings
from loom.tools.registry import TOOLS

RunMode = Literal["live", "record", "replay"]
REPLAY_URL = "http://cassette.replay/v1"  # never reached: the cassette answers every request


class EvalError(RuntimeError):
    """The run cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class RunSpec:
    suite: Suite
    suite_path: Path
    out: Path
    mode: RunMode | None = None
    cassette: Path | None = None
    options: RunOptions = RunOptions()
    baseline: bool = False
    url: str | None = None  # a running Loom server to send the turns to, instead of this process
    direct: bool = False  # each question straight to the source's data tool (no chat model deciding)
    token: str | None = None  # its bearer token, when it signs users in


def cassette_path(spec: RunSpec) -> Path:
    return spec.cassette or spec.suite_path.parent / "cassettes" / f"{spec.suite_path.stem}.jsonl"


def chosen_mode(spec: RunSpec) -> RunMode:
    if spec.url is not None:
        return "live"  # the server's own model answers; there is nothing to record or replay
    if spec.mode is not None:
        return spec.mode
    return "replay" if cassette_path(spec).exists() else "live"


async def run_suite(spec: RunSpec, settings: Settings, progress: Progress | None = None) -> dict[str, Any]:
    """Runs the suite and writes `spec.out`; returns the summary."""
    mode = chosen_mode(spec)
    cassette = Cassette.open(cassette_path(spec)) if mode != "live" else None
    if mode == "replay" and (cassette is None or not cassette.entries):
        raise EvalError(f"no cassette to replay at {cassette_path(spec)}; record one with --record")
    settings = _model_settings(settings, mode, cassette)
    sources = _sources(spec.suite, settings)
    check_references(spec.suite, sources)
    async with AsyncExitStack() as stack:
        model, engines = await _open(stack, settings, mode, cassette)
        if mode != "replay":
            await _check_model(model)
        driver = await _driver(stack, spec, settings, model, engines, sources)
        gold = gold_check(engines, sources, settings)
        started, clock = dt.datetime.now(dt.UTC), time.perf_counter()
        results = await run_cases(
            list(spec.suite.cases),
            lambda case: FunctionCalls(model, case) if case.functions else driver,
            gold,
            spec.options,
            cassette=cassette,
            progress=progress,
        )
        wall = time.perf_counter() - clock
        summary = summarise(results, wall)
        if spec.baseline:
            summary["baseline"] = await _baseline(spec, model, engines, sources, gold)
    if cassette is not None and mode == "record":
        cassette.model = settings.model_name
        cassette.generation = {
            "model_temperature": settings.model_temperature,
            "model_max_output_tokens": settings.model_max_output_tokens,
        }
        cassette.save()
    config = _config(spec, settings, mode, started)
    write_run(spec.out, config, results, summary)
    return summary


# --- the model -------------------------------------------------------------------------------------


def _model_settings(settings: Settings, mode: RunMode, cassette: Cassette | None) -> Settings:
    if mode == "replay":
        assert cassette is not None
        return settings.model_copy(
            update={
                "model_provider": Provider.OPENAI,
                "openai_base_url": REPLAY_URL,
                "openai_api_key": None,
                "model": cassette.model or "replayed",
                "model_max_retries": 0,
                **cassette.generation,  # the requests must be the ones recorded
            }
        )
    if settings.provider is Provider.OFFLINE:
        raise EvalError(
            "no model is configured for a live run: set OPENAI_BASE_URL (with OPENAI_API_KEY and "
            "LOOM_MODEL) or AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT, or replay a cassette"
        )
    return settings


async def _open(
    stack: AsyncExitStack, settings: Settings, mode: RunMode, cassette: Cassette | None
) -> tuple[ChatModel, EnginePool]:
    from loom.agent.model_maf import build_chat_model
    from loom.cloud import engine_pool

    client = None
    if cassette is not None:
        transport = CassetteTransport(cassette, "record" if mode == "record" else "replay")
        client = await stack.enter_async_context(httpx2.AsyncClient(transport=transport, timeout=None))
    model = build_chat_model(settings, http_client=client)
    assert model is not None  # _model_settings made sure one is configured
    engines = engine_pool(settings)
    stack.callback(engines.close)
    return MeteredModel(model), engines


async def _check_model(model: ChatModel) -> None:
    CASE.set("(model check)")
    try:
        await model.complete([ChatMessage(role="user", content="Reply with the word ready.")])
    except ModelError as e:
        raise EvalError(f"the model does not answer, so no case was run: {e}") from e


# --- the agent and its sources -----------------------------------------------------------------------


def _sources(suite: Suite, settings: Settings) -> dict[str, Source]:
    """The suite's own sources when it lists any, else the configured ones (the sample lakehouse)."""
    if suite.sources:
        return {s.name: s for s in suite.sources}
    return dict(load_sources(settings))


def check_references(suite: Suite, sources: Mapping[str, Source]) -> None:
    """Every source and tool a case names exists; else one error naming each."""
    problems = []
    for case in suite.cases:
        if case.source is not None and case.source not in sources:
            problems.append(f"case {case.id}: unknown source {case.source!r} (known: {', '.join(sources)})")
        problems += _unknown_tools(case)
    if problems:
        raise EvalError("the suite names what does not exist: " + "; ".join(problems))


def _unknown_tools(case: Case) -> list[str]:
    """Tools a case names that it cannot meet: Loom's, or for a function-calling case its own."""
    known = {str(f.get("name")) for f in case.functions} if case.functions else {t.name for t in TOOLS}
    named: set[str] = set()
    for turn in case.all_turns:
        named |= {*(turn.expect.tools or ()), *turn.expect.tool_args}
        named |= {name for call in turn.expect.calls or () for name in call}
    return [f"case {case.id}: unknown tool {t!r}" for t in sorted(named - known)]


async def _driver(
    stack: AsyncExitStack,
    spec: RunSpec,
    settings: Settings,
    model: ChatModel,
    engines: EnginePool,
    sources: dict[str, Source],
) -> Driver:
    from loom.agent.build import build_agent

    if spec.url is not None:
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=spec.url, timeout=None))
        await _check_server(client, spec.url)
        return OverHttp(client, spec.token)
    spec.out.mkdir(parents=True, exist_ok=True)
    store = SqliteConversationStore(spec.out / "conversations.db")
    stack.push_async_callback(store.close)
    agent = build_agent(settings, store, model=model, engines=engines, access=OPEN)
    frozen: Callable[[], Mapping[str, Source]] = lambda: sources  # noqa: E731 - the suite's, fixed
    agent = dataclasses.replace(agent, sources=frozen)
    return DirectTool(agent) if spec.direct else InProcess(agent)


async def _check_server(client: httpx.AsyncClient, url: str) -> None:
    """One clear error before any case runs when the server does not answer (probe 13: R13-8)."""
    try:
        response = await client.get("/healthz", timeout=10)
    except httpx.TransportError as e:
        raise EvalError(
            f"the server at {url} cannot be reached ({type(e).__name__}: {e}); is it running?"
        ) from e
    if response.status_code != 200:
        raise EvalError(
            f"the server at {url} answered /healthz with HTTP {response.status_code}; is it Loom?"
        )


# --- scoring against gold queries ------------------------------------------------------------------------


def gold_check(engines: EnginePool, sources: Mapping[str, Source], settings: Settings) -> GoldCheck:
    """Executes the gold query and the agent's on the case's source and compares the results."""

    async def check(source: str | None, gold: str, predicted: str, expect: Expect) -> Verdict:
        found = sources.get(source) if source else _first_answering(sources, expect.gold_language)
        if found is None:
            return Verdict(
                "unscoreable", f"no source answers {expect.gold_language} to run the gold query on"
            )
        engine = engines.engine(found, expect.gold_language)
        return await asyncio.to_thread(
            execution_match,
            engine,
            gold,
            predicted,
            dialect=found.dialect_for(expect.gold_language),
            ordered=expect.ordered,
            max_rows=max(settings.query_max_rows, 100_000),
            timeout_s=settings.query_timeout_s,
        )

    return check


def _first_answering(sources: Mapping[str, Source], language: str) -> Source | None:
    return next(iter(answering(list(sources.values()), language)), None)


# --- the plain baseline --------------------------------------------------------------------------------


async def _baseline(
    spec: RunSpec, model: ChatModel, engines: EnginePool, sources: dict[str, Source], gold: GoldCheck
) -> dict[str, Any]:
    """The plain prompt on every case with a source and a gold query, scored like the agent."""
    cases = [c for c in spec.suite.cases if c.source and c.all_turns[0].expect.gold is not None]
    places = asyncio.Semaphore(spec.options.concurrency)

    async def one(case: Case) -> tuple[list[Failure], float]:
        assert case.source is not None
        catalog = await asyncio.to_thread(engines.engine(sources[case.source], "sql").catalog)
        schema = plain_schema(catalog, case.all_turns[0].expect.gold_language)
        async with places:
            started = time.perf_counter()
            failures = await asyncio.create_task(plain_case(case, model, schema, gold))
            return failures, time.perf_counter() - started

    outcomes = await asyncio.gather(*(one(c) for c in cases))
    return plain_summary(cases, outcomes)


def plain_summary(cases: list[Case], outcomes: list[tuple[list[Failure], float]]) -> dict[str, Any]:
    scored = [(c, f, s) for c, (f, s) in zip(cases, outcomes, strict=True) if not _unscoreable(f)]
    by_tag: dict[str, list[bool]] = {}
    for case, failures, _ in scored:
        for tag in case.tags:
            by_tag.setdefault(tag, []).append(not failures)
    passed = sum(not f for _, f, _ in scored)
    seconds = sorted(s for _, _, s in scored)
    return {
        "cases": len(scored),
        "passed": passed,
        "execution_accuracy": round(passed / len(scored), 4) if scored else None,
        "by_tag": {
            t: {"cases": len(v), "passed": sum(v), "pass_rate": round(sum(v) / len(v), 4)}
            for t, v in sorted(by_tag.items())
        },
        "latency_s": {"p50": round(seconds[len(seconds) // 2], 3) if seconds else None},
        "unscoreable": len(cases) - len(scored),
        "failed": {c.id: f[0].reason for c, f, _ in scored if f},
    }


def _unscoreable(failures: list[Failure]) -> bool:
    return any(f.check == "unscoreable" for f in failures)


def _config(spec: RunSpec, settings: Settings, mode: RunMode, started: dt.datetime) -> dict[str, Any]:
    return {
        "suite": spec.suite.name,
        "suite_file": str(spec.suite_path),
        "mode": mode,
        "cassette": str(cassette_path(spec)) if mode != "live" else None,
        "model": settings.model_name,
        "provider": settings.provider.value,
        "endpoint": settings.openai_base_url or settings.azure_openai_endpoint,
        "concurrency": spec.options.concurrency,
        "timeout_s": spec.options.timeout_s,
        "retries": spec.options.retries,
        "baseline": "plain" if spec.baseline else None,
        "path": "url" if spec.url else "direct tool" if spec.direct else "agent",
        "temperature": settings.model_temperature,
        "max_output_tokens": settings.model_max_output_tokens,
        "started": started.isoformat(timespec="seconds"),
        "cases": len(spec.suite.cases),
    }
