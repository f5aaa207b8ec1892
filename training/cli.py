"""``gogame-train``: the training command line.

Each sub-command lives in the module that does the work; this file only
builds the parser from the table below and dispatches. A module named here
provides the named run function (``run(settings) -> int`` unless the table says
otherwise) and either its typed configuration, ``CONFIG`` (a dataclass whose
fields are its options, see :mod:`training.options`; its run function gets that
dataclass), or ``add_arguments(parser)`` (its run function gets the parsed
namespace, or its ``CONFIG`` when it has both: options of its own making).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from typing import Any

from gogame.checkpoint import CheckpointError
from training import options
from training.stopping import EXIT_STOPPED, RunStopped

# name -> (module, run function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "dataset": ("training.data.shards", "run", "replay SGF games into bit-packed feature shards"),
    "sl": ("training.stages.sl", "run", "train a policy net on expert moves (supervised)"),
    "value-sl": ("training.stages.sl", "run_value", "train a value net on expert game outcomes"),
    "dual": ("training.stages.dual", "run",
             "train a dual net (policy, value, ownership) on expert games in SGF archives"),
    "eval-policy": ("training.eval.policy", "run", "accuracy of a policy net on held-out expert games"),
    "eval-value": ("training.eval.value", "run", "mean squared error of a value net on a dataset's held-out positions"),
    "rollout": ("training.stages.rollout", "run",
                "learn the rollout or tree policy's pattern weights from expert games"),
    "match": ("training.eval.match", "run", "play two GTP engines against each other: win rate, Elo, SGF records"),
    "tally": ("training.eval.tally", "run", "one match's figures from its streams' folders: wins, interval, Elo, losses"),
    "resignations": ("training.eval.resignations", "run",
                     "check a match's resignations: a judge engine plays each one out"),
    "plot": ("training.metrics", "run", "plot a run's metrics.csv to PNG"),
    "selfplay": ("training.stages.selfplay", "run",
                 "play policy (or MCTS) games in worker processes into shards and SGF"),
    "rl": ("training.stages.rl", "run", "RL policy by REINFORCE against a pool of its earlier checkpoints"),
    "policy-match": ("training.eval.policy_match", "run", "two policy nets head to head in raw-policy games: win rate"),
    "value": ("training.stages.value", "run",
              "value data from SL/random/RL games (one position each), then the value net"),
    "pipeline": ("training.stages.pipeline", "run", "run the training stages of a TOML config, skipping finished ones"),
    "campaign": ("training.stages.campaign", "run",
                 "a training run over many machines' turns: start, continue, status"),
    "demo": ("training.demos.command", "run", "run a lecture demo (--list) on the shared trainer"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gogame-train",
        description="Train and evaluate gogame's networks: datasets, SL, rollout, self-play, RL, value, matches, demos.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, function, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(module=module, function=function)
        stage = importlib.import_module(module)
        if hasattr(stage, "add_arguments"):  # options of its own making (positional arguments, required ones)
            stage.add_arguments(p)
        else:  # the fields of its typed configuration
            options.add_arguments(p, stage.CONFIG)
    return parser


def parse(argv: list[str]) -> tuple[str, Any]:
    """The command and its settings from command-line words: the command's ``CONFIG`` dataclass where its module
    has one, else the parsed namespace. SystemExit (argparse's message on stderr) for words that do not fit."""
    args = build_parser().parse_args(argv)
    config_class = getattr(importlib.import_module(args.module), "CONFIG", None)
    return args.command, options.from_arguments(config_class, args) if config_class else args


def execute(command: str, settings: Any, argv: list[str]) -> int:
    """Run ``command`` with its settings (see :func:`parse`); its exit status. Bad input is a one-line message
    (status 2), a stopped run says how to continue (``argv``, the words that started it; :data:`EXIT_STOPPED`)."""
    module, function, _ = COMMANDS[command]
    try:
        return int(getattr(importlib.import_module(module), function)(settings) or 0)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        # Bad input named on the command line, or settings that do not fit it: a clear message, not a traceback.
        print(f"gogame-train {command}: {exc}", file=sys.stderr)
        return 2
    except RunStopped as stop:
        print(f"gogame-train {command}: {stop}; to continue: {continue_command(argv, settings)}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:  # Ctrl-C before a stage's loop could stop cleanly (while it reads its data, say)
        print(f"gogame-train {command}: interrupted before training began; every file is written "
              "atomically, so none is half-written", file=sys.stderr)
        return 130


TRAIN_EXTRA = ("tqdm",)  # the top-level packages of the [train] extra (pyproject.toml)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        command, settings = parse(argv)
    except ModuleNotFoundError as exc:  # the core install: the engine without the training tools
        if (exc.name or "").split(".")[0] not in TRAIN_EXTRA:
            raise
        print(f'gogame-train needs the [train] extra ({exc.name} is missing): pip install "gogame-engine[train]"',
              file=sys.stderr)
        return 1
    return execute(command, settings, argv)


def continue_command(argv: list[str], settings: Any) -> str:
    """The command line that continues a stopped run: the same one, with ``--resume`` where the command has it
    (a command without it, such as ``selfplay``, resumes when run again as it was)."""
    words = list(argv)
    if hasattr(settings, "resume") and "--resume" not in words:
        words.append("--resume")
    return " ".join(["gogame-train", *map(shlex.quote, words)])


if __name__ == "__main__":
    sys.exit(main())
