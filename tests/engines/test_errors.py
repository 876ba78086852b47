"""The one scrubber for engine and driver error text: what it keeps and what it takes out."""

from __future__ import annotations

import logging
import sys

import pytest

from loom.engines.errors import (
    MAX_MESSAGE_CHARS,
    MAX_RECORD_CHARS,
    BoundedFormatter,
    bounded_record,
    public_text,
    shown,
)

# (what an engine or driver said, what a model or user may read)
CASES = [
    # Native and JVM traces go, the reason stays.
    (
        "Binder Error: no such thing\n\nStack Trace:\n/usr/lib/python3/site-packages/duckdb.so(+0x1)",
        "Binder Error: no such thing",
    ),
    (
        "AnalysisException: x\nJVM stacktrace:\norg.apache.spark.X\n\tat org.apache.X.y(X.scala:1)",
        "AnalysisException: x",
    ),
    ('boom\nTraceback (most recent call last):\n  File "/srv/app.py", line 1', "boom"),
    # Server paths keep only their last part: enough to say which file, nothing about the server.
    ("File '/srv/loom/lake/orders.parquet' too small", "File '…/orders.parquet' too small"),
    ('Cannot open "~/lake/gold/x.duckdb"', 'Cannot open "…/x.duckdb"'),
    ("read file:///etc/loom/secret.csv failed", "read …/secret.csv failed"),
    ("no file C:\\data\\hr\\pay.csv or \\\\fs01\\share\\pay.csv", "no file …\\pay.csv or …\\pay.csv"),
    # Credentials in connection strings, headers, URLs; tokens wherever they are.
    ("Server=tcp:x;UID=me;PWD=hunter2;Encrypt=yes", "Server=tcp:x;UID=me;PWD=***;Encrypt=yes"),
    ("password='p a ss' rejected", "password=*** rejected"),
    ("Authorization: Bearer abcdefghijkl", "Authorization: Bearer ***"),
    ("Authorization: abcdefghijkl", "Authorization: ***"),
    ("token eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxIn0.c2ln expired", "token *** expired"),
    ("bad dapi0123456789abcdef0123456789abcdef-2", "bad ***"),
    ("GET https://alice:s3cret@host/x failed", "GET https://***@host/x failed"),
    # What is not a path or a secret is left alone: dates, ratios, URLs, SQL words.
    ("Could not convert string '2024/01/02' to INT32", "Could not convert string '2024/01/02' to INT32"),
    ("see https://duckdb.org/docs/sql/x.html", "see https://duckdb.org/docs/sql/x.html"),
    ("1/0 and a/b are fine; /tmp alone too", "1/0 and a/b are fine; /tmp alone too"),
    ('syntax error at or near "token"', 'syntax error at or near "token"'),
    # One line.
    ("Parser Error: x\n\nLINE 1: SELECT\n   ^", "Parser Error: x LINE 1: SELECT ^"),
]


@pytest.mark.parametrize(("raw", "public"), CASES)
def test_public_text(raw: str, public: str) -> None:
    assert public_text(raw) == public


def test_public_text_is_bounded() -> None:
    text = public_text("x" * 5000)
    assert len(text) == MAX_MESSAGE_CHARS
    assert text.endswith("…")


def test_shown_logs_the_full_text_only_when_something_was_left_out(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("loom.test_errors")
    with caplog.at_level(logging.INFO, logger="loom.test_errors"):
        assert shown(ValueError("plain  message"), log, "reading") == "plain message"
        assert caplog.text == ""
        assert shown("at /srv/a/b.csv", log, "reading") == "at …/b.csv"
    assert "reading: at /srv/a/b.csv" in caplog.text


def test_an_error_echoing_a_huge_value_is_logged_and_read_only_in_part(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Probe 11 (R11-1): `SELECT error(repeat('x', 15000000))` wrote its whole message to the log.
    log = logging.getLogger("loom.test_errors")
    huge = "Invalid Input Error: " + "😀" * 20_000_000
    with caplog.at_level(logging.INFO, logger="loom.test_errors"):
        public = shown(RuntimeError(huge), log, "query")
    assert len(public) == MAX_MESSAGE_CHARS
    [record] = caplog.records
    assert len(record.getMessage()) < 9_000
    assert record.getMessage().endswith("(cut: 20,000,021 characters in all)")


def test_a_log_record_with_a_huge_traceback_is_bounded() -> None:
    try:
        raise RuntimeError("x" * 1_000_000)
    except RuntimeError:
        record = logging.LogRecord("loom.t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    text = BoundedFormatter("%(levelname)s %(message)s").format(record)
    assert text.startswith("ERROR failed\nTraceback")
    assert len(text) < MAX_RECORD_CHARS + 100
    assert bounded_record(record).startswith("failed\nTraceback")


def test_uvicorns_records_are_bounded_in_their_arguments() -> None:
    # Probe 12 (R12-9): the access log wrote a 60,000-character request line.
    from loom.engines.errors import MAX_LOGGED_CHARS, BoundedArguments

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s "%s %s"', ("1.2.3.4", "GET", "/x" * 40_000), None
    )
    assert BoundedArguments().filter(record)
    assert len(record.getMessage()) < MAX_LOGGED_CHARS + 200
