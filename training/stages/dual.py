"""The dual network's stage: one trunk learns expert moves, outcomes and final ownership together.

``gogame-train dual SOURCES... --out RUN`` trains a :class:`gogame.nets.DualNet` on expert games streamed from
their SGF archives (:class:`training.data.stream.ExpertStream`: no dataset step) through the one
:class:`training.trainer.Trainer`, and with ``--export`` writes fp16 weights with their provenance. Every option
is a field of :class:`DualConfig`; :func:`build_job` turns a config into what the trainer takes, so a campaign
can run the stage from a config read elsewhere (a TOML file) with no command line at all.

The loss (:func:`dual_loss`) of a batch is

    cross-entropy(policy, expert move) + value_weight * MSE(value, outcome) + ownership_weight * BCE(ownership)

where the MSE counts only the positions whose outcome is not 0 (a result that says nothing about the board:
:class:`training.data.stream.OutcomeRule`); with ``search_value_weight`` w, a position whose record holds the
value of a search made there (self-play games) has the target ``(1 - w) * outcome + w * search value`` instead
(KataGo's and AlphaGo Zero's lesson: one game's result is a noisy label for each of its positions). With
``search_policy_weight`` w, the policy term of a position whose record holds the visits of a search made there has
the target ``(1 - w) * move + w * the visits' shares`` instead (AlphaGo Zero's policy target: the search's
improved policy, not one move drawn from it). And the ownership term is the binary cross-entropy of the per-point logits
against the estimated final area for the mover, ``(ownership + 1) / 2``, averaged over the points. Logged: the
three terms (``policy``, ``mse``, ``ownership``), top-1 and top-5 move accuracy (``acc``, ``top5``), and
``own_acc``, the share of points whose owner sign the net gets right among those the estimate is sure of
(|target| >= 1/2). ``mse`` is a batch's mean over its positions with an outcome; the trainer's validation then
weights each batch's by all its positions, a small difference when batches are large and shuffled.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from gogame import features, nets
from gogame.checkpoint import CheckpointError, load_checkpoint, strip_wrapper_prefixes
from training import options
from training.data import shards
from training.data.stream import ExpertStream, OutcomeRule
from training.options import option
from training.stages import sl
from training.trainer import LossFn, TrainConfig, Trainer, TrainingJob

FEATURES = "alphago49"


@dataclass
class DualConfig:
    """Every setting of the dual stage, with its default."""

    # data
    sources: tuple[str, ...] = option((), "SGF archives (.tar.xz, .tar.gz, .zip) or .sgf files of expert games")
    size: int = option(19, "board size of the games read")
    min_moves: int = option(20, "skip games with fewer moves")
    handicap: bool = option(True, "keep handicap games (their moves teach the policy; see --outcome-handicap)")
    min_rank: str | None = option(None, 'skip games with a player below this rank, e.g. "6d" or "1p"')
    since: int | None = option(None, "first year kept (DT)")
    until: int | None = option(None, "last year kept (DT)")
    outcome_results: tuple[str, ...] = option((shards.RESIGN, shards.SCORE, shards.WIN),
                                              "result kinds whose winner is a value target (others: outcome 0)")
    outcome_min_komi: float | None = option(5.5, "no value target from games with a smaller komi")
    outcome_max_komi: float | None = option(7.5, "no value target from games with a larger komi")
    outcome_handicap: bool = option(False, "value targets from handicap games too")
    ownership_playouts: int = option(32, "rollouts of each game's last position that estimate its final owners")
    games_per_chunk: int = option(64, "games whose positions are shuffled together")
    value_positions: int = option(0, "positions of each training game whose outcome is a value target (0: all; "
                                     "the rest teach moves and ownership only)")
    positions_per_game: int = option(0, "positions of each game seen per epoch, by every head, drawn afresh each "
                                        "epoch (0: all): more games for the same positions, in validation too")
    split_seed: int = option(0, "seed of the train/val/test split by game")
    val_fraction: float = option(0.02, "share of games for validation")
    test_fraction: float = option(0.02, "share of games held out for testing")
    index_dir: str | None = option(None, "where the archives' game indexes are cached (default ~/.cache/gogame)")
    # network and loss
    preset: str = option("b6c96", f"dual net preset: {', '.join(nets.DUAL_PRESETS)}")
    blocks: int | None = option(None, "residual blocks (overrides the preset's)")
    channels: int | None = option(None, "trunk channels (overrides the preset's)")
    init: str | None = option(None, "start from these weights: a dual net file, trainer checkpoint or campaign "
                                    "state of the same shape (the optimizer starts fresh)")
    teacher: str | None = option(None, "a policy net of the same board size whose move choice the policy head "
                                       "also learns (distillation)")
    teacher_weight: float = option(0.5, "with --teacher: the share of the policy term that imitates it")
    value_weight: float = option(1.0, "weight of the value MSE in the loss")
    search_value_weight: float = option(0.0, "share of the search's value in the value target where the record "
                                             "has one (self-play games' BV): (1 - w) * outcome + w * search value")
    rollout_value_weight: float = option(0.0, "share of the rollouts' value in the training value target: "
                                              "(1 - w - w_search) * outcome + w * the mover's mean result of "
                                              "--rollout-value-playouts playouts of the shipped rollout policy "
                                              "from the position (computed once per archive, cached beside its "
                                              "index); validation's MSE stays against the outcome")
    rollout_value_playouts: int = option(16, "with --rollout-value-weight: playouts per position")
    search_policy_weight: float = option(0.0, "share of the search's visits in the policy target where the record "
                                              "has them (self-play games' VC): (1 - w) * move + w * visit shares")
    ownership_weight: float = option(1.0, "weight of the ownership BCE in the loss")
    # training
    out: str = option("runs/dual", "run folder (metrics.csv, last.pt, best.pt)")
    steps: int = option(0, "optimizer steps (or --epochs)")
    epochs: int = option(0, "passes over the training games (default 1 when --steps is not given)")
    batch_size: int = option(128, "positions per step")
    optimizer: str = option("adamw", "sgd, nesterov, adam, adamw, ...")
    lr: float = option(1e-3, "peak learning rate")
    weight_decay: float = option(1e-4, "on conv kernels and weight matrices")
    schedule: str = option("cosine", "constant, cosine or step")
    warmup_steps: int = option(200, "linear warmup steps")
    min_lr: float = option(1e-5, "where the cosine schedule ends")
    grad_clip: float = option(1.0, "max gradient norm (0: none)")
    val_every: int = option(1000, "validate after every this many steps")
    val_batches: int = option(20, "batches of the val split per validation (0: all of it)")
    ckpt_every: int = option(500, "write last.pt after every this many steps")
    log_every: int = option(50, "write a train row every this many steps")
    seed: int = option(0, "seed of the net's initialisation, the data order and the symmetries")
    prefetch: int = option(1, "batches prepared ahead in a background thread (0: none)")
    threads: int = option(0, "torch threads (0: torch's default)")
    amp: bool = option(False, "bf16 autocast where the device computes bf16 natively")
    device: str | None = option(None, "cuda, mps or cpu (default: the best available)")
    resume: bool = option(False, "continue the run in --out (its length, schedule and data are the ones it "
                                 "started with)")
    extend: int = option(0, "with --resume: lengthen the run to this many steps (the schedule is recomputed)")
    max_steps_this_run: int = option(0, "stop after this many steps (resume later); 0 no limit")
    stop_after: float = option(0.0, "stop cleanly after this many minutes, state saved (SIGINT, SIGTERM too)")
    ckpt_every_minutes: float = option(5.0, "also write last.pt whenever this many minutes have passed")
    progress: bool = option(True, "progress bars")
    export: str | None = option(None, "write the final weights here (fp16), with provenance")


def ownership_agreement(logits: torch.Tensor, owner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position, ``(B,)`` each: how many points the ownership ``logits`` ``(B, N*N)`` give the right owner
    among those the final-owner estimate ``owner`` (the mover's, in [-1, 1]) is sure of (|owner| >= 1/2), and how
    many those are (``own_acc`` is their ratio over a batch)."""
    sure = owner.abs() >= 0.5
    right = ((logits > 0) == (owner > 0)) & sure
    return right.sum(dim=1), sure.sum(dim=1)


