"""Supervised stages: the policy net on expert moves, the value net on expert outcomes.

``gogame-train sl DATA --preset medium --out runs/sl19`` trains a policy net
on a shard dataset (see :mod:`training.data.shards`); ``gogame-train value-sl DATA
--out runs/value19`` trains a value net on the same shards, one position per
game per epoch, on games with a recorded winner. Both go through the one
:class:`training.trainer.Trainer` and finish by writing compact fp16 weights
(``--export``) with their provenance.

A dataset built with the ``alphago49`` set serves both nets: the policy net
reads its first 48 planes (``alphago48`` is a prefix of ``alphago49``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gogame import features, nets
from training.data import shards
from training.options import REQUIRED, option
from training.stopping import CheckpointStopOptions
from training.trainer import TrainConfig, Trainer, stored_config


def input_planes(dataset_features: str, net_features: str) -> int:
    """How many leading planes of the dataset the net reads; ValueError if the sets do not nest."""
    have, want = features.FEATURE_SETS[dataset_features], features.FEATURE_SETS[net_features]
    nested = dataset_features == net_features or (dataset_features, net_features) == ("alphago49", "alphago48")
    if not nested or want > have:
        raise ValueError(f"a {net_features} net cannot train on a {dataset_features} dataset")
    return want


def batch_planes(batch: dict[str, Any], stored_planes: int, in_planes: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack a batch's planes on its device, keep the net's planes, apply the batch's symmetries."""
    planes = shards.unpack_planes(batch["planes"], stored_planes, size)[:, :in_planes]
    return shards.apply_symmetries(planes, batch["move"], batch["symmetry"])


