"""Functions that build one value from a count, bounded before they run.

`repeat('x', 2147483648)` builds a 2 GiB string in one call: DuckDB allocates it outside its memory
limit, its interrupt cannot stop the call, and doubling it raises an INTERNAL error that drops the
whole database. No limit set on the engine covers it, so the query is rewritten: the count given
to each builder — `repeat`, `space`, `lpad`/`rpad`, `list_resize`, and `range`/`generate_series`
used as a value (a list) rather than a table — is checked first, and one that would build more
than `MAX_BUILT` characters or elements raises a readable error instead; no question about data
needs that much. The check sits in the count argument, not around the call: DuckDB folds a
constant call while planning, whatever CASE surrounds it. Builders are checked innermost first,
so the size an outer check computes never builds an unchecked inner value.

This bounds the builders that take a count. Growth without a count (`printf` widths, `replace`
into longer text, many concatenations) is not bounded here: that needs the engine in a process of
its own with an address-space limit (noted in the hardening issue).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

MAX_BUILT = 16_000_000


def bounded_builders(tree: exp.Expr) -> exp.Expr:
    """`tree` with the count of every builder checked (innermost first)."""
    for node in reversed(list(tree.find_all(exp.Func, bfs=False))):
        guard = _GUARDS.get(_name(node))
        if guard is not None:
            guard(node)
    return tree


def _name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.GenerateSeries):
        # In FROM it is a table function (rows, streamed); as a value it builds a list in memory.
        return "" if isinstance(node.parent, exp.Table) else "range"
    return type(node).__name__.lower()


def _repeat(node: exp.Func) -> None:
    times = node.args.get("times")
    if times is None:
        return
    size = exp.Mul(this=_bigint(times), expression=exp.Length(this=node.this.copy()))
    times.replace(_checked(times, size, "repeat"))


def _space(node: exp.Func) -> None:
    _check_arg(node, "this", "space")


def _pad(node: exp.Func) -> None:
    _check_arg(node, "expression", "lpad" if node.args.get("is_left") else "rpad")


def _range(node: exp.Func) -> None:
    start, end, step = node.args.get("start"), node.args.get("end"), node.args.get("step")
    if end is None:
        return
    if start is None:
        end.replace(_checked(end, exp.Abs(this=_bigint(end)), "range"))
        return
    # The same call builds numbers or timestamps, and the rewrite cannot see which: each count is
    # written with TRY_CAST, which binds for every type and is NULL for the other kind.
    numbers = exp.Abs(this=exp.Sub(this=_try(end, "BIGINT"), expression=_try(start, "BIGINT")))
    count: exp.Expr = numbers
    if step is not None:  # timestamps: the span over the step, in seconds (a timestamp range has one)
        seconds = exp.Abs(this=exp.Sub(this=_epoch(end, "TIMESTAMP"), expression=_epoch(start, "TIMESTAMP")))
        steps = exp.Div(this=seconds, expression=_epoch(step, "INTERVAL"))
        count = exp.Coalesce(this=numbers, expressions=[steps])
    end.replace(_checked(end, count, "range"))


def _try(node: exp.Expr, to: str) -> exp.Expr:
    return exp.TryCast(this=node.copy(), to=exp.DataType.build(to))


def _epoch(node: exp.Expr, to: str) -> exp.Expr:
    return exp.Anonymous(this="epoch", expressions=[_try(node, to)])


def _list_resize(node: exp.Func) -> None:
    if len(node.expressions) >= 2:
        size = node.expressions[1]
        size.replace(_checked(size, _bigint(size), "list_resize"))


def bounded_count(count: exp.Expr, name: str) -> exp.Expr:
    """`count` as written, or an error when it is more than `MAX_BUILT`: for a rewrite that builds
    a list from a count of its own (a KQL `range` with a real step)."""
    return _checked(count, count.copy(), name)


def _check_arg(node: exp.Func, arg: str, name: str) -> None:
    count = node.args.get(arg)
    if count is not None:
        count.replace(_checked(count, _bigint(count), name))


def _bigint(node: exp.Expr) -> exp.Expr:
    return exp.cast(node.copy(), "BIGINT")


def _checked(count: exp.Expr, size: exp.Expr, name: str) -> exp.Expr:
    message = f"{name}() would build a value of more than {MAX_BUILT:,} characters or items; queries may not"
    too_big = exp.GT(this=size, expression=exp.Literal.number(MAX_BUILT))
    failure = exp.Anonymous(this="error", expressions=[exp.Literal.string(message)])
    return exp.Case(ifs=[exp.If(this=too_big, true=failure)], default=count.copy())


_GUARDS: dict[str, Callable[[exp.Func], None]] = {
    "repeat": _repeat,
    "space": _space,
    "pad": _pad,
    "range": _range,
    "list_resize": _list_resize,
    "array_resize": _list_resize,
}
