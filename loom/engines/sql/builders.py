"""Functions that build one value from a count, bounded before they run.

`repeat('x', 2147483648)` builds a 2 GiB string in one call: DuckDB allocates it outside its memory
limit, its interrupt cannot stop the call, and doubling it raises an INTERNAL error that drops the
whole database. No limit set on the engine covers it, so the query is rewritten: the count given
to each `repeat` and `lpad`/`rpad` is checked first, and one that would build more than
`MAX_BUILT_CHARS` raises a readable error instead — no question about data needs that much. The
check sits in the count argument, not around the call: DuckDB folds a constant call while planning,
whatever CASE surrounds it.
"""

from __future__ import annotations

from sqlglot import exp

MAX_BUILT_CHARS = 16_000_000


def bounded_builders(tree: exp.Expr) -> exp.Expr:
    """`tree` with the count of every repeat/lpad/rpad checked."""
    for node in list(tree.find_all(exp.Repeat)):
        times = node.args["times"]
        size = exp.Mul(this=exp.cast(times.copy(), "BIGINT"), expression=exp.Length(this=node.this.copy()))
        times.replace(_checked(times, size, "repeat"))
    for pad in list(tree.find_all(exp.Pad)):
        width = pad.expression
        width.replace(
            _checked(width, exp.cast(width.copy(), "BIGINT"), "lpad" if pad.args.get("is_left") else "rpad")
        )
    return tree


def _checked(count: exp.Expr, size: exp.Expr, name: str) -> exp.Expr:
    message = f"{name}() would build a value of more than {MAX_BUILT_CHARS:,} characters; queries may not"
    too_big = exp.GT(this=size, expression=exp.Literal.number(MAX_BUILT_CHARS))
    failure = exp.Anonymous(this="error", expressions=[exp.Literal.string(message)])
    return exp.Case(ifs=[exp.If(this=too_big, true=failure)], default=count.copy())
