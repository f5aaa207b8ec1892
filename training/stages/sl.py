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

import argparse
import copy
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gogame import features, nets
from training.data import shards
from training.stopping import add_stop_arguments
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="a dataset folder built by gogame-train dataset")
    parser.add_argument("--out", required=True, help="run folder (metrics.csv, last.pt, best.pt)")
    parser.add_argument("--preset", default="small", choices=list(nets.PRESETS))
    parser.add_argument("--layers", type=int, default=None, help="override the preset's layers")
    parser.add_argument("--filters", type=int, default=None, help="override the preset's filters")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps (or --epochs, or --minutes)")
    parser.add_argument("--minutes", type=float, default=0,
                        help="choose --steps to train for about this long, from the speed of a short probe run")
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--schedule", default="cosine", choices=["constant", "cosine", "step"])
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("--val-batches", type=int, default=0, help="validate on at most this many batches (0: all)")
    parser.add_argument("--ckpt-every", type=int, default=1000)
    parser.add_argument("--shards-in-memory", type=int, default=8)
    parser.add_argument("--cache", action="store_true", help="keep all shards in memory after the first epoch")
    parser.add_argument("--all-positions", action="store_true",
                        help="value: train on every position of each game, not one random position per game and "
                             "epoch (the correlated targets overfit: AlphaGo's expert-game baseline)")
    parser.add_argument("--prefetch", type=int, default=4,
                        help="batches read ahead in a background thread, so the device never waits on the shards "
                             "(default 4; 0 reads between steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA, or a CPU with AVX-512 BF16/AMX; ignored elsewhere)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out: its length, schedule and shards are the ones it started "
                             "with (a conflicting option is an error)")
    parser.add_argument("--extend", type=int, default=0, metavar="STEPS",
                        help="with --resume: lengthen the run to STEPS steps in all; the cosine schedule is "
                             "recomputed for the new length from the current step on")
    parser.add_argument("--max-steps-this-run", type=int, default=0, help="stop after this many steps (resume later)")
    add_stop_arguments(parser)
    parser.add_argument("--init-from", default=None,
                        help="value-sl: start the value net's hidden layers from this policy net (its layers and "
                             "filters replace the preset's)")
    parser.add_argument("--frozen-layers", type=int, default=0,
                        help="keep the first N hidden convolutions fixed (with --init-from: train only the top)")
    parser.add_argument("--ownership-weight", type=float, default=0.0,
                        help="value: give the net an ownership head and add this weight times its loss against "
                             "the final area (self-play data only; KataGo's auxiliary target; default 0: off)")
    parser.add_argument("--export", default=None, help="write the final weights here (fp16), with provenance")
    parser.add_argument("--no-progress", action="store_true")


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


def train(args: argparse.Namespace, kind: str) -> dict:
    """Train a policy (``kind="policy"``) or value net from the parsed command line; returns the summary."""
    meta = shards.dataset_meta(args.data)
    size = meta["size"]
    net_features = "alphago49" if kind == "value" else ("alphago48" if meta["features"] == "alphago49" else meta["features"])
    in_planes = input_planes(meta["features"], net_features)
    # A resumed run reads the shards it started with (its manifest), not whatever the folder holds now, and keeps
    # the length it was given (--minutes is not timed again).
    stored = stored_config(args.out) if args.resume else None
    manifest = (stored or {}).get("manifest") or {}
    train_paths, val_paths = (shards.manifest_paths(manifest[split]) if split in manifest
                              else shards.shard_paths(args.data, split) for split in ("train", "val"))
    if not train_paths:
        raise SystemExit(f"{args.data} has no train shards")
    # The value net sees one position per decided game per epoch (AlphaGo's
    # answer to the correlation of positions within a game) unless --all-positions.
    sampling = {"one_per_game": not args.all_positions, "decided_only": True, "cache": args.cache} \
        if kind == "value" else {"cache": args.cache}
    train_src = shards.PositionBatches(train_paths, args.batch_size, seed=args.seed,
                                       shards_in_memory=args.shards_in_memory, **sampling)
    val_src = shards.PositionBatches(val_paths, args.batch_size, seed=args.seed, shuffle=False, drop_last=False,
                                     shards_in_memory=args.shards_in_memory, **sampling) if val_paths else None
    if args.ownership_weight:
        if kind != "value" or args.ownership_weight < 0:
            raise SystemExit("--ownership-weight is a positive weight, for value nets")
        if not train_src.ownership or (val_src is not None and not val_src.ownership):
            raise SystemExit(f"{args.data}: not every shard has the final area ('ownership'): only self-play "
                             "shards written by gogame-train selfplay or value have it")
    if val_src is not None and args.val_batches:
        val_src = _Limited(val_src, args.val_batches)

    torch.manual_seed(args.seed)
    if args.init_from:
        if kind != "value":
            raise ValueError("--init-from starts a value net from a policy net; it is for value-sl")
        policy = nets.load(args.init_from, kind="policy")
        if policy.board_size != size:
            raise ValueError(f"--init-from: the policy net is for {policy.board_size}x{policy.board_size}, "
                             f"the data for {size}x{size}")
        net = nets.value_from_policy(policy, in_planes, ownership_head=args.ownership_weight > 0)
    else:
        net = nets.build(kind, in_planes, size, args.preset, layers=args.layers, filters=args.filters,
                         ownership_head=args.ownership_weight > 0)
    nets.freeze_hidden_layers(net, args.frozen_layers)
    provenance = {
        **run_provenance(),
        "data": meta["sources"],
        **({"trunk_from": str(args.init_from), "frozen_layers": args.frozen_layers} if args.init_from else {}),
        "dataset_positions": len(train_src),
    }
    config = TrainConfig(
        out_dir=args.out, steps=args.steps or (1 if args.minutes else 0), epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        schedule=args.schedule, warmup_steps=args.warmup_steps, val_every=args.val_every,
        val_metric="mse" if kind == "value" else "loss", ckpt_every=args.ckpt_every, seed=args.seed, amp=args.amp,
        device=args.device, resume=args.resume, max_steps_this_run=args.max_steps_this_run,
        progress=not args.no_progress, prefetch=args.prefetch, stop_after_minutes=args.stop_after,
        ckpt_every_minutes=args.ckpt_every_minutes, extend_steps=args.extend,
    )
    if kind == "value":
        loss = value_loss(meta["planes"], in_planes, size, args.ownership_weight)
    else:
        loss = policy_loss(meta["planes"], in_planes, size)
    if stored and args.minutes:
        config.steps = stored["steps"]
        print(f"--minutes: the resumed run's length was fixed at its start: {config.steps} steps", file=sys.stderr)
    elif args.minutes:
        config.steps = _steps_for(args.minutes, net, loss, train_src, config)
        print(f"--minutes {args.minutes:g}: {config.steps} steps", file=sys.stderr)
    trainer = Trainer(net, loss, train_src, val_src, config=config,
                      extra_meta=nets.describe(net, features=net_features, provenance=provenance))
    first_step = trainer.step
    start = time.perf_counter()
    summary = trainer.fit()
    elapsed = time.perf_counter() - start
    summary["positions_per_s"] = (summary["step"] - first_step) * args.batch_size / max(elapsed, 1e-9)
    if args.export:
        export(args.out, args.export, net_features, provenance, summary, args.batch_size)
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


def run(args: argparse.Namespace) -> int:
    train(args, "policy")
    return 0


def run_value(args: argparse.Namespace) -> int:
    train(args, "value")
    return 0
