"""The turn loop, as small named steps: prepare → call model → run tools → persist → stream.

`Agent.run_turn` yields AG-UI events. Writes go through an `OrderedWriter` in the background: the
user's message is queued before the model is called and every write is drained before the run's
last event, so a model failure loses nothing; each round's assistant message and its tool results
are written in one transaction, so the history never holds a tool call without its result.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from ag_ui.core import (
    BaseEvent,
    Interrupt,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
)
from ag_ui.core.events import RunFinishedInterruptOutcome, RunFinishedSuccessOutcome

from loom.access import SourceAccess
from loom.agent.approval import ApprovalGate, EffectGate
from loom.agent.budget import BudgetExhausted, InnerModel, TurnBudget
from loom.agent.citations import unbacked, unbacked_notice
from loom.agent.events import approval_event, model_events, new_id, result_events, text_events
from loom.agent.messages import build_messages
from loom.agent.model import ChatMessage, ChatModel, ModelError, ModelReply
from loom.agent.reply_bounds import BoundedModel, ReplyBounds, bounded
from loom.agent.reply_guard import Guard, guarded, normal
from loom.agent.sources import pick_sources
from loom.agent.store import ConversationFull, ConversationNotFound, ConversationStore, StoredMessage
from loom.agent.tool_calls import CallOutcome, run_calls, to_answering_tools
from loom.agent.turn_log import TurnSummary, log_turn
from loom.agent.turns import TurnRequest
from loom.agent.writer import OrderedWriter
from loom.engines.contracts import Embedder
from loom.engines.registry import languages
from loom.engines.sources import Source
from loom.identity import Principal
from loom.settings import DEFAULTS, Settings
from loom.tools.base import EngineProvider, QueryLimits, Tool, ToolContext
from loom.tools.result_room import ResultRoom, TurnRoom
from loom.tools.scheduler import QueryScheduler

log = logging.getLogger(__name__)
TITLE_CHARS = 80
HISTORY_MESSAGES = 400  # the newest messages a turn reads (the model sees at most `history_chars`)
HISTORY_READ = 8  # characters read per character the model may see (old tool results are shortened)
CUT_AT_MAX_TOKENS = (
    "(The answer above was cut off: the model reached its output limit, LOOM_MODEL_MAX_OUTPUT_TOKENS. "
    "Ask for a shorter answer, or raise the limit.)"
)


@dataclass(frozen=True)
class TurnLimits:
    """What one turn may spend. The defaults are Settings' (one place)."""

    max_model_calls: int
    max_tool_rounds: int
    history_chars: int  # how much of the conversation so far the model reads
    conversation_messages: int = 2_000  # how many one conversation may hold

    @classmethod
    def of(cls, settings: Settings) -> TurnLimits:
        return cls(
            settings.max_model_calls_per_turn,
            settings.max_tool_rounds,
            settings.history_max_chars,
            settings.max_conversation_messages,
        )


@dataclass
class Turn:
    """Everything one run needs, built once by `prepare`."""

    principal: Principal
    writer: OrderedWriter
    run_id: str
    messages: list[ChatMessage]
    budget: TurnBudget
    ctx: ToolContext
    tools: list[Tool]  # offered this turn: those the turn's sources can serve
    interrupts: list[Interrupt] = field(default_factory=list)
    tool_log: list[str] = field(default_factory=list)  # "name:status" of each call, for the turn log
    ran: set[str] = field(default_factory=set)  # the queries that ran in this turn (reply_guard.normal)

    @property
    def question(self) -> str:
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")

    @property
    def conversation_id(self) -> str:
        return self.writer.conversation_id


