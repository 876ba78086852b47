"""The openai SDK's clients, their chat requests' messages and tools sent as they are built.

Before it sends a request, the SDK walks its body against the parameters' type hints
(`async_maybe_transform`), key by key, to rename aliased fields and encode files. The messages and
tool schemas MAF hands it are plain JSON already — nothing to rename or encode — but the walk over
the system prompt, the history and every schema was the largest single cost of a turn on the
platform's side (about a fifth of it under cProfile, ~0.4 ms a call unprofiled: `turn_overhead`).
So those two go in the request's `extra_body`, which the SDK merges over the body as it is (its
`_merge_mappings`: "the second mapping takes precedence"); everything else is walked as before.
`tests/agent/test_model_sdk.py` checks the body sent is the SDK's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

import openai
from openai.resources.chat import AsyncChat
from openai.resources.chat.completions import AsyncCompletions

_AS_BUILT = ("messages", "tools")  # the parameters sent without the walk


class _Completions(AsyncCompletions):
    async def create(self, **params: Any) -> Any:
        built = {name: params.pop(name, None) for name in _AS_BUILT}
        sent = {name: _listed(value) for name, value in built.items() if _given(value)}
        extra: Mapping[str, object] = params.pop("extra_body", None) or {}
        return await super().create(messages=[], extra_body={**sent, **extra}, **params)


def _given(value: object) -> bool:
    return value is not None and not isinstance(value, openai.Omit | openai.NotGiven)


def _listed(value: Iterable[object]) -> list[object]:
    return value if isinstance(value, list) else list(value)


class _Chat(AsyncChat):
    @cached_property
    def completions(self) -> AsyncCompletions:
        return _Completions(self._client)


class AsBuiltOpenAI(openai.AsyncOpenAI):
    @cached_property
    def chat(self) -> AsyncChat:
        return _Chat(self)


class AsBuiltAzureOpenAI(openai.AsyncAzureOpenAI):
    @cached_property
    def chat(self) -> AsyncChat:
        return _Chat(self)
