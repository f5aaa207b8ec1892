"""``gogame-train campaign``: one training run spread over many machines' turns, its state in the repository.

A run that takes tens of CPU hours outlives any one machine here (a session lasts three hours; the next may
be on another machine, from a fresh clone). A *campaign* is such a run, kept in a small folder that is meant
to be committed::

    campaigns/NAME/
        campaign.toml   the config: the stage and its typed config (the run's whole length included)
        state.pt        the latest state, compact: fp16 weights, bf16 optimizer moments, position, RNGs
        manifest.json   the data's inputs (archives with sizes and SHA-256) and the settings that order them
        metrics.csv     every train and val row since the start
        segments.json   one entry per machine's turn: start, stop, steps, positions, positions/s, machine
        progress.png    the curves over all segments, their boundaries marked

Commands::

    gogame-train campaign start CONFIG.toml [--stop-after MINUTES]   # make campaigns/NAME/, train a segment
    gogame-train campaign continue campaigns/NAME [--stop-after MINUTES]
    gogame-train campaign status campaigns/NAME [--json]
    gogame-train campaign export campaigns/NAME --out NET.pt [--lambda L --c-puct C --fpu-reduction R]   # to play

The live run folder (``runs/campaigns/NAME/``, ignored by git) holds the trainer's full fp32 ``last.pt``; a
segment resumes from it when it is there and as far along as the state (the same machine: exact), else from
``state.pt`` (a fresh clone: the weights as fp16 and the moments as bf16 round to their nearest values; the
rest continues exactly). ``state.pt``, the metrics and the segment log are rewritten at every checkpoint of the trainer
(every few minutes; the plot at the end of a segment), so a machine taken away loses only what its last
checkpoint had not seen; commit the folder before the machine goes. Inputs are not stored: a stage's data is rebuilt from the shared archives the
manifest names, and the trainer refuses a resume whose inputs differ.

A stage for campaigns is a module with a typed config (a dataclass) and ``build_job(config) ->
TrainingJob`` (see :class:`training.trainer.TrainingJob`); :data:`STAGES` names them, and ``module:Class``
works too. The campaign decides where and how long each segment runs (the TrainConfig's run folder, resume,
time limit, progress bar); everything else is the stage's config. ``campaign.toml``::

    name = "dual19"
    stage = "dual"
    description = "..."          # optional, free text
    state_precision = "reduced"  # optional: "reduced" (fp16 weights, bf16 moments: the default) or "fp32"
    [config]                     # the stage's config fields
    sources = ["../shared/data/pro19.tar.xz"]
    steps = 200000
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import json
import os
import platform
import shlex
import shutil
import sys
import time
import tomllib
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from gogame import nets
from gogame.atomic import write_atomically
from gogame.checkpoint import load_checkpoint, save_checkpoint
from training.metrics import METRICS_FILE, plot_run, read_metrics
from training.stopping import EXIT_STOPPED, RunStopped, add_stop_arguments
from training.trainer import LAST, MANIFEST, Trainer

STAGES: dict[str, str] = {"dual": "training.stages.dual:DualConfig"}  # name -> module:config class (with build_job)
CONFIG_FILE = "campaign.toml"
STATE_FILE = "state.pt"
SEGMENTS_FILE = "segments.json"
PLOT_FILE = "progress.png"
STATE_KIND = "campaign-state"


class CampaignError(ValueError):
    """A campaign folder that cannot be continued as asked; the message names the problem."""


# -- the config -----------------------------------------------------------------------------------------------


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """``campaign.toml`` as a dict with ``name``, ``stage`` and ``config``; CampaignError if malformed."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CampaignError(f"{path}: {exc}") from None
    for key, kind in (("name", str), ("stage", str), ("config", dict)):
        if not isinstance(raw.get(key), kind):
            raise CampaignError(f"{path}: needs {key!r} ({kind.__name__})")
    unknown = set(raw) - {"name", "stage", "config", "state_precision", "description"}
    if unknown:
        raise CampaignError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    if not raw["name"].replace("-", "").replace("_", "").isalnum():
        raise CampaignError(f"{path}: the name {raw['name']!r} must be letters, digits, '-' and '_'")
    if raw.get("state_precision", "reduced") not in ("reduced", "fp32"):
        raise CampaignError(f"{path}: state_precision is 'reduced' (fp16 weights, bf16 moments) or 'fp32'")
    return raw