def dual_loss(size: int, value_weight: float = 1.0, ownership_weight: float = 1.0,
              teacher: nets.PolicyNet | None = None, teacher_weight: float = 0.0,
              search_value_weight: float = 0.0, rollout_value_weight: float = 0.0,
              search_policy_weight: float = 0.0) -> LossFn:
    """The dual loss (see the module docstring) of batches of :class:`training.data.stream.ExpertStream`.

    With a ``teacher`` policy net, the policy term is ``(1 - teacher_weight)`` times the cross-entropy against the
    move played plus ``teacher_weight`` times the cross-entropy against the teacher's softmax on the same planes
    (distillation: a net trained on few games learns the teacher's move choice from every position); the logged
    ``policy`` stays the move's cross-entropy, ``teacher`` is the other one.

    The value target is the outcome with ``search_value_weight`` of it moved to the batch's ``search_value`` and
    ``rollout_value_weight`` to its ``rollout_value``, each where the batch has one (not NaN); the MSE counts the
    positions with an outcome. The policy target is the move with ``search_policy_weight`` of it moved to the
    batch's ``search_policy`` where a row has one (not all 0); the logged ``policy_target`` is the cross-entropy
    against that target, ``policy`` stays the move's.
    """
    n_planes = features.FEATURE_SETS[FEATURES]
    if teacher is not None and not 0.0 < teacher_weight <= 1.0:
        raise ValueError(f"teacher_weight must be in (0, 1] with a teacher, not {teacher_weight}")
    if not (0.0 <= search_value_weight and 0.0 <= rollout_value_weight and
            search_value_weight + rollout_value_weight <= 1.0):
        raise ValueError(f"search_value_weight and rollout_value_weight must be at least 0 and add up to at most "
                         f"1, not {search_value_weight} and {rollout_value_weight}")
    if not 0.0 <= search_policy_weight <= 1.0:
        raise ValueError(f"search_policy_weight must be in [0, 1], not {search_policy_weight}")
    shares = (("search_value", search_value_weight), ("rollout_value", rollout_value_weight))

    def loss_fn(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        planes = shards.unpack_planes(batch["planes"], n_planes, size)
        # the final owners (and the searches' visits on the board) as more planes, so that the symmetry turns
        # them with the position
        searched = batch.get("search_policy") if search_policy_weight else None
        extra = [batch[shards.OWNERSHIP]] + ([searched[:, :-1]] if searched is not None else [])
        planes = torch.cat([planes, *(x.reshape(-1, 1, size, size) for x in extra)], dim=1)
        planes, moves = shards.apply_symmetries(planes, batch["move"], batch["symmetry"])
        logits, value, ownership = model(planes[:, :n_planes])
        log_policy = F.log_softmax(logits.float(), dim=1)
        played = F.nll_loss(log_policy, moves, reduction="none")
        policy = played.mean()
        fit = policy
        metrics = {}
        if searched is not None:
            target = torch.cat([planes[:, n_planes + 1].flatten(1), searched[:, -1:]], dim=1)
            has = target.sum(dim=1) > 0
            against = -(target * log_policy).sum(dim=1)
            fit = (played + search_policy_weight * has * (against - played)).mean()
            metrics["policy_target"] = fit.item()
        loss = fit
        if teacher is not None:
            with torch.no_grad():
                taught = F.softmax(teacher(planes[:, :teacher.in_planes]).float(), dim=1)
            imitation = -(taught * log_policy).sum(dim=1).mean()
            loss = (1 - teacher_weight) * fit + teacher_weight * imitation
            metrics["teacher"] = imitation.item()
        outcome = batch["outcome"]
        decided = (outcome != 0).float()
        target = outcome
        for key, share in shares:
            other = batch.get(key)
            if other is not None and share:
                target = target + share * torch.where(other.isnan(), 0.0, other - outcome)
        mse = ((value.float() - target).square() * decided).sum() / decided.sum().clamp(min=1)
        owner = planes[:, n_planes].flatten(1)
        own = F.binary_cross_entropy_with_logits(ownership.float(), (owner + 1) / 2)
        right, sure = ownership_agreement(ownership, owner)
        top5 = logits.topk(5, dim=1).indices
        metrics = {
            **metrics,
            "policy": policy.item(),
            "acc": (top5[:, 0] == moves).float().mean().item(),
            "top5": (top5 == moves[:, None]).any(dim=1).float().mean().item(),
            "mse": mse.item(),
            "ownership": own.item(),
            "own_acc": (right.sum() / sure.sum().clamp(min=1)).item(),
        }
        return loss + value_weight * mse + ownership_weight * own, metrics

    return loss_fn


def load_weights(model: torch.nn.Module, path: str) -> None:
    """Copy the weights of ``path`` (any gogame checkpoint holding a ``model`` state dict: a net file, a trainer
    checkpoint, a campaign's state) into ``model``; raises CheckpointError for a file that is not one or whose
    weights do not fit the model."""
    payload = load_checkpoint(path)
    if not isinstance(payload.get("model"), dict):
        raise CheckpointError(f"{path} holds no network weights")
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in strip_wrapper_prefixes(payload["model"]).items()})
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise CheckpointError(f"{path}: its weights do not fit this net: {lines[-1].strip()}") from None


