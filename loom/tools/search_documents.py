"""`search_documents`: a question answered by documents → ranked passages to cite.

Search has no query language to generate: the question (and an optional OData filter) goes to the
source's Retriever — the embedded index, or Azure AI Search — and the passages come back with a
number each, `[n]`, that the answer cites. Numbers run on through the turn (a passage found twice
keeps its number), so two searches never hand out the same `[1]`. The stream carries the passages
as a `loom.citations` event a client renders as links; the model reads each passage's text, cut
to `MODEL_PASSAGE_CHARS`.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from loom.engines.contracts import QueryError, ResultSet
from loom.tools.base import Effect, ToolContext, ToolError, ToolResult, define

MODEL_PASSAGE_CHARS = 1_500
CITE = "Cite the passages you use as [n] after the sentence they support, and list them at the end."
NOTHING = "No passage matched: say that the documents do not answer it; do not answer from memory."

GUIDANCE = """
- `search_documents`: for questions that documents answer (policies, procedures, runbooks,
  definitions, the glossary). Pass the question in plain words and the source's name; answer only
  from the passages it returns, citing each as [n]. For a question that also needs figures, search
  the documents and query the data, and say which part came from where.
"""


class SearchArgs(BaseModel):
    model_config = ConfigDict(json_schema_extra={"required": ["question"]})

    question: str = Field("", description="What to look for, in plain words.")
    source: str | None = Field(None, description="Name of the document source; default: the first.")
    filter: str | None = Field(
        None,
        description="Leave it out unless the user asks to narrow the search by a field the documents "
        "have (an OData filter, e.g. department eq 'hr').",
    )
    top: int = Field(5, ge=1, le=20, description="How many passages to return.")


class Passage(BaseModel):
    n: int  # the citation number, [n]
    citation: str  # a stable id: <source>:<chunk id>
    id: str  # the source document
    chunk_id: str
    title: str
    text: str
    score: float


class SearchResult(ToolResult):
    source: str
    question: str
    filter: str | None = None
    passages: list[Passage]
    result: ResultSet

    def for_model(self) -> str:
        """JSON like every tool's result: the numbered passages (text cut to MODEL_PASSAGE_CHARS)
        and how to cite them; when nothing matched, that the documents do not answer it."""
        shown: dict[str, object] = {"source": self.source, "question": self.question}
        if self.filter:
            shown["filter"] = self.filter
        shown["passages"] = [
            {"n": p.n, "title": p.title, "document": p.id, "text": _cut(p.text)} for p in self.passages
        ]
        shown["note"] = CITE if self.passages else NOTHING
        return json.dumps(shown, ensure_ascii=False)

    def table(self) -> ResultSet:
        return self.result

    def citations(self) -> list[dict[str, object]]:
        return [p.model_dump(exclude={"text"}) | {"source": self.source} for p in self.passages]


async def run(ctx: ToolContext, args: SearchArgs) -> SearchResult:
    """Search a document source (policies, runbooks, definitions) for passages that answer the
    question. Returns numbered passages; cite them as [n] in the answer."""
    question = args.question.strip() or ctx.asked
    source = ctx.source(args.source, "search")
    try:
        retriever = ctx.engines.retriever(source)
        found = await ctx.run_on(
            source.name,
            retriever.search,
            question,
            top=args.top,
            timeout_s=ctx.limits.timeout_s,
            filter=args.filter,
        )
    except QueryError as e:
        raise ToolError(e.code, e.message) from None
    passages = _numbered(ctx, source.name, found)
    return SearchResult(
        source=source.name, question=question, filter=args.filter, passages=passages, result=found
    )


def _numbered(ctx: ToolContext, source: str, found: ResultSet) -> list[Passage]:
    names = [c.name for c in found.columns]
    passages = []
    for row in found.rows:
        cell = dict(zip(names, row, strict=False))
        citation = f"{source}:{cell['chunk_id']}"
        if citation not in ctx.cited:
            ctx.cited.append(citation)
        passages.append(
            Passage(
                n=ctx.cited.index(citation) + 1, citation=citation, id=str(cell["id"]),
                chunk_id=str(cell["chunk_id"]), title=str(cell["title"]), text=str(cell["text"]),
                score=float(cell["score"] or 0),  # type: ignore[arg-type]
            )
        )  # fmt: skip
    return passages


def _cut(text: str) -> str:
    return text if len(text) <= MODEL_PASSAGE_CHARS else text[: MODEL_PASSAGE_CHARS - 1] + "…"


TOOL = define(run, effect=Effect.READ, language="search", guidance=GUIDANCE)
