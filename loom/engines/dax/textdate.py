"""More scalar functions: dates and times, text, rounding and statistics.

FORMAT takes the format strings people use most (dates: yyyy, yy, MMMM, MMM, MM, M, dd, d, dddd,
ddd, hh, mm, ss, and the named "Short Date"/"Long Date"; numbers: "0", "0.00", "#,##0", "#,##0.00",
"0%", "0.0%", "Percent", "Fixed", "Standard"); another is refused naming it, never guessed.
TODAY() and NOW() read the query's clock (`--now`, or the time the query runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from loom.engines.contracts import QueryError
from loom.engines.dax import values as v
from loom.engines.dax.syntax import Name, Node, Text
from loom.engines.dax.values import Expr

if TYPE_CHECKING:
    from loom.engines.dax.compiler import Compiler, Env

Handler = Callable[["Compiler", tuple[Node, ...], "Env"], Expr]
MAX_REPT_CHARS = 100_000  # REPT builds text: bounded like any value the engine returns
_DATEDIFF_UNITS = {"SECOND": "second", "MINUTE": "minute", "HOUR": "hour", "DAY": "day", "WEEK": "week",
                   "MONTH": "month", "QUARTER": "quarter", "YEAR": "year"}  # fmt: skip


def _arity(name: str, args: tuple[Node, ...], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise QueryError("wrong_arguments", f"{name} takes {low} to {high} arguments, not {len(args)}.")


def _values(c: Compiler, args: tuple[Node, ...], env: Env) -> list[Expr]:
    return [c.scalar(a, env) for a in args]


def datediff(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    """DATEDIFF(start, end, unit): unit boundaries crossed, as DAX counts them (WEEK: Sundays)."""
    _arity("DATEDIFF", args, 3, 3)
    if not isinstance(args[2], Name) or args[2].name.upper() not in _DATEDIFF_UNITS:
        raise QueryError("wrong_arguments", f"DATEDIFF's interval is one of {', '.join(_DATEDIFF_UNITS)}.")
    start, end = c.scalar(args[0], env), c.scalar(args[1], env)
    unit = _DATEDIFF_UNITS[args[2].name.upper()]
    if unit == "week":  # weeks start on Sunday: count the Sundays crossed
        s, e = f"CAST({start.sql} AS DATE)", f"CAST({end.sql} AS DATE)"
        sunday_before = [f"{d} - INTERVAL (dayofweek({d})) DAY" for d in (s, e)]
        return Expr(f"(date_diff('day', {sunday_before[0]}, {sunday_before[1]}) // 7)", v.NUMBER)
    return Expr(f"date_diff('{unit}', {start.sql}, {end.sql})", v.NUMBER)


def _clock(c: Compiler, day_only: bool) -> Expr:
    moment = c.now
    if day_only:
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return v.datetime_literal(moment.replace(tzinfo=None))


def today(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    _arity("TODAY", args, 0, 0)
    return _clock(c, True)


def now(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    _arity("NOW", args, 0, 0)
    return _clock(c, False)


def weekday(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    """WEEKDAY(date, [1: Sunday=1 … | 2: Monday=1 … | 3: Monday=0 …])."""
    _arity("WEEKDAY", args, 1, 2)
    date = c.scalar(args[0], env).sql
    kind = c.scalar(args[1], env).literal if len(args) == 2 else 1
    shift = {1: f"dayofweek({date}) + 1", 2: f"isodow({date})", 3: f"isodow({date}) - 1"}.get(kind)  # type: ignore[call-overload]
    if shift is None:
        raise QueryError("wrong_arguments", "WEEKDAY's return type is 1, 2 or 3.")
    return Expr(f"({shift})", v.NUMBER)


def format_(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    _arity("FORMAT", args, 2, 3)
    value = c.scalar(args[0], env)
    if not isinstance(args[1], Text):
        raise QueryError(
            "wrong_arguments", 'FORMAT\'s format is a text literal, such as "yyyy-MM" or "#,##0".'
        )
    pattern = args[1].value
    if value.kind == v.DATETIME:
        return Expr(f"strftime({value.sql}, '{_date_format(pattern)}')", v.TEXT)
    return Expr(_number_format(value.sql, pattern), v.TEXT)


_NAMED_DATES = {
    "short date": "%-m/%-d/%Y",
    "long date": "%A, %B %-d, %Y",
    "general date": "%-m/%-d/%Y %-I:%M:%S %p",
}
_DATE_TOKENS = [("yyyy", "%Y"), ("yy", "%y"), ("MMMM", "%B"), ("MMM", "%b"), ("MM", "%m"), ("M", "%-m"),
                ("dddd", "%A"), ("ddd", "%a"), ("dd", "%d"), ("d", "%-d"), ("hh", "%H"), ("HH", "%H"),
                ("nn", "%M"), ("mm", "%M"), ("ss", "%S"), ("AM/PM", "%p")]  # fmt: skip


def _date_format(pattern: str) -> str:
    named = _NAMED_DATES.get(pattern.lower())
    if named is not None:
        return named
    out, i = [], 0
    while i < len(pattern):
        for token, code in _DATE_TOKENS:
            if pattern.startswith(token, i):
                out.append(code)
                i += len(token)
                break
        else:
            ch = pattern[i]
            if ch.isalpha():
                raise QueryError("unsupported", f"The FORMAT date pattern {pattern!r} is not supported here.")
            out.append("%%" if ch == "%" else ch.replace("'", "''"))
            i += 1
    return "".join(out)


_NUMBER_FORMATS = {
    "0": ("", 0, False), "0.0": ("", 1, False), "0.00": ("", 2, False), "#,##0": (",", 0, False),
    "#,##0.0": (",", 1, False), "#,##0.00": (",", 2, False), "0%": ("", 0, True), "0.0%": ("", 1, True),
    "0.00%": ("", 2, True), "percent": ("", 2, True), "fixed": ("", 2, False), "standard": (",", 2, False),
    "general number": None,
}  # fmt: skip


def _number_format(sql: str, pattern: str) -> str:
    key = pattern.lower() if pattern.lower() in _NUMBER_FORMATS else pattern
    if key not in _NUMBER_FORMATS:
        raise QueryError("unsupported", f"The FORMAT number pattern {pattern!r} is not supported here.")
    spec = _NUMBER_FORMATS[key]
    if spec is None:
        return v.as_text(Expr(sql, v.NUMBER))
    thousands, digits, percent = spec
    value = f"({sql}) * 100" if percent else sql
    text = f"format('{{:{thousands}.{digits}f}}', CAST({value} AS DOUBLE))"
    return f"{text} || '%'" if percent else text


def search(exact: bool, name: str) -> Handler:
    """SEARCH (without case) / FIND (with): the 1-based position; not found is an error unless a
    fourth argument says what to return."""

    def compile_it(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
        _arity(name, args, 2, 4)
        needle, haystack = (v.as_text(x) for x in _values(c, args[:2], env))
        if not exact:
            needle, haystack = f"lower({needle})", f"lower({haystack})"
        start = c.scalar(args[2], env).sql if len(args) > 2 else "1"
        found = f"(instr(substr({haystack}, {start}), {needle}) + ({start}) - 1)"
        missing = c.scalar(args[3], env).sql if len(args) == 4 else f"error('{name}: the text was not found')"
        return Expr(
            f"(CASE WHEN instr(substr({haystack}, {start}), {needle}) = 0 THEN {missing} ELSE {found} END)",
            v.NUMBER,
        )

    return compile_it


def substitute(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    _arity("SUBSTITUTE", args, 3, 3)
    text, old, new = (v.as_text(x) for x in _values(c, args, env))
    return Expr(f"replace({text}, {old}, {new})", v.TEXT)


def rept(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    _arity("REPT", args, 2, 2)
    text, n = v.as_text(c.scalar(args[0], env)), c.scalar(args[1], env).sql
    guard = f"length({text}) * ({n}) > {MAX_REPT_CHARS}"
    message = f"error('REPT would build more than {MAX_REPT_CHARS} characters')"
    return Expr(f"(CASE WHEN {guard} THEN {message} ELSE repeat({text}, CAST({n} AS BIGINT)) END)", v.TEXT)


def isfiltered(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
    """ISFILTERED(T[c]): whether a filter applies directly to the column (T: to any of its columns)."""
    from loom.engines.dax.aggregations import column_arg

    _arity("ISFILTERED", args, 1, 1)
    if isinstance(args[0], Name):
        table = c.model.table(args[0].name)
        wanted = {(table.name.lower(), k) for k in table.columns}
    else:
        wanted = {column_arg(c, args[0], "ISFILTERED").key}
    filtered = any(f.columns(c.model) & wanted for f in env.ctx.filters)
    return Expr("TRUE" if filtered else "FALSE", v.BOOLEAN)


def _rounding(direction: str) -> Callable[..., str]:
    def build(a: Expr, digits: Expr | None = None) -> str:
        scale = f"power(10, {digits.sql if digits else 0})"
        op = "ceil" if direction == "up" else "floor"
        return f"(sign({a.sql}) * {op}(abs(CAST({a.sql} AS DOUBLE)) * {scale}) / {scale})"

    return build


def _multiple(direction: str) -> Callable[..., str]:
    def build(a: Expr, step: Expr | None = None) -> str:
        s = step.sql if step else "1"
        op = "ceil" if direction == "up" else "floor"
        return f"({op}(CAST({a.sql} AS DOUBLE) / {s}) * {s})"

    return build


def _simple(name: str, low: int, high: int, build: Callable[..., str], kind: str) -> Handler:
    def compile_it(c: Compiler, args: tuple[Node, ...], env: Env) -> Expr:
        _arity(name, args, low, high)
        return Expr(build(*_values(c, args, env)), kind)

    return compile_it


def _date_add_months(a: Expr, n: Expr) -> str:
    return f"CAST(CAST({a.sql} AS DATE) + INTERVAL (CAST({n.sql} AS BIGINT)) MONTH AS TIMESTAMP)"


def _eomonth(a: Expr, n: Expr) -> str:
    return f"CAST(last_day(CAST({a.sql} AS DATE) + INTERVAL (CAST({n.sql} AS BIGINT)) MONTH) AS TIMESTAMP)"


FUNCTIONS: dict[str, Handler] = {
    "DATEDIFF": datediff,
    "TODAY": today,
    "NOW": now,
    "WEEKDAY": weekday,
    "FORMAT": format_,
    "SEARCH": search(False, "SEARCH"),
    "FIND": search(True, "FIND"),
    "SUBSTITUTE": substitute,
    "REPT": rept,
    "ISFILTERED": isfiltered,
    "EDATE": _simple("EDATE", 2, 2, _date_add_months, v.DATETIME),
    "EOMONTH": _simple("EOMONTH", 2, 2, _eomonth, v.DATETIME),
    "WEEKNUM": _simple(
        "WEEKNUM", 1, 2, lambda a, t=None: f"CAST(strftime({a.sql}, '%U') AS BIGINT) + 1", v.NUMBER
    ),
    "HOUR": _simple("HOUR", 1, 1, lambda a: f"hour({a.sql})", v.NUMBER),
    "MINUTE": _simple("MINUTE", 1, 1, lambda a: f"minute({a.sql})", v.NUMBER),
    "SECOND": _simple("SECOND", 1, 1, lambda a: f"second({a.sql})", v.NUMBER),
    "CONTAINSSTRING": _simple(
        "CONTAINSSTRING",
        2,
        2,
        lambda a, b: f"contains(lower({v.as_text(a)}), lower({v.as_text(b)}))",
        v.BOOLEAN,
    ),
    "CONTAINSSTRINGEXACT": _simple(
        "CONTAINSSTRINGEXACT", 2, 2, lambda a, b: f"contains({v.as_text(a)}, {v.as_text(b)})", v.BOOLEAN
    ),
    "EXACT": _simple(
        "EXACT", 2, 2, lambda a, b: f"({v.as_text(a)} IS NOT DISTINCT FROM {v.as_text(b)})", v.BOOLEAN
    ),
    "ROUNDUP": _simple("ROUNDUP", 1, 2, _rounding("up"), v.NUMBER),
    "ROUNDDOWN": _simple("ROUNDDOWN", 1, 2, _rounding("down"), v.NUMBER),
    "CEILING": _simple("CEILING", 1, 2, _multiple("up"), v.NUMBER),
    "FLOOR": _simple("FLOOR", 1, 2, _multiple("down"), v.NUMBER),
    "EXP": _simple("EXP", 1, 1, lambda a: f"exp({a.sql})", v.NUMBER),
    "LN": _simple("LN", 1, 1, lambda a: f"ln({a.sql})", v.NUMBER),
    "LOG10": _simple("LOG10", 1, 1, lambda a: f"log10({a.sql})", v.NUMBER),
    "LOG": _simple("LOG", 1, 2, lambda a, b=None: f"(ln({a.sql}) / ln({b.sql if b else 10}))", v.NUMBER),
    "SIGN": _simple("SIGN", 1, 1, lambda a: f"sign({a.sql})", v.NUMBER),
}
