"""Tests for training.options: argparse options from a dataclass and back."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from training import options
from training.options import option
from training.stages.dual import DualConfig


@dataclass
class Settings:
    sources: tuple[str, ...] = option((), "inputs")
    out: str = option("runs/x", "run folder")
    steps: int = option(10, "steps")
    lr: float = option(1e-3, "learning rate")
    name: str | None = option(None, "a name")
    limit: float | None = option(2.5, "a limit")
    progress: bool = option(True, "bars")
    kinds: tuple[str, ...] = option(("a", "b"), "kinds")


def parse(argv: list[str], cls=Settings, **kw):
    parser = argparse.ArgumentParser()
    options.add_arguments(parser, cls, **kw)
    return options.from_arguments(cls, parser.parse_args(argv))


def test_every_field_is_an_option_with_its_type_and_default():
    assert parse([]) == Settings()
    got = parse(["--steps", "5", "--lr", "0.1", "--name", "x", "--no-progress", "--kinds", "c", "--sources", "s1",
                 "s2", "--out", "o"])
    assert got == Settings(("s1", "s2"), "o", 5, 0.1, "x", 2.5, False, ("c",))
    assert isinstance(got.steps, int) and isinstance(got.kinds, tuple)


def test_positional_and_required_fields():
    got = parse(["a.tar.xz", "b.tar.xz", "--out", "run"], positional=("sources",), required=("out",))
    assert got.sources == ("a.tar.xz", "b.tar.xz") and got.out == "run"
    with pytest.raises(SystemExit):
        parse(["a.tar.xz"], positional=("sources",), required=("out",))
    with pytest.raises(SystemExit):
        parse(["--steps", "many"])


def test_help_shows_each_fields_help_and_default():
    parser = argparse.ArgumentParser()
    options.add_arguments(parser, Settings)
    text = parser.format_help()
    assert "learning rate (default: 0.001)" in text and "kinds (default: a b)" in text


def test_unsupported_types_are_refused():
    @dataclass
    class Bad:
        table: dict = option(None, "a table")

    with pytest.raises(TypeError, match="unsupported option type"):
        options.add_arguments(argparse.ArgumentParser(), Bad)


def test_the_dual_config_round_trips_through_the_command_line():
    assert all(f.metadata.get(options.HELP) for f in dataclasses.fields(DualConfig))
    got = parse(["pro19.tar.xz", "--out", "runs/d", "--preset", "b4c64", "--outcome-max-komi", "8"], DualConfig,
                positional=("sources",), required=("out",))
    assert got == DualConfig(sources=("pro19.tar.xz",), out="runs/d", preset="b4c64", outcome_max_komi=8.0)