def _stream(config: DualConfig, split: str) -> ExpertStream:
    game_filter = shards.GameFilter(size=config.size, min_moves=config.min_moves, handicap=config.handicap,
                                    min_rank=config.min_rank, since=config.since, until=config.until)
    outcome = OutcomeRule(config.outcome_results, config.outcome_min_komi, config.outcome_max_komi,
                          config.outcome_handicap)
    training = split == "train"
    return ExpertStream(config.sources, config.batch_size, split=split, game_filter=game_filter, outcome=outcome,
                        seed=config.seed, split_seed=config.split_seed, val_fraction=config.val_fraction,
                        test_fraction=config.test_fraction, games_per_chunk=config.games_per_chunk,
                        ownership_playouts=config.ownership_playouts,
                        value_positions=config.value_positions if training else 0,
                        positions_per_game=config.positions_per_game,
                        rollout_value_playouts=config.rollout_value_playouts
                        if training and config.rollout_value_weight else 0,
                        search_policy=config.search_policy_weight > 0,
                        rollout_threads=max(1, config.threads), drop_last=training,
                        max_batches=0 if training else config.val_batches, index_dir=config.index_dir,
                        progress=config.progress)


def build_job(config: DualConfig) -> TrainingJob:
    """The model (seeded with ``config.seed``), loss, train and val streams, trainer config and description.

    The val stream is None when ``val_fraction`` is 0. ``extra_meta`` is :func:`gogame.nets.describe` of the
    net with its provenance: the run's command line, machine and date, and the train stream's manifest (the
    archives' sha256 and every data setting). Raises ValueError for bad settings, FileNotFoundError for a
    missing archive.
    """
    if not config.sources:
        raise ValueError("give at least one SGF archive")
    train = _stream(config, "train")
    val = _stream(config, "val") if config.val_fraction > 0 else None
    torch.manual_seed(config.seed)
    model = nets.build("dual", features.FEATURE_SETS[FEATURES], config.size, config.preset,
                       blocks=config.blocks, channels=config.channels)
    if config.init:
        load_weights(model, config.init)
    teacher = None
    if config.teacher:
        teacher = nets.load(config.teacher, kind="policy")
        if teacher.board_size != config.size or teacher.in_planes > features.FEATURE_SETS[FEATURES]:
            raise ValueError(f"{config.teacher}: a {teacher.board_size}x{teacher.board_size} policy net on "
                             f"{teacher.in_planes} planes cannot teach a {config.size}x{config.size} {FEATURES} net")
        teacher.requires_grad_(False)
    train_config = TrainConfig(
        out_dir=config.out, steps=config.steps, epochs=config.epochs or (0 if config.steps else 1),
        batch_size=config.batch_size, optimizer=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
        grad_clip=config.grad_clip, schedule=config.schedule, warmup_steps=config.warmup_steps,
        min_lr=config.min_lr, val_every=config.val_every, ckpt_every=config.ckpt_every,
        log_every=config.log_every, seed=config.seed, amp=config.amp, device=config.device,
        prefetch=config.prefetch, progress=config.progress, resume=config.resume,
        max_steps_this_run=config.max_steps_this_run, stop_after_minutes=config.stop_after,
        ckpt_every_minutes=config.ckpt_every_minutes, extend_steps=config.extend)
    provenance = {**sl.run_provenance(), "data": train.manifest(), "train_games": train.games,
                  "init": config.init and {"path": config.init, "sha256": shards.file_sha256(Path(config.init))},
                  "teacher": config.teacher and {"path": config.teacher, "weight": config.teacher_weight,
                                                 "sha256": shards.file_sha256(Path(config.teacher))},
                  "train_positions": len(train), "value_weight": config.value_weight,
                  "search_value_weight": config.search_value_weight,
                  "rollout_value_weight": config.rollout_value_weight,
                  "search_policy_weight": config.search_policy_weight,
                  "ownership_weight": config.ownership_weight}
    extra_meta = nets.describe(model, features=FEATURES, provenance=provenance)
    loss = dual_loss(config.size, config.value_weight, config.ownership_weight, teacher, config.teacher_weight,
                     config.search_value_weight, config.rollout_value_weight, config.search_policy_weight)
    return TrainingJob(model, loss, train, val, train_config, extra_meta)


CONFIG = DualConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser, DualConfig, positional=("sources",), required=("out",))


def run(config: DualConfig) -> int:
    if config.threads:
        torch.set_num_threads(config.threads)
    job = build_job(config)
    trainer = Trainer(job.model, job.loss_fn, job.train, job.val, config=job.config, extra_meta=job.extra_meta)
    first_step = trainer.step
    start = time.perf_counter()
    summary = trainer.fit()
    summary["positions_per_s"] = (summary["step"] - first_step) * config.batch_size / \
        max(time.perf_counter() - start, 1e-9)
    if config.export:
        sl.export(config.out, config.export, FEATURES, dict(job.extra_meta["provenance"]), summary,
                  config.batch_size)
    print(json.dumps(summary, default=str))
    return 0
