"""Error text from engines and drivers, made fit to show to a model or a user.

What DuckDB or a driver says when something fails is written for whoever runs the server: DuckDB
appends a native stack trace with the paths of its shared library, file readers name the file they
could not read, drivers may echo a connection string or a token. `public_text` keeps the sentence
that helps to fix a query and drops the rest; `shown` does the same and logs the full text when
anything was dropped. Every engine goes through them, so there is one set of rules to get right.
"""

from __future__ import annotations

import logging
import re

MAX_MESSAGE_CHARS = 800
# An error may echo a value the query built (`error(repeat('x', 1e7))`, a failed cast): its size is
# the caller's choice (probe 11: 90 MB in one log line). Only this much of it is read for the
# public line, and logged; the rest is counted.
MAX_SCANNED_CHARS = 16_000
MAX_LOGGED_CHARS = 8_000
MAX_RECORD_CHARS = 32_000  # any one log record, with its traceback

# Where a trace starts: everything after it is frames, not a reason. DuckDB ("Stack Trace:"),
# Python, and the JVM behind Databricks ("JVM stacktrace:", "\tat org.apache…").
_TRACE = re.compile(
    r"\n\s*Stack Trace:|Traceback \(most recent call last\)|\n\s*JVM stacktrace|\n\s+at [\w$.]+\("
)

# `key=value` settings that hold credentials, in connection strings, URLs and driver messages.
_SECRET_KEYS = (
    "password|pwd|accesstoken|access_token|token|secret|client_secret|accountkey|"
    "sharedaccesssignature|sig|apikey|api_key|api-key|x-api-key"
)
_SECRET_VALUE = r"\"[^\"]*\"|'[^']*'|\{[^}]*\}|[^\s;,&'\"]+"  # quoted, {braced} (ODBC) or bare
_SECRET_SETTING = re.compile(rf"(?i)\b({_SECRET_KEYS})(\s*=\s*)({_SECRET_VALUE})")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization\s*:\s*|bearer\s+|basic\s+)[\w.~+/=-]{8,}")
_JWT = re.compile(r"\beyJ[\w-]{5,}\.[\w-]+\.[\w-]*")  # an Entra or other JWT, wherever it appears
_DATABRICKS_TOKEN = re.compile(r"\bdapi[0-9a-f]{32}(?:-\d+)?\b")
_URL_USER = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")  # scheme://user:pass@host

# Absolute paths on the server: `/srv/data/x.parquet`, `~/lake/x`, `C:\data\x`, `file:///x`. Two
# components at least (`/x` alone says nothing about the server); a `/` inside a word, a number or a
# URL (`2024/01/02`, `https://host/path`) is not one.
_FILE_URI = re.compile(r"(?i)\bfile:/*(?=/)")
_POSIX_PATH = re.compile(r"(?<![\w.~/\\-])~?(?:/[^\s'\"`/,;()\[\]<>|*?]+){2,}/?")
_WINDOWS_PATH = re.compile(r"(?<![\w\\])(?:[A-Za-z]:|\\\\[^\s\\'\"]+)(?:\\[^\s\\'\"<>|*?,;()]+)+\\?")


def public_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` as one bounded line, without a trace, credentials or server paths (a path is cut to
    its last part, `…/orders.parquet`, which still says which file was meant)."""
    text = _TRACE.split(text[:MAX_SCANNED_CHARS], maxsplit=1)[0]
    text = _SECRET_SETTING.sub(lambda m: f"{m[1]}{m[2]}***", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m[1]}***", text)
    text = _URL_USER.sub(lambda m: f"{m[1]}***@", text)
    text = _DATABRICKS_TOKEN.sub("***", _JWT.sub("***", text))
    text = _POSIX_PATH.sub(lambda m: "…/" + _last_part(m[0], "/"), _FILE_URI.sub("", text))
    text = _WINDOWS_PATH.sub(lambda m: "…\\" + _last_part(m[0], "\\"), text)
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def shown(error: BaseException | str, log: logging.Logger, what: str, level: int = logging.INFO) -> str:
    """`public_text` of the error; the full text goes to `log` when anything was left out of it,
    with `what` saying what failed (at `level`: a failed query is routine, a source that will not
    open is the operator's to fix)."""
    full = str(error)
    public = public_text(full)
    if len(full) > MAX_SCANNED_CHARS or public != " ".join(full.split()):
        log.log(level, "%s: %s", what, _logged(full))
    return public


def _logged(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """`text`, or its start and its length when it is longer than a log line should be."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (cut: {len(text):,} characters in all)"


class BoundedFormatter(logging.Formatter):
    """A formatter whose records, tracebacks included, are at most `MAX_RECORD_CHARS` long: an
    exception's message may carry a value a query built, and the log is every tenant's."""

    def format(self, record: logging.LogRecord) -> str:
        return _logged(super().format(record), MAX_RECORD_CHARS)


class BoundedArguments(logging.Filter):
    """For loggers with formatters of their own (uvicorn's access and error logs): each string
    argument of a record cut to `MAX_LOGGED_CHARS`, and its exception's text with it. A request
    line is the caller's to make as long as the HTTP parser allows (probe 12: 60,000 characters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_logged(a) if isinstance(a, str) else a for a in record.args)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = _logged(logging.Formatter().formatException(record.exc_info), MAX_RECORD_CHARS)
        return True


def bounded_record(record: logging.LogRecord) -> str:
    """A record's message and traceback as one bounded text (for a handler that sends it on)."""
    return BoundedFormatter("%(message)s").format(record)


def _last_part(path: str, separator: str) -> str:
    parts = [p for p in path.split(separator) if p]
    return parts[-1] if parts else ""
