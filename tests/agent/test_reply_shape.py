"""A model's response is counted in JSON objects and arrays before the SDK builds it (probe 25: R25-1:
2.5 MiB of extra `choices`, within every bound on size, held the event loop 7.3 s)."""

from __future__ import annotations

import json

import pytest

from loom.agent.reply_shape import ShapeCheck, ShapeError
from tests.agent.test_model_maf import QUESTION, chunk, collect, model_for
from tests.support.openai_server import OpenAICompatServer


def checked(*pieces: bytes, max_calls: int = 16) -> None:
    streamed = pieces[0].lstrip().startswith(b"data:")  # as the test's request would have asked
    check = ShapeCheck(max_events=2_000, max_calls=max_calls, streamed=streamed)
    for piece in pieces:
        check.feed(piece)
    check.end()


def completion(choices: int = 1, calls: int = 0, **extra: object) -> bytes:
    tool_calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": "n", "arguments": "{}"}}
        for i in range(calls)
    ]
    message = {"role": "assistant", "content": "x", **({"tool_calls": tool_calls} if calls else {})}
    # What Azure adds: content-filter results for the choice and the prompt.
    filters = {
        k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")
    }
    choice = {"index": 0, "message": message, "finish_reason": "stop", "content_filter_results": filters}
    body = {
        "id": "x",
        "choices": [choice] * choices,
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}],
        "usage": {"total_tokens": 3, "completion_tokens_details": {}, "prompt_tokens_details": {}},
        **extra,
    }
    return json.dumps(body).encode()


def test_replies_of_the_asked_for_shape_pass_azures_filter_results_and_all() -> None:
    checked(completion(calls=16))
    body = completion()
    checked(*(body[i : i + 7] for i in range(0, len(body), 7)))  # however it arrives
    event = chunk({"content": "a", "tool_calls": [{"index": 0, "function": {"arguments": "{"}}]})
    checked(*[event] * 1_500, b"data: [DONE]\r\n\r\n")


@pytest.mark.parametrize(
    ("pieces", "said"),
    [
        ([completion(choices=2)], "2 choices, though one was asked for"),
        ([completion(x=[{"a": [{}] * 200}])], "its reply holds more JSON objects"),
        (
            [chunk(None, choices=[{"index": 0, "delta": {}, "logprobs": {"content": [{}]}}])],
            "log probabilities",
        ),
        ([chunk({"content": "a", "x": [{}] * 40})], "an event of its stream holds more"),
        ([b"data: [[[[" * 1_000 + b"\n\n"], "not JSON"),
        (
            [chunk({"content": "a", "x": [{}] * 20})] * 2_000,
            "its stream, in all, holds more",
        ),
        ([b'data: {"a": \n', b"data: 1}\n\n"], "not JSON"),  # one value split over two data lines
    ],
)
def test_a_response_past_the_shape_asked_for_is_refused(pieces: list[bytes], said: str) -> None:
    with pytest.raises(ShapeError, match=said):
        checked(*pieces)


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf" + completion(choices=5_000),  # R26-1: a byte-order mark made it read as a stream
        b"data: {}\n\n" + completion(choices=5_000),
    ],
)
def test_how_a_reply_is_read_follows_the_request_not_its_first_bytes(body: bytes) -> None:
    with pytest.raises(ShapeError):
        check = ShapeCheck(max_events=2_000, max_calls=16, streamed=False)
        check.feed(body)
        check.end()


def test_a_stream_opening_like_a_document_is_still_read_event_by_event() -> None:
    # R26-2: a first line of `{}` made the check wait for the end while the SDK built every event.
    many = [{"index": i, "delta": {}} for i in range(45)]
    check = ShapeCheck(max_events=2_000, max_calls=16, streamed=True)
    check.feed(b"{}\n")
    with pytest.raises(ShapeError, match="45 choices"):
        check.feed(chunk(None, choices=many))


async def test_a_reply_of_thousands_of_choices_is_refused_before_the_sdk_builds_them(
    openai_server: OpenAICompatServer,
) -> None:
    openai_server.queue_raw(completion(choices=5_000))
    from loom.agent.model import ModelError

    with pytest.raises(ModelError, match="5000 choices"):
        await model_for(openai_server).complete(QUESTION)
    openai_server.queue_raw(b"\xef\xbb\xbf" + completion(choices=5_000))  # R26-1, over HTTP
    with pytest.raises(ModelError, match="5000 choices"):
        await model_for(openai_server).complete(QUESTION)
    many = [{"index": i, "delta": {}} for i in range(30)]
    openai_server.queue_raw(*[chunk(None, choices=many)] * 50, content_type="text/event-stream")
    with pytest.raises(ModelError, match="30 choices"):
        await collect(model_for(openai_server), QUESTION)