@dataclass
class Agent:
    model: ChatModel
    tools: Sequence[Tool]
    store: ConversationStore
    engines: EngineProvider
    sources: Callable[[], Mapping[str, Source]]
    access: SourceAccess  # which of them each principal may use
    limits: TurnLimits = field(default_factory=lambda: TurnLimits.of(DEFAULTS))
    query_limits: QueryLimits = field(default_factory=lambda: QueryLimits.of(DEFAULTS))
    gate: ApprovalGate = field(default_factory=EffectGate)
    embedder: Embedder | None = None  # for schema linking, when an embedding model is configured
    scheduler: QueryScheduler | None = None  # where tools' queries run, fairly between tenants
    results: ResultRoom | None = None  # what query results may hold, per turn, tenant and process
    bounds: ReplyBounds = field(default_factory=lambda: ReplyBounds.of(DEFAULTS))  # each model call's

    async def run_turn(self, principal: Principal, request: TurnRequest) -> AsyncIterator[BaseEvent]:
        """However the turn ends (its last event, or the client leaving) its writes are drained
        and one `loom.turns` line says how it ended."""
        started = time.perf_counter()
        turn = await self.prepare(principal, request)
        try:
            async with aclosing(self._run(turn, started)) as events:
                async for event in events:
                    yield event
        finally:
            if turn.ctx.results is not None:  # the turn's results are sent and stored: their room is free
                turn.ctx.results.release()

    async def _run(self, turn: Turn, started: float) -> AsyncGenerator[BaseEvent]:
        # Nothing is announced before it exists: RUN_STARTED carries the conversation id, so the
        # conversation and the user's message are committed first (a kill -9 after it loses neither).
        saved = await _drained(turn) is None
        end: BaseEvent | None = None
        try:
            yield RunStartedEvent(thread_id=turn.conversation_id, run_id=turn.run_id)
            if saved:
                # Closed with the turn: a client leaving mid-round must not leave the model stream open.
                async with aclosing(self.rounds(turn)) as rounds:
                    async for event in rounds:
                        yield event
        except ModelError as e:
            end = RunErrorEvent(message=str(e), code="model_error")
        except Exception as e:  # the stream must end with an event a client understands
            log.exception("turn %s failed", turn.run_id)
            end = RunErrorEvent(message=f"internal error: {type(e).__name__}", code="internal_error")
        except (GeneratorExit, asyncio.CancelledError):
            # The client went away: the server closes this stream, or cancels the task running it.
            await _left(turn, started)
            raise
        failed = await _drained(turn)
        if failed is not None and end is None:
            end = RunErrorEvent(message="the conversation could not be saved", code="store_error")
        last = end or self.finished(turn)
        log_turn(_summary(turn, _outcome(turn, last), started))
        yield last

    # --- steps --------------------------------------------------------------------------------

    async def prepare(self, principal: Principal, request: TurnRequest) -> Turn:
        """Open or create the conversation, queue the user's message (`run_turn` waits for it to be
        committed before announcing the run), build the model's input."""
        visible = self.access.visible(principal, self.sources())
        sources = pick_sources(visible, request.sources)
        writer, stored = await self._conversation(principal, request)
        user = ChatMessage(role="user", content=request.message)
        writer.append([user])
        budget = TurnBudget(self.limits.max_model_calls, self.limits.max_tool_rounds)
        ctx = ToolContext(
            principal=principal,
            sources=sources,
            engines=self.engines,
            model=InnerModel(BoundedModel(self.model, self.bounds), budget),
            limits=self.query_limits,
            embedder=self.embedder,
            scheduler=self.scheduler,
            asked=request.message,
            results=self._results(principal),
        )
        tools = [t for t in self.tools if t.offered(sources)]
        history = build_messages(sources, tools, stored, self.limits.history_chars, allowed=visible)
        messages = [*history, user]
        return Turn(principal, writer, new_id("run"), messages, budget, ctx, tools)

    async def rounds(self, turn: Turn) -> AsyncGenerator[BaseEvent]:
        """Model call, then its tool calls, until the model answers without calling a tool."""
        while True:
            reply: ModelReply | None = None
            try:
                turn.budget.take_model_call()
            except BudgetExhausted as e:
                for event in self.notice(turn, f"I stopped here: {e}."):
                    yield event
                return
            async for item in self.call_model(turn):
                if isinstance(item, ModelReply):
                    reply = item
                else:
                    yield item
            assert reply is not None
            turn.budget.spent(reply.usage)
            if not reply.tool_calls or not turn.budget.tools_allowed:
                for event in self.last(turn, reply):
                    yield event
                return
            outcomes = await self.run_tools(turn, reply)
            for event in self.tool_events(turn, outcomes):
                yield event
            if turn.interrupts:
                return

    def last(self, turn: Turn, reply: ModelReply) -> list[BaseEvent]:
        """The turn's end: an answer, or calls made when no tools were offered (probe 28: R28-3)."""
        return self.answered(turn, reply) if not reply.tool_calls else self.past_tool_rounds(turn, reply)

    def answered(self, turn: Turn, reply: ModelReply) -> list[BaseEvent]:
        """Keep the model's answer; a reply that did not end as an answer must not pass for one
        (probe 22: R22-4): cut at max_tokens, it says so; stopped by the content filter, it is
        not kept."""
        if reply.finish == "content_filter":
            raise ModelError("The model endpoint's content filter stopped the reply.")
        self.persist(turn, [reply.as_message()])
        notices = [CUT_AT_MAX_TOKENS] if reply.finish == "length" else []
        marks = unbacked(reply.text or "", len(turn.ctx.cited))
        if marks:
            notices.append(unbacked_notice(marks))
        return [event for text in notices for event in self.notice(turn, text)]

    def past_tool_rounds(self, turn: Turn, reply: ModelReply) -> list[BaseEvent]:
        """A reply calling tools in the round that offered none: the calls do not run (the round
        limit bounds the queries of a turn), its text is kept, and the user is told why it ends."""
        if reply.text:
            self.persist(turn, [replace(reply, tool_calls=()).as_message()])
        limit = turn.budget.max_tool_rounds
        rounds = f"{limit} tool round{'' if limit == 1 else 's'}"
        return self.notice(turn, f"I stopped here: this turn reached its limit of {rounds}.")

    def call_model(self, turn: Turn) -> AsyncIterator[BaseEvent | ModelReply]:
        """Stream one model call. Tools are offered until the round limit, then the model must answer."""
        sources = turn.ctx.sources
        offered = turn.tools if turn.budget.tools_allowed else []
        guard = Guard(
            offered={t.name for t in offered},
            routes={t.language: t.name for t in offered if t.language is not None},
            written_for=_one_source_per_dialect(sources),
            question=turn.question,
            ran=frozenset(turn.ran),
            results=tuple(m.content for m in turn.messages if m.role == "tool"),
            before=_question_before(turn.messages),
            seen=tuple(m.content for m in turn.messages if m.role != "tool"),  # answers before, too
            asked=bool(turn.tool_log),
            withdrawn=not turn.budget.tools_allowed,
        )
        stream = self.model.stream(turn.messages, [t.declaration(sources) for t in offered])
        return model_events(guarded(bounded(stream, self.bounds), guard))

    async def run_tools(self, turn: Turn, reply: ModelReply) -> list[CallOutcome]:
        turn.budget.tool_rounds += 1
        by_name = {t.name: t for t in turn.tools}
        reply = replace(reply, tool_calls=to_answering_tools(reply.tool_calls, turn.ctx, by_name))
        outcomes = await run_calls(turn.ctx, by_name, self.gate, reply.tool_calls)
        turn.tool_log.extend(f"{o.call.name}:{o.status}" for o in outcomes)
        turn.ran.update(normal(q) for o in outcomes for q in _queries(o))
        messages = [reply.as_message(), *(o.as_message() for o in outcomes)]
        metadata: list[dict[str, Any]] = [{}, *(o.metadata() for o in outcomes)]
        self.persist(turn, messages, metadata)
        return outcomes

    def tool_events(self, turn: Turn, outcomes: list[CallOutcome]) -> list[BaseEvent]:
        events: list[BaseEvent] = []
        for o in outcomes:
            events.extend(result_events(o.call, o.content, o.result))
            if o.status == "awaiting_approval":
                events.append(approval_event(o.call, str(o.effect)))
                turn.interrupts.append(_interrupt(o))
        return events

    def persist(
        self, turn: Turn, messages: list[ChatMessage], metadata: list[dict[str, Any]] | None = None
    ) -> None:
        """Queue the messages for the writer (it stores them in order, off this path)."""
        turn.writer.append(messages, metadata)
        turn.messages.extend(messages)

    def notice(self, turn: Turn, text: str) -> list[BaseEvent]:
        self.persist(turn, [ChatMessage(role="assistant", content=text)])
        return text_events(text)

    def finished(self, turn: Turn) -> RunFinishedEvent:
        outcome: Any = RunFinishedSuccessOutcome()
        if turn.interrupts:
            outcome = RunFinishedInterruptOutcome(interrupts=turn.interrupts)
        return RunFinishedEvent(thread_id=turn.conversation_id, run_id=turn.run_id, outcome=outcome)

    # --- helpers ------------------------------------------------------------------------------

    def _results(self, principal: Principal) -> TurnRoom | None:
        return self.results.for_turn(principal.tenant_id, principal.user_id) if self.results else None

    async def _conversation(
        self, principal: Principal, request: TurnRequest
    ) -> tuple[OrderedWriter, list[StoredMessage]]:
        """The writer for the conversation and its history so far (none for a new one)."""
        if request.conversation_id is None:
            writer = OrderedWriter(self.store, principal, uuid.uuid4().hex)
            writer.create(_title(request.message))
            return writer, []
        found = await self.store.get_conversation(principal, request.conversation_id)
        if found is None:
            raise ConversationNotFound(request.conversation_id)
        if await self.store.last_seq(principal, found.id) >= self.limits.conversation_messages:
            raise ConversationFull(found.id, self.limits.conversation_messages)
        # Only the newest part the model can read: every turn read all of a 250 MB conversation
        # before (probe 11: R11-5). Raw text is read beyond `history_chars` because earlier tool
        # results are shortened to fit.
        history = await self.store.messages(
            principal,
            found.id,
            limit=HISTORY_MESSAGES,
            max_bytes=HISTORY_READ * self.limits.history_chars,
            with_metadata=False,
        )
        return OrderedWriter(self.store, principal, found.id), _from_a_question(history)


