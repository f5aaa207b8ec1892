"""Command-line options from a dataclass: one argparse option per field, and the dataclass back from the parse.

A stage keeps its settings in one typed ``@dataclass`` (every option with its default and a help string, which
a TOML file or a test can fill as well as the command line). Declare a field with :func:`option`::

    @dataclass
    class StageConfig:
        sources: tuple[str, ...] = option((), "SGF archives")
        lr: float = option(1e-3, "peak learning rate")
        export: str | None = option(None, "write the final weights here")

then :func:`add_arguments` gives ``--lr``, ``--export`` (``sources`` too, or a positional argument if named in
``positional``) and :func:`from_arguments` builds ``StageConfig`` from the parsed namespace. Field types
understood: ``bool`` (``--x`` / ``--no-x``), ``int``, ``float``, ``str``, each optionally ``| None`` (the option
then takes a value or is left out), and ``tuple[T, ...]`` of those (several values).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any

HELP = "help"


def option(default: Any, help: str) -> Any:
    """A dataclass field with ``default`` and the help string :func:`add_arguments` shows."""
    return dataclasses.field(default=default, metadata={HELP: help})


def _parts(hint: Any) -> tuple[type, bool]:
    """``(scalar type, several values)`` of a field's type hint (``| None`` allowed); TypeError for anything
    else."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported option type {hint!r}")
        hint, args = rest[0], typing.get_args(rest[0])
    several = typing.get_origin(hint) is tuple
    if several:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"a tuple option must be tuple[T, ...], not {hint!r}")
        hint = args[0]
    if hint not in (bool, int, float, str):
        raise TypeError(f"unsupported option type {hint!r}")
    return hint, several


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, positional: Iterable[str] = (),
                  required: Iterable[str] = ()) -> None:
    """Add one option per field of dataclass ``cls`` to ``parser`` (``lr_step`` becomes ``--lr-step``).

    Fields named in ``positional`` become positional arguments (a tuple field takes one or more values), those
    in ``required`` required options. The help shows each field's help string and default.
    """
    positional, required = set(positional), set(required)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, several = _parts(hints[f.name])
        text = f.metadata.get(HELP, "")
        if f.name in positional:
            parser.add_argument(f.name, type=kind, nargs="+" if several else None, help=text)
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name not in required:
            shown = " ".join(map(str, f.default)) if several else f.default
            text = f"{text} (default: {shown})" if text else f"default: {shown}"
        if kind is bool and not several:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                                help=text)
            continue
        parser.add_argument(flag, dest=f.name, type=kind, nargs="*" if several else None,
                            default=None if f.name in required else f.default, required=f.name in required,
                            help=text, metavar=f.name.upper())


def from_arguments(cls: type, args: argparse.Namespace) -> Any:
    """An instance of dataclass ``cls`` from the fields of ``args`` (lists become tuples for tuple fields)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name)
        if _parts(hints[f.name])[1] and value is not None:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)
