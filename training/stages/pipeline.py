"""``gogame-train pipeline --config FILE``: the training stages in order, from one TOML file.

The file names a run folder and lists the stages, each a ``gogame-train`` command with its arguments and
the file it creates::

    root = "runs/pipeline9"            # "{root}" in args and creates is replaced by this

    [[stage]]
    name = "rl"                        # for messages
    command = "rl"                     # a gogame-train command (see training/cli.py)
    args = ["--size", "9", "--out", "{root}/rl", "--iterations", "300", "--export", "{root}/policy9-rl.pt"]
    creates = "{root}/policy9-rl.pt"   # the stage is skipped when this exists
    processes = 2                      # optional: data-parallel under torchrun, one rank per process

Stages run in file order, in this process (a stage with ``processes`` > 1 as that many ``torchrun`` ranks,
for the commands that train data-parallel: ``DATA_PARALLEL``). A stage whose ``creates`` exists is skipped,
so a rerun after a failure or a kill starts at the first unfinished stage (and the stages resume inside
themselves where they can: pass ``--resume`` to training stages). A stage that fails, or returns without
creating its file, stops the pipeline with exit status 1; a stage stopped by a signal or its ``--stop-after``
(its state saved) stops it with :data:`training.stopping.EXIT_STOPPED`, and the same command goes on. ``training/pipeline9.toml`` takes a fresh install
to a 9x9 engine.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from training import cli
from training.options import REQUIRED, option
from training.stopping import EXIT_STOPPED

DATA_PARALLEL = ("sl", "value-sl", "rl")  # the commands whose training runs as several torchrun ranks


@dataclass(frozen=True)
class Stage:
    name: str
    command: str
    args: tuple[str, ...]
    creates: Path
    processes: int = 1


def load_config(path: str | Path, root: str | None = None) -> list[Stage]:
    """The stages of a pipeline file, ``{root}`` filled in (``root`` overrides the file's). ValueError for a
    malformed file."""
    try:
        config = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    root = root or str(config.get("root", "."))
    stages = []
    for i, table in enumerate(config.get("stage", [])):
        missing = [key for key in ("command", "creates") if key not in table]
        if missing:
            raise ValueError(f"{path}: stage {i + 1} lacks {', '.join(missing)}")
        if table["command"] not in cli.COMMANDS or table["command"] == "pipeline":
            raise ValueError(f"{path}: stage {i + 1} names an unknown command {table['command']!r}")
        args = table.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
            raise ValueError(f"{path}: stage {i + 1}: args must be a list of strings")
        processes = table.get("processes", 1)
        if type(processes) is not int or processes < 1:
            raise ValueError(f"{path}: stage {i + 1}: processes must be a positive integer")
        if processes > 1 and table["command"] not in DATA_PARALLEL:
            raise ValueError(f"{path}: stage {i + 1}: {table['command']} does not run data-parallel "
                             f"(processes > 1 is for {', '.join(DATA_PARALLEL)})")
        stages.append(Stage(str(table.get("name", table["command"])), table["command"],
                            tuple(str(a).replace("{root}", root) for a in args),
                            Path(str(table["creates"]).replace("{root}", root)), processes))
    if not stages:
        raise ValueError(f"{path} has no [[stage]] tables")
    return stages


def run_stages(stages: list[Stage], dry_run: bool = False, only: set[str] | None = None) -> int:
    """Run the stages whose outputs are missing, in order (``only``: just the stages of those names); 0 when
    they all succeed, EXIT_STOPPED when one was stopped to go on later, else 1."""
    unknown = (only or set()) - {stage.name for stage in stages}
    if unknown:
        raise ValueError(f"no stage named {', '.join(sorted(unknown))}")
    for stage in stages:
        if only is not None and stage.name not in only:
            continue
        if stage.creates.exists():
            print(f"pipeline: {stage.name}: skipped, {stage.creates} exists", file=sys.stderr)
            continue
        ranks = f" ({stage.processes} torchrun ranks)" if stage.processes > 1 else ""
        print(f"pipeline: {stage.name}: gogame-train {stage.command} {' '.join(stage.args)}{ranks}", file=sys.stderr)
        if dry_run:
            continue
        start = time.perf_counter()
        status = run_stage(stage)
        minutes = (time.perf_counter() - start) / 60
        if status == EXIT_STOPPED:
            print(f"pipeline: {stage.name} stopped after {minutes:.1f} min, its state saved: run the same "
                  "pipeline command to go on", file=sys.stderr)
            return EXIT_STOPPED
        if status != 0 or not stage.creates.exists():
            print(f"pipeline: {stage.name} failed after {minutes:.1f} min (status {status}, "
                  f"{stage.creates} {'exists' if stage.creates.exists() else 'missing'})", file=sys.stderr)
            return 1
        print(f"pipeline: {stage.name}: done in {minutes:.1f} min", file=sys.stderr)
    return 0


def run_stage(stage: Stage) -> int:
    """Run one stage: in this process, with its settings parsed into the command's config dataclass (see
    :func:`training.cli.parse`), or as ``stage.processes`` torchrun ranks; its exit status."""
    argv = [stage.command, *stage.args]
    if stage.processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(stage.processes), "-m", "training.cli", *argv]
        return subprocess.run(command).returncode
    try:
        command, settings = cli.parse(argv)
        return cli.execute(command, settings, argv)
    except SystemExit as exc:  # argparse and the stages exit this way on bad input
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else 1


@dataclass(kw_only=True)
class PipelineConfig:
    """The settings of ``gogame-train pipeline``."""

    config: str = option(REQUIRED, "the pipeline's TOML file")
    root: str | None = option(None, "run folder, instead of the file's root")
    only: str | None = option(None, "comma-separated stage names: run just these")
    dry_run: bool = option(False, "print the stages that would run")


CONFIG = PipelineConfig


def run(config: PipelineConfig) -> int:
    try:
        stages = load_config(config.config, config.root)
        return run_stages(stages, config.dry_run, set(config.only.split(",")) if config.only else None)
    except ValueError as exc:
        print(f"gogame-train pipeline: {exc}", file=sys.stderr)
        return 2
