"""How `--help` names values: `QUESTION`, `--max-rows N`, `--home PATH`, as command lines usually do.

This typer (0.29) labels every parameter with its Python type (`<str>`, `<bool>`, `<list[str]>`),
flags and `--help` included, and writes a required argument as `{question}` in the usage line. It
has no setting to turn either off, so `use_metavars()` replaces the two methods that produce them:
an option shows its `metavar=` (its choices when it is an enum, nothing when it is a flag), an
argument shows no type, and the usage line shows `QUESTION` (`[QUERY]` when optional).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption


def _option_value(option: TyperOption, ctx: Any) -> str | None:
    if option.is_flag or option.count:
        return None
    if option.metavar is not None:
        return option.metavar
    if option.type_descriptor.is_choice:  # typer's own label, `<table|json|csv>`, as `[table|json|csv]`
        return f"[{option.display_type(ctx)[1:-1]}]"
    return (option.name or "value").upper()


def _argument_type(argument: TyperArgument, ctx: Any) -> str | None:
    return None  # the argument's name (its metavar) already says what it is


def _argument_usage(argument: TyperArgument, ctx: Any) -> list[str]:
    name = argument.metavar or (argument.name or "arg").upper()
    if not argument.required:
        name = f"[{name}]"
    return [name + ("..." if argument.nargs != 1 else "")]


def use_metavars() -> None:
    """Make every typer command's help name values instead of Python types (idempotent)."""
    TyperOption.display_type_rich = _option_value  # type: ignore[method-assign,assignment]
    TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign,assignment]
    TyperArgument.get_usage_pieces = _argument_usage  # type: ignore[method-assign,assignment]