async def _drained(turn: Turn) -> BaseException | None:
    """Wait for the turn's writes, shielded: when the client has left, the task running the turn is
    cancelled, and an unshielded wait would be cancelled with it and lose the end of the turn."""
    with anyio.CancelScope(shield=True):
        failed = await turn.writer.drain()
    return failed


async def _left(turn: Turn, started: float) -> None:
    """A turn whose client went away: keep what was said so far, and log it however the wait ends."""
    try:
        await _drained(turn)
    finally:
        log_turn(_summary(turn, "disconnected", started))


def _from_a_question(history: list[StoredMessage]) -> list[StoredMessage]:
    """The history from its first user message: a page cut by size may start inside a turn, and a
    tool result without its call is refused by the model's API."""
    first = next((i for i, m in enumerate(history) if m.role == "user"), len(history))
    return history[first:]


def _title(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0][:TITLE_CHARS] if lines else "(empty message)"


def _outcome(turn: Turn, last: BaseEvent) -> str:
    if isinstance(last, RunErrorEvent):
        return last.code or "error"
    return "interrupted" if turn.interrupts else "finished"


def _summary(turn: Turn, outcome: str, started: float) -> TurnSummary:
    return TurnSummary(
        run_id=turn.run_id,
        conversation_id=turn.conversation_id,
        principal=turn.principal,
        outcome=outcome,
        model_calls=turn.budget.model_calls,
        tool_calls=turn.tool_log,
        tokens=turn.budget.tokens,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


def _question_before(messages: Sequence[ChatMessage]) -> str:
    """The user's message before the last one ("" in a conversation's first turn)."""
    asked = [m.content for m in messages if m.role == "user"]
    return asked[-2] if len(asked) > 1 else ""


def _one_source_per_dialect(sources: Sequence[Source]) -> dict[str, str]:
    """Each dialect exactly one of `sources` is written in → that source's name."""
    by_dialect: dict[str, list[str]] = {}
    for source in sources:
        for language in languages(source):
            by_dialect.setdefault(source.dialect_for(language), []).append(source.name)
    return {dialect: names[0] for dialect, names in by_dialect.items() if len(names) == 1}


def _queries(outcome: CallOutcome) -> list[str]:
    """The query a call ran, as the model wrote it and as the engine ran it."""
    table = outcome.result.table() if outcome.result is not None and outcome.status == "ok" else None
    if table is None or outcome.result is None:
        return []
    return [q for q in (outcome.result.shown_query(), table.query) if q]


def _interrupt(outcome: CallOutcome) -> Interrupt:
    return Interrupt(
        id=new_id("approval"),
        reason="approval_required",
        message=f"{outcome.call.name} needs approval before it runs",
        tool_call_id=outcome.call.id,
    )
