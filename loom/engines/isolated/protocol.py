"""What the parent and an engine's child process say to each other, and the hook engines call.

Parent → child: `(id, method, kwargs)` for `execute`, `validate` and `catalog` (whose kwargs are
`{"held": number}`: the catalog the parent holds; the reply is `(number, catalog or None)`);
`(None, STOP, {})`; `(None, PING, {})`, answered at once with `(None, PONG)` by the child's reading
loop (never by a call's thread), so a child that does not answer is stopped or wedged, not busy.
Child → parent, per request: `(id, STARTED)` when the query itself begins, then
one of `(id, OK, value, problem, stamp)`, `(id, REFUSED, (code, message, problems), problem, stamp)`
for a QueryError, `(id, BROKEN, text, problem, stamp)` for anything else; `problem` is the engine's
`problem()` after the call, `stamp` the number of the catalog still current (or None). And
`(None, LOG, (logger, level, text))` for what the child logs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

STOP = "stop"
CATALOG = "catalog"
STARTED = "started"
OK = "ok"
REFUSED = "refused"
BROKEN = "broken"
LOG = "log"
PING = "ping"
PONG = "pong"

_request = threading.local()  # in the child: how the request on this thread reports its start


def query_started() -> None:
    """Called by an engine when a query begins running (after loading and validating): the parent
    counts the query's time limit from here. A no-op outside a child."""
    report: Callable[[], None] | None = getattr(_request, "report", None)
    if report is not None:
        report()


def reporting(report: Callable[[], None] | None) -> None:
    """Set (or clear) how the current thread's request reports that its query started."""
    _request.report = report