def config_digest(config: dict[str, Any]) -> str:
    """A SHA-256 of the settings that make the run (not the description): two campaigns agree iff this does."""
    run = {k: config[k] for k in ("name", "stage", "config")}
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()


def stage_of(name: str) -> tuple[type, Any]:
    """(config class, build_job) of a stage name (:data:`STAGES`) or ``module:Class``; CampaignError if none."""
    target = STAGES.get(name, name)
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise CampaignError(f"unknown stage {name!r} (stages: {', '.join(STAGES)}, or module:Class)") from None
    config_class, build_job = getattr(module, class_name, None), getattr(module, "build_job", None)
    if config_class is None or build_job is None:
        raise CampaignError(f"stage {name!r}: {module_name} has no {class_name or 'config class'} and build_job")
    return config_class, build_job


def build_stage_config(cls: type, table: dict[str, Any]) -> Any:
    """``cls(**table)`` with unknown keys named (CampaignError) instead of a bare TypeError."""
    known = {f.name for f in fields(cls)}
    unknown = set(table) - known
    if unknown:
        raise CampaignError(f"{cls.__name__} has no setting {', '.join(sorted(unknown))}")
    try:
        return cls(**table)
    except (TypeError, ValueError) as exc:
        raise CampaignError(f"{cls.__name__}: {exc}") from None


# -- the compact state ----------------------------------------------------------------------------------------