def policy_loss(stored_planes: int, in_planes: int, size: int):
    """The SL policy loss: cross-entropy on the expert move; logs top-1 and top-5 accuracy."""

    def loss_fn(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        planes, moves = batch_planes(batch, stored_planes, in_planes, size)
        logits = model(planes)  # (B, S*S + 1)
        loss = F.cross_entropy(logits.float(), moves)
        top5 = logits.topk(5, dim=1).indices
        return loss, {
            "acc": (top5[:, 0] == moves).float().mean().item(),
            "top5": (top5 == moves[:, None]).any(dim=1).float().mean().item(),
        }

    return loss_fn


def value_loss(stored_planes: int, in_planes: int, size: int, ownership_weight: float = 0.0):
    """The value loss: mean squared error against the game's outcome for the player to move.

    With ``ownership_weight`` > 0 (a net with an ownership head, batches with ``ownership``) the loss adds that
    weight times the binary cross-entropy of the ownership logits against the final area, averaged over the
    points (a neutral point's target is 1/2), and logs it as ``ownership``; ``mse`` stays the outcome's alone.
    """

    def loss_fn(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        planes = shards.unpack_planes(batch["planes"], stored_planes, size)[:, :in_planes]
        if ownership_weight:  # the final area as one more plane, so the symmetry turns it with the position
            planes = torch.cat([planes, batch[shards.OWNERSHIP].view(-1, 1, size, size)], dim=1)
        planes, _ = shards.apply_symmetries(planes, batch["move"], batch["symmetry"])
        target = batch["outcome"]
        value, logits = model(planes[:, :in_planes], ownership=True) if ownership_weight else (model(planes), None)
        mse = F.mse_loss(value.float(), target)
        metrics = {"mse": mse.item(), "sign_acc": ((value > 0) == (target > 0)).float().mean().item()}
        if logits is None:
            return mse, metrics
        area = (planes[:, in_planes].flatten(1) + 1) / 2  # 1 the mover's, 0 the opponent's, 1/2 neither
        ownership = F.binary_cross_entropy_with_logits(logits.float(), area)
        metrics["ownership"] = ownership.item()
        return mse + ownership_weight * ownership, metrics

    return loss_fn


@dataclass(kw_only=True)
class SLConfig(CheckpointStopOptions):
    """Every setting of the supervised stages (``sl``, ``value-sl``), with its default."""

    data: str = option(REQUIRED, "a dataset folder built by gogame-train dataset", positional=True)
    out: str = option(REQUIRED, "run folder (metrics.csv, last.pt, best.pt)")
    preset: str = option("small", "net preset", choices=nets.PRESETS)
    layers: int | None = option(None, "override the preset's layers")
    filters: int | None = option(None, "override the preset's filters")
    steps: int = option(0, "optimizer steps (or --epochs, or --minutes)")
    minutes: float = option(0.0, "choose --steps to train for about this long, from the speed of a short probe run")
    epochs: int = option(0, "passes over the training shards")
    batch_size: int = option(128, "positions per step")
    optimizer: str = option("sgd", "the optimizer", choices=("sgd", "adam", "adamw"))
    lr: float = option(0.05, "peak learning rate")
    weight_decay: float = option(1e-4, "on conv kernels and weight matrices")
    schedule: str = option("cosine", "learning rate over the run", choices=("constant", "cosine", "step"))
    warmup_steps: int = option(200, "linear warmup steps")
    grad_clip: float = option(1.0, "max gradient norm (0: none)")
    val_every: int = option(1000, "validate after every this many steps")
    val_batches: int = option(0, "validate on at most this many batches (0: all)")
    ckpt_every: int = option(1000, "write last.pt after every this many steps")
    shards_in_memory: int = option(8, "shards read at once, whose positions are shuffled together")
    cache: bool = option(False, "keep all shards in memory after the first epoch")
    all_positions: bool = option(False, "value: train on every position of each game, not one random position per "
                                        "game and epoch (the correlated targets overfit: AlphaGo's expert-game "
                                        "baseline)")
    prefetch: int = option(4, "batches read ahead in a background thread, so the device never waits on the shards "
                              "(0 reads between steps)")
    seed: int = option(0, "seed of the net's initialisation, the data order and the symmetries")
    amp: bool = option(False, "bf16 autocast (CUDA, or a CPU with AVX-512 BF16/AMX; ignored elsewhere)")
    device: str | None = option(None, "cuda, mps or cpu (default: the best available)")
    resume: bool = option(False, "continue the run in --out: its length, schedule and shards are the ones it "
                                 "started with (a conflicting option is an error)")
    extend: int = option(0, "with --resume: lengthen the run to this many steps in all; the cosine schedule is "
                            "recomputed for the new length from the current step on")
    max_steps_this_run: int = option(0, "stop after this many steps (resume later); 0 no limit")
    init_from: str | None = option(None, "value-sl: start the value net's hidden layers from this policy net (its "
                                         "layers and filters replace the preset's)")
    frozen_layers: int = option(0, "keep the first N hidden convolutions fixed (with --init-from: train only the "
                                   "top)")
    ownership_weight: float = option(0.0, "value: give the net an ownership head and add this weight times its loss "
                                          "against the final area (self-play data only; KataGo's auxiliary target; "
                                          "0: off)")
    export: str | None = option(None, "write the final weights here (fp16), with provenance")
    progress: bool = option(True, "progress bars")


CONFIG = SLConfig


class _Limited:
    """At most ``n`` batches of a batch source (for a quick validation)."""

    def __init__(self, source: shards.PositionBatches, n: int) -> None:
        self.source, self.n = source, n

    def num_batches(self, world_size: int = 1) -> int:
        return min(self.n, self.source.num_batches(world_size))

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1):
        for i, batch in enumerate(self.source.batches(epoch, start, rank, world_size)):
            if i >= self.num_batches(world_size) - start:
                return
            yield batch


def train(config: SLConfig, kind: str) -> dict:
    """Train a policy (``kind="policy"``) or value net with ``config``; returns the summary."""
    meta = shards.dataset_meta(config.data)
    size = meta["size"]
    net_features = "alphago49" if kind == "value" else ("alphago48" if meta["features"] == "alphago49" else meta["features"])
    in_planes = input_planes(meta["features"], net_features)
    # A resumed run reads the shards it started with (its manifest), not whatever the folder holds now, and keeps
    # the length it was given (--minutes is not timed again).
    stored = stored_config(config.out) if config.resume else None
    manifest = (stored or {}).get("manifest") or {}
    train_paths, val_paths = (shards.manifest_paths(manifest[split]) if split in manifest
                              else shards.shard_paths(config.data, split) for split in ("train", "val"))
    if not train_paths:
        raise SystemExit(f"{config.data} has no train shards")
    # The value net sees one position per decided game per epoch (AlphaGo's
    # answer to the correlation of positions within a game) unless --all-positions.
    sampling = {"one_per_game": not config.all_positions, "decided_only": True, "cache": config.cache} \
        if kind == "value" else {"cache": config.cache}
    train_src = shards.PositionBatches(train_paths, config.batch_size, seed=config.seed,
                                       shards_in_memory=config.shards_in_memory, **sampling)
    val_src = shards.PositionBatches(val_paths, config.batch_size, seed=config.seed, shuffle=False, drop_last=False,
                                     shards_in_memory=config.shards_in_memory, **sampling) if val_paths else None
    if config.ownership_weight:
        if kind != "value" or config.ownership_weight < 0:
            raise SystemExit("--ownership-weight is a positive weight, for value nets")
        if not train_src.ownership or (val_src is not None and not val_src.ownership):
            raise SystemExit(f"{config.data}: not every shard has the final area ('ownership'): only self-play "
                             "shards written by gogame-train selfplay or value have it")
    if val_src is not None and config.val_batches:
        val_src = _Limited(val_src, config.val_batches)

    torch.manual_seed(config.seed)
    if config.init_from:
        if kind != "value":
            raise ValueError("--init-from starts a value net from a policy net; it is for value-sl")
        policy = nets.load(config.init_from, kind="policy")
        if policy.board_size != size:
            raise ValueError(f"--init-from: the policy net is for {policy.board_size}x{policy.board_size}, "
                             f"the data for {size}x{size}")
        net = nets.value_from_policy(policy, in_planes, ownership_head=config.ownership_weight > 0)
    else:
        net = nets.build(kind, in_planes, size, config.preset, layers=config.layers, filters=config.filters,
                         ownership_head=config.ownership_weight > 0)
    nets.freeze_hidden_layers(net, config.frozen_layers)
    provenance = {
        **run_provenance(),
        "data": meta["sources"],
        **({"trunk_from": str(config.init_from), "frozen_layers": config.frozen_layers} if config.init_from else {}),
        "dataset_positions": len(train_src),
    }
    train_config = TrainConfig(
        out_dir=config.out, steps=config.steps or (1 if config.minutes else 0), epochs=config.epochs, batch_size=config.batch_size,
        optimizer=config.optimizer, lr=config.lr, weight_decay=config.weight_decay, grad_clip=config.grad_clip,
        schedule=config.schedule, warmup_steps=config.warmup_steps, val_every=config.val_every,
        val_metric="mse" if kind == "value" else "loss", ckpt_every=config.ckpt_every, seed=config.seed, amp=config.amp,
        device=config.device, resume=config.resume, max_steps_this_run=config.max_steps_this_run,
        progress=config.progress, prefetch=config.prefetch, stop_after_minutes=config.stop_after,
        ckpt_every_minutes=config.ckpt_every_minutes, extend_steps=config.extend,
    )
    if kind == "value":
        loss = value_loss(meta["planes"], in_planes, size, config.ownership_weight)
    else:
        loss = policy_loss(meta["planes"], in_planes, size)
    if stored and config.minutes:
        train_config.steps = stored["steps"]
        print(f"--minutes: the resumed run's length was fixed at its start: {train_config.steps} steps",
              file=sys.stderr)
    elif config.minutes:
        train_config.steps = _steps_for(config.minutes, net, loss, train_src, train_config)
        print(f"--minutes {config.minutes:g}: {train_config.steps} steps", file=sys.stderr)
    trainer = Trainer(net, loss, train_src, val_src, config=train_config,
                      extra_meta=nets.describe(net, features=net_features, provenance=provenance))
    first_step = trainer.step
    start = time.perf_counter()
    summary = trainer.fit()
    elapsed = time.perf_counter() - start
    summary["positions_per_s"] = (summary["step"] - first_step) * config.batch_size / max(elapsed, 1e-9)
    if config.export:
        export(config.out, config.export, net_features, provenance, summary, config.batch_size)
    print(json.dumps(summary, default=str))
    return summary


def run_provenance() -> dict[str, str]:
    """The command line, the machine and the date, for a network's provenance."""
    return {
        "command": "gogame-train " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("gogame-train") else " ".join(sys.argv),
        "hardware": f"{platform.node()} {torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or 'cpu'}",
        "date": time.strftime("%Y-%m-%d"),
    }


def export(run_dir: str, path: str, net_features: str, provenance: dict[str, Any], summary: dict[str, Any],
           batch_size: int) -> None:
    """Write the run's best net (its last if it never validated) to ``path`` as fp16 weights, with
    ``provenance`` plus the last validation, the steps, the batch size and the positions per second."""
    best = Path(run_dir) / "best.pt"
    final = nets.load(best if best.exists() else Path(run_dir) / "last.pt")
    provenance["validation"] = summary["val"]
    provenance["steps"] = summary["step"]
    provenance["batch_size"] = batch_size
    provenance["positions_per_s"] = round(summary["positions_per_s"])
    nets.save(final, path, half=True, features=net_features, provenance=provenance)


def _steps_for(minutes: float, net: torch.nn.Module, loss, train_src, config: TrainConfig) -> int:
    """Steps that fit in ``minutes``: time 40 steps of a throwaway copy of the run, after 10 to warm up."""
    probe_net = copy.deepcopy(net)
    with tempfile.TemporaryDirectory() as tmp:
        probe = dataclasses.replace(config, out_dir=tmp, steps=50, max_steps_this_run=10, val_every=10**9,
                                    ckpt_every=10**9, ckpt_every_minutes=0, stop_after_minutes=0,
                                    progress=False, resume=False)
        Trainer(probe_net, loss, train_src, None, config=probe).fit()
        start = time.perf_counter()
        Trainer(probe_net, loss, train_src, None, config=dataclasses.replace(probe, max_steps_this_run=0, resume=True)).fit()
        per_step = (time.perf_counter() - start) / 40
    # Validation and checkpoints take time too: aim a little short.
    return max(1, int(0.9 * minutes * 60 / per_step))


def run(config: SLConfig) -> int:
    train(config, "policy")
    return 0


def run_value(config: SLConfig) -> int:
    train(config, "value")
    return 0
