"""The tools the agent offers: a plain list, looked up by name."""

from __future__ import annotations

from loom.tools import graph_search, nl2dax, nl2kql, nl2sql, search_documents
from loom.tools.base import Tool

TOOLS: list[Tool] = [nl2sql.TOOL, nl2kql.TOOL, nl2dax.TOOL, graph_search.TOOL, search_documents.TOOL]


def by_name(tools: list[Tool]) -> dict[str, Tool]:
    return {t.name: t for t in tools}
