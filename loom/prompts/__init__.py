"""Prompt templates and verified-query libraries live here as files; this is their one loader."""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template
from typing import Any

import yaml


@cache
def _read(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def template(name: str) -> Template:
    """`prompts/<name>.md` as a template: `$name` placeholders, so query braces need no escaping."""
    return Template(_read(f"{name}.md"))


def render(name: str, **values: str) -> str:
    return template(name).substitute(values)


@cache
def load_verified_queries(library: str) -> tuple[dict[str, Any], ...]:
    """The packaged verified-query library `prompts/verified/<library>.yaml` (parsed once)."""
    data = yaml.safe_load(_read(f"verified/{library}.yaml")) or {}
    return tuple(data.get("queries", []))