def compact(checkpoint: dict[str, Any], precision: str) -> dict[str, Any]:
    """A trainer checkpoint with its floating weights as fp16 and optimizer moments as bf16 (``"reduced"``), or
    as they are (``"fp32"``). bf16 keeps fp32's exponent range, so Adam's tiny second moments do not flush to 0."""
    if precision == "fp32":
        return {**checkpoint, "precision": "fp32"}

    def state(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() > 0:
            return value.to(torch.bfloat16)
        return value

    optimizer = checkpoint["optimizer"]
    return {**checkpoint, "precision": "reduced",
            "model": {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["model"].items()},
            "optimizer": {**optimizer, "state": {i: {k: state(v) for k, v in s.items()}
                                                 for i, s in optimizer["state"].items()}}}


def expand(state: dict[str, Any]) -> dict[str, Any]:
    """The trainer checkpoint a compact state stands for: every reduced tensor back to fp32."""

    def full(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
            return value.float()
        return value

    optimizer = state["optimizer"]
    out = {k: v for k, v in state.items() if k not in ("precision", "campaign")}
    out["kind"] = "trainer"
    out["model"] = {k: full(v) for k, v in state["model"].items()}
    out["optimizer"] = {**optimizer, "state": {i: {k: full(v) for k, v in s.items()}
                                               for i, s in optimizer["state"].items()}}
    return out


# -- a campaign folder ----------------------------------------------------------------------------------------


class Campaign:
    """A campaign folder: its config, state, metrics and segment log; see the module docstring."""

    def __init__(self, folder: str | os.PathLike, workdir: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder)
        if not (self.folder / CONFIG_FILE).is_file():
            raise CampaignError(f"{self.folder} is not a campaign folder (no {CONFIG_FILE})")
        self.config = read_config(self.folder / CONFIG_FILE)
        self.digest = config_digest(self.config)
        self.workdir = Path(workdir) if workdir else Path("runs") / "campaigns" / self.config["name"]
        self.precision = self.config.get("state_precision", "reduced")

    @classmethod
    def create(cls, config_path: str | os.PathLike, folder: str | os.PathLike | None = None,
               workdir: str | os.PathLike | None = None) -> Campaign:
        """Make the campaign folder of ``config_path`` (default ``campaigns/NAME``) holding a copy of the config.

        CampaignError if the folder already holds a campaign (``continue`` goes on with it).
        """
        config = read_config(config_path)
        folder = Path(folder) if folder else Path("campaigns") / config["name"]
        if (folder / CONFIG_FILE).exists():
            raise CampaignError(f"{folder} already holds a campaign: gogame-train campaign continue {folder}")
        build_stage_config(stage_of(config["stage"])[0], config["config"])  # fail before writing anything
        text = Path(config_path).read_bytes()
        write_atomically(folder / CONFIG_FILE, lambda f: f.write(text))
        return cls(folder, workdir)

    # -- reading

    def state(self) -> dict[str, Any] | None:
        """The committed state, checked to belong to this config; None before the first checkpoint."""
        path = self.folder / STATE_FILE
        if not path.exists():
            return None
        state = load_checkpoint(path, expect_kind=STATE_KIND)
        stored = state.get("campaign", {})
        if stored.get("digest") != self.digest:
            raise CampaignError(f"{path} belongs to another config than {self.folder / CONFIG_FILE}: "
                                f"{_config_difference(stored.get('config', {}), self.config)} (a campaign's "
                                "settings are fixed; start a new campaign for new settings)")
        return state

    def segments(self) -> list[dict[str, Any]]:
        path = self.folder / SEGMENTS_FILE
        return json.loads(path.read_text()) if path.exists() else []

    # -- one segment

    def run_segment(self, *, stop_after_minutes: float = 0.0, max_steps: int = 0, progress: bool = True,
                    threads: int | None = None) -> dict[str, Any]:
        """Train one segment: from the live run folder or the committed state, until the run's end, a signal,
        ``stop_after_minutes`` or ``max_steps`` more steps. Returns the segment's log entry; RunStopped
        propagates (after the state is saved) when a signal or the time limit ended it."""
        state = self.state()  # checked before anything is written
        config_class, build_job = stage_of(self.config["stage"])
        stage_config = build_stage_config(config_class, self.config["config"])
        if threads:
            torch.set_num_threads(threads)
        job = build_job(stage_config)
        train = replace(job.config, out_dir=str(self.workdir), resume=True, max_steps_this_run=max_steps,
                        stop_after_minutes=stop_after_minutes, progress=progress)
        self._restore_workdir(state)
        meta = {**job.extra_meta, "campaign": {"name": self.config["name"], "digest": self.digest}}
        trainer = Trainer(job.model, job.loss_fn, job.train, job.val, config=train, extra_meta=meta,
                          on_checkpoint=self._keep)
        segment = {"index": len(self.segments()) + 1, "start": _now(), "stop": None, "start_step": trainer.step,
                   "end_step": trainer.step, "total_steps": trainer.total_steps, "how": "running",
                   "machine": machine(), "positions": 0, "positions_per_s": None, "val": None}
        self._segment, self._segment_clock = segment, time.perf_counter()
        self._batch = train.batch_size * trainer.world_size
        self._write_segment(segment)
        how = "finished"
        try:
            trainer.fit()
            if trainer.step < trainer.total_steps:
                how = f"{max_steps} steps"
        except RunStopped as stop:
            how = stop.reason
            raise
        except BaseException:
            how = "failed"
            raise
        finally:
            segment.update(how=how, stop=_now())
            self._write_segment(segment)
            self.plot()
        return segment

    def _restore_workdir(self, state: dict[str, Any] | None) -> None:
        """Make the live folder resumable from the committed state when it is not as far along (a fresh clone)."""
        last = self.workdir / LAST
        if last.exists():
            live = load_checkpoint(last, expect_kind="trainer")
            if live.get("meta", {}).get("campaign", {}).get("digest") != self.digest:
                raise CampaignError(f"{last} is a run of another config: move it away, or pass --workdir")
            if state is None or live["step"] >= state["step"]:
                return  # this machine's own full-precision state: continue exactly
        if state is None:
            return
        print(f"restoring step {state['step']} of campaign {self.config['name']} from {self.folder / STATE_FILE} "
              f"into {self.workdir}", file=sys.stderr)
        save_checkpoint(last, expand(state))
        for name in (METRICS_FILE, MANIFEST):
            if (self.folder / name).exists():
                shutil.copyfile(self.folder / name, self.workdir / name)

    def _keep(self, last: Path) -> None:
        """After each checkpoint of the trainer: the compact state, the manifest, the metrics, the segment log."""
        checkpoint = load_checkpoint(last, expect_kind="trainer")
        state = {**compact(checkpoint, self.precision), "kind": STATE_KIND,
                 "campaign": {"digest": self.digest, "config": {k: self.config[k] for k in ("name", "stage",
                                                                                           "config")}}}
        save_checkpoint(self.folder / STATE_FILE, state)
        for name in (METRICS_FILE, MANIFEST):
            if (self.workdir / name).exists():
                content = (self.workdir / name).read_bytes()
                write_atomically(self.folder / name, lambda f: f.write(content))
        segment = self._segment
        elapsed = max(time.perf_counter() - self._segment_clock, 1e-9)
        segment["end_step"] = checkpoint["step"]
        segment["positions"] = (checkpoint["step"] - segment["start_step"]) * self._batch
        segment["positions_per_s"] = round(segment["positions"] / elapsed, 2)
        segment["stop"] = _now()
        val = [r for r in read_metrics(self.workdir) if r["split"] == "val"]
        segment["val"] = _held_out(val)
        self._write_segment(segment)

    def _write_segment(self, segment: dict[str, Any]) -> None:
        log = [s for s in self.segments() if s["index"] != segment["index"]] + [segment]
        text = (json.dumps(sorted(log, key=lambda s: s["index"]), indent=1) + "\n").encode()
        write_atomically(self.folder / SEGMENTS_FILE, lambda f: f.write(text))

    # -- reporting

    def status(self) -> dict[str, Any]:
        """Where the campaign stands: steps, positions, segments, the latest held-out figures, the ETA."""
        state = self.state()
        segments = self.segments()
        step = state["step"] if state else 0
        total = state["total_steps"] if state else None
        rates = [s["positions_per_s"] for s in segments if s.get("positions_per_s")]
        batch = state["config"]["batch_size"] if state else None
        val = [r for r in read_metrics(self.folder) if r["split"] == "val"]
        eta_h = None
        if rates and total and batch:
            eta_h = (total - step) * batch / rates[-1] / 3600
        size = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
        return {"name": self.config["name"], "stage": self.config["stage"], "step": step, "total_steps": total,
                "positions_seen": sum(s.get("positions", 0) for s in segments), "segments": len(segments),
                "last_segment": segments[-1] if segments else None,
                "val": _held_out(val),
                "eta_hours_at_last_rate": eta_h, "folder_mb": round(size / 2**20, 2)}

    def export(self, out: str | os.PathLike, search: dict[str, float] | None = None) -> nets.PolicyNet | nets.DualNet:
        """Write the net of the committed state to ``out`` as a net file (fp16, :func:`gogame.nets.save`) whose
        provenance is the stage's (command, data manifest, ...) plus the campaign's: its config, steps, positions
        seen, the segments (when, where, how fast) with their machine hours, and the latest held-out figures.
        ``search``: the search settings measured best with it (:func:`gogame.nets.save`). Returns the
        net; CampaignError before the first checkpoint."""
        state = self.state()
        if state is None:
            raise CampaignError(f"{self.folder} has no state yet: nothing to export")
        net = nets.from_payload(state, self.folder / STATE_FILE)
        status = self.status()
        hours = sum((_parse_time(s["stop"]) - _parse_time(s["start"])) / 3600 for s in self.segments() if s["stop"])
        provenance = {
            **net.meta.get("provenance", {}),
            "campaign": {"name": self.config["name"], "digest": self.digest, "stage": self.config["stage"],
                         "config": self.config["config"], "step": status["step"],
                         "total_steps": status["total_steps"], "positions_seen": status["positions_seen"],
                         "machine_hours": round(hours, 2), "held_out": status["val"],
                         "segments": [{k: s[k] for k in ("start", "stop", "start_step", "end_step", "positions",
                                                         "positions_per_s")} | {"cpu": s["machine"]["cpu"],
                                                                                "threads": s["machine"]["torch_threads"]}
                                      for s in self.segments()]},
        }
        nets.save(net, out, half=True, provenance=provenance, search=search)
        return net

    def plot(self, out: str | os.PathLike | None = None) -> Path | None:
        """Draw ``progress.png`` (or ``out``): every metric over the whole campaign, segment starts marked, the
        training rate in its own panel; None before the first metrics row."""
        if not read_metrics(self.folder):
            return None
        status = self.status()
        eta = status["eta_hours_at_last_rate"]
        title = (f"campaign {self.config['name']}: step {status['step']} of {status['total_steps']}, "
                 f"{status['segments']} segment(s)" + (f", ETA {eta:.1f} h at the last rate" if eta else ""))
        return plot_run(self.folder, out or self.folder / PLOT_FILE,
                        boundaries=[s["start_step"] for s in self.segments()], title=title, rates=True)


def _held_out(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """The metrics of the last val row (its step and clock left out), or None."""
    return {k: v for k, v in rows[-1].items() if k not in ("step", "split", "elapsed_s")} if rows else None


def _config_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    for section in ("name", "stage", "config"):
        a, b = old.get(section), new.get(section)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for key in dict.fromkeys([*a, *b]):
                if a.get(key) != b.get(key):
                    return f"[{section}] {key} was {a.get(key)!r}, is {b.get(key)!r}"
        return f"{section} was {a!r}, is {b!r}"
    return "the settings differ"


def machine() -> dict[str, Any]:
    """What this segment ran on: host, processor, cores, torch threads, torch version."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _parse_time(stamp: str) -> float:
    """Seconds since the epoch of a :func:`_now` stamp (its UTC offset honoured)."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()


# -- the command ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("start", "continue", "status", "export"),
                        help="start CONFIG.toml (make campaigns/NAME, then train a segment), continue FOLDER, "
                             "status FOLDER, export FOLDER --out NET.pt")
    parser.add_argument("target", help="the config file (start) or the campaign folder (continue, status)")
    parser.add_argument("--folder", default=None, help="start: the campaign folder (default campaigns/NAME)")
    parser.add_argument("--workdir", default=None,
                        help="the live run folder, full-precision checkpoints (default runs/campaigns/NAME)")
    parser.add_argument("--steps", type=int, default=0, help="train at most this many steps in this segment")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="status: as JSON")
    parser.add_argument("--out", default=None, help="export: the net file to write")
    parser.add_argument("--lambda", dest="lambda_", type=float, default=None,
                        help="export: the search's value/rollout mix measured best with the net (its default)")
    parser.add_argument("--c-puct", type=float, default=None,
                        help="export: the search's exploration constant measured best with the net")
    parser.add_argument("--fpu-reduction", type=float, default=None,
                        help="export: the search's first-play urgency reduction measured best with the net")
    parser.add_argument("--rollouts-from", type=float, default=None,
                        help="export: the share of the points played from which rollouts mixed in best")
    parser.add_argument("--no-progress", action="store_true")
    add_stop_arguments(parser, checkpoints=False)


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "start":
            campaign = Campaign.create(args.target, args.folder, args.workdir)
        else:
            campaign = Campaign(args.target, args.workdir)
        if args.action == "status":
            status = campaign.status()
            print(json.dumps(status, indent=1) if args.json else format_status(status))
            return 0
        if args.action == "export":
            if not args.out:
                raise CampaignError("export needs --out NET.pt")
            search = {name: getattr(args, name) for name in nets.SEARCH_OPTIONS if getattr(args, name) is not None}
            try:
                campaign.export(args.out, search or None)
            except ValueError as exc:  # a search setting out of range
                raise CampaignError(str(exc)) from None
            print(f"wrote {args.out}: the net of {campaign.folder} at step {campaign.status()['step']}",
                  file=sys.stderr)
            return 0
        segment = campaign.run_segment(stop_after_minutes=args.stop_after, max_steps=args.steps,
                                       progress=not args.no_progress, threads=args.threads)
    except CampaignError as exc:
        print(f"gogame-train campaign: {exc}", file=sys.stderr)
        return 2
    except RunStopped as stop:
        workdir = f" --workdir {shlex.quote(args.workdir)}" if args.workdir else ""
        print(f"gogame-train campaign: {stop}; commit {campaign.folder} to keep it; to continue: "
              f"gogame-train campaign continue {shlex.quote(str(campaign.folder))}{workdir}", file=sys.stderr)
        return EXIT_STOPPED
    print(json.dumps(segment))
    print(f"segment {segment['index']} ended at step {segment['end_step']} of {segment['total_steps']}; commit "
          f"{campaign.folder} to keep it", file=sys.stderr)
    return 0


def format_status(status: dict[str, Any]) -> str:
    out = io.StringIO()
    eta = status["eta_hours_at_last_rate"]
    print(f"campaign {status['name']} ({status['stage']}): step {status['step']} of {status['total_steps']}, "
          f"{status['positions_seen']:,} positions in {status['segments']} segment(s), "
          f"state folder {status['folder_mb']} MB", file=out)
    last = status["last_segment"]
    if last:
        print(f"last segment: {last['start']} -> {last['stop']}, steps {last['start_step']}-{last['end_step']}, "
              f"{last['positions_per_s']} positions/s on {last['machine']['cpu']} ({last['how']})", file=out)
    if status["val"]:
        print("held out: " + ", ".join(f"{k} {v:.4g}" for k, v in status["val"].items()), file=out)
    if eta is not None:
        print(f"ETA: {eta:.1f} hours of this machine's time at the last segment's rate", file=out)
    return out.getvalue().rstrip()
