"""Command-line options from a dataclass: one argparse option per field, and the dataclass back from the parse.

A stage keeps its settings in one typed ``@dataclass`` (every option with its default and a help string, which
a TOML file or a test can fill as well as the command line). Declare a field with :func:`option`::

    @dataclass
    class StageConfig:
        sources: tuple[str, ...] = option((), "SGF archives")
        lr: float = option(1e-3, "peak learning rate")
        export: str | None = option(None, "write the final weights here")

then :func:`add_arguments` gives ``--lr``, ``--export`` (``sources`` too, or a positional argument if declared
``option(..., positional=True)`` or named in ``positional``) and :func:`from_arguments` builds ``StageConfig`` from
the parsed namespace; :func:`parse` does both for a list of words (a pipeline stage's arguments). A field without
a default (``option(REQUIRED, ...)``, in a ``@dataclass(kw_only=True)``) is a required option. Field types
understood: ``bool`` (``--x`` / ``--no-x``), ``int``, ``float``, ``str``, each optionally ``| None`` (the option
then takes a value or is left out), and ``tuple[T, ...]`` of those (several values); ``choices`` limits the values.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any

HELP = "help"
CHOICES = "choices"
POSITIONAL = "positional"
REQUIRED: Any = dataclasses.MISSING  # the default of a field that has none: a required option


def option(default: Any, help: str, *, choices: Iterable[Any] | None = None, positional: bool = False) -> Any:
    """A dataclass field with ``default`` (:data:`REQUIRED`: none) and the help string :func:`add_arguments` shows;
    ``choices``: the values it accepts; ``positional``: a positional argument, not an option."""
    metadata = {HELP: help, POSITIONAL: positional}
    if choices is not None:
        metadata[CHOICES] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


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
    """Add one option per field of dataclass ``cls`` to ``parser`` (``lr_step`` becomes ``--lr-step``, ``lambda_``
    ``--lambda``).

    Fields declared positional or named in ``positional`` become positional arguments (a tuple field takes one or
    more values), those without a default or named in ``required`` required options. The help shows each field's
    help string and default (None shows none: the help text says what a setting left out means).
    """
    positional, required = set(positional), set(required)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, several = _parts(hints[f.name])
        text = f.metadata.get(HELP, "")
        choices = f.metadata.get(CHOICES)
        if f.name in positional or f.metadata.get(POSITIONAL):
            parser.add_argument(f.name, type=kind, nargs="+" if several else None, choices=choices, help=text)
            continue
        flag = "--" + f.name.rstrip("_").replace("_", "-")
        needed = f.name in required or f.default is dataclasses.MISSING
        if not needed and f.default is not None:  # None: not given, the help says what that means
            shown = " ".join(map(str, f.default)) if several else f.default
            text = f"{text} (default: {shown})" if text else f"default: {shown}"
        if kind is bool and not several:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                                help=text)
            continue
        parser.add_argument(flag, dest=f.name, type=kind, nargs="*" if several else None, choices=choices,
                            default=None if needed else f.default, required=needed, help=text,
                            metavar=None if choices else f.name.rstrip("_").upper())


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


def parse(cls: type, argv: Iterable[str], prog: str | None = None) -> Any:
    """An instance of dataclass ``cls`` from command-line words, as :func:`add_arguments` reads them; SystemExit
    (argparse's message on stderr) for words that do not fit."""
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser, cls)
    return from_arguments(cls, parser.parse_args(list(argv)))
