"""``gogame-train rl``: AlphaGo's RL policy stage, REINFORCE against a pool of earlier selves.

Each iteration plays ``--games`` games of the current policy (the learner) against an opponent drawn
uniformly from the pool, the learner black in half of them, all moves sampled at temperature 1 with
:func:`training.stages.selfplay.play_games` (its pass rule: no pass while a sensible move is left). The update is
REINFORCE: the loss is ``-sum over the learner's chosen moves of log pi(a|s) * (z - b) / games``, with ``z``
the game's outcome for the learner (+1 / -1) and ``b`` the baseline: 0, with ``--baseline mean`` the
batch's mean outcome (a variance reducer; the gradient stays unbiased up to the 1/games term), or with
``--baseline value --value-net V`` the value net's ``v(s_t)`` of each position the learner moved from
(AlphaGo's second pass through its pipeline: a move is credited with how much the game turned out better
than the position promised; unbiased, since ``v`` does not depend on the move). ``--entropy-bonus beta``
adds ``-beta * sum of H(pi(.|s_t)) / games``: without it the policies grow near-deterministic, and then learn
to beat their predecessors' fixed lines rather than to play better
(docs/journal/2026-11-28-value-baseline-entropy.md). ``--kl-penalty beta``
adds ``beta * sum of KL(pi(.|s_t) || rho(.|s_t)) / games``, ``rho`` the ``--reference`` policy (the SL
policy): where the entropy bonus spreads the policy over any moves, this keeps it among the moves the
reference would play (the guard of RL from human data in AlphaStar and RLHF; not in AlphaGo). The metrics
log the mean entropy of the learner's move distributions and, with the penalty, the mean ``kl``.

The :class:`training.trainer.Trainer` owns the optimizer, checkpoints, resume and ``metrics.csv``:
:class:`ReinforceGames` is its batch source (each "batch" is a fresh set of games, played by the model being
trained) and :class:`WinRateGames` its validation source: every ``--eval-every`` iterations the learner plays
``--eval-games`` games against the SL policy it started from (or ``--reference``; both colours, a fixed
seed), and the val row of ``metrics.csv`` logs ``win_rate``; ``best.pt`` keeps the best of them.

The pool lives in ``OUT/pool/``: the starting policy as ``iter-000000.pt``, then a snapshot of the learner
every ``--pool-every`` iterations, each written atomically; a ``--reference`` other than the start (the SL
policy, when going on from an RL snapshot) is a member too, as it would be in one long run. A resumed run
(``--resume``) continues from ``last.pt`` with the pool on disk; batch ``i`` is seeded by ``(seed, i, rank)``,
so under ``torchrun`` each rank plays its own games.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gogame import inference, nets
from gogame.api import NetEvaluator
from gogame.checkpoint import CheckpointError
from training.options import REQUIRED, option
from training.stages.selfplay import NetPlayer, Plan, PlayedGame, play_games
from training.stopping import CheckpointStopOptions
from training.trainer import TrainConfig, Trainer

BASELINES = ("none", "mean", "value")


class Pool:
    """The opponents: policy snapshots in a folder, ``iter-NNNNNN.pt``, loaded on demand (the last few kept).

    ``ancestors`` are policy files from before this run (the SL policy of a run that goes on from an RL
    snapshot): members from the first iteration on, as in one long run, whose pool holds every earlier policy.
    """

    def __init__(self, folder: str | Path, keep_loaded: int = 4, ancestors: Sequence[str | Path] = ()) -> None:
        self.folder = Path(folder)
        self.keep_loaded = keep_loaded
        self.ancestors = [Path(p) for p in ancestors]
        self._loaded: dict[Path, nets.PolicyNet] = {}

    def path(self, iteration: int) -> Path:
        return self.folder / f"iter-{iteration:06d}.pt"

    def add(self, net: nets.PolicyNet, iteration: int) -> None:
        """Snapshot ``net`` as iteration ``iteration``'s member (atomically; again is harmless)."""
        nets.save(net, self.path(iteration), features="alphago48")

    def snapshots(self, before: int | None = None) -> list[Path]:
        """This run's snapshot files, oldest first; ``before``: only those of earlier iterations than that."""
        paths = sorted(self.folder.glob("iter-*.pt"))
        return [p for p in paths if before is None or int(p.stem[5:]) < before]

    def members(self, before: int | None = None) -> list[Path]:
        """The ancestors, then :meth:`snapshots`."""
        return self.ancestors + self.snapshots(before)

    def draw(self, rng: np.random.Generator, before: int | None = None) -> nets.PolicyNet:
        """A uniformly drawn member. CheckpointError if the pool is empty."""
        members = self.members(before)
        if not members:
            raise CheckpointError(f"the opponent pool {self.folder} is empty")
        path = members[int(rng.integers(len(members)))]
        if path not in self._loaded:
            if len(self._loaded) >= self.keep_loaded:
                self._loaded.pop(next(iter(self._loaded)))
            self._loaded[path] = nets.load(path, kind="policy")
        return self._loaded[path]


def game_batch(games: list[PlayedGame], learner_colours: list[str], in_planes: int,
               values: NetEvaluator | None = None, reference: NetEvaluator | None = None) -> dict[str, torch.Tensor]:
    """The REINFORCE batch of games: per game ``z`` (the learner's outcome) and ``learner_black``, per learner
    move the planes, the move, the moves it chose among and its game, with ``values`` (a value net's evaluator) the
    ``baseline``: its value of the position, and with ``reference`` (a policy net's) the ``reference_logp``:
    its log-probabilities of all moves there. Forced passes (no choice) are left out."""
    rows = [(g, k) for g, game in enumerate(games) for k in range(len(game.positions)) if game.sensible[k].any()]
    size = games[0].size
    planes = np.stack([games[g].planes[k] for g, k in rows]) if rows else \
        np.zeros((0, in_planes, size, size), np.uint8)
    legal = np.stack([games[g].sensible[k] for g, k in rows]) if rows else np.zeros((0, size * size + 1), bool)
    batch = {
        "z": torch.tensor([game.outcome(c) for game, c in zip(games, learner_colours)], dtype=torch.float32),
        "learner_black": torch.tensor([c == "B" for c in learner_colours]),
        "planes": torch.from_numpy(np.ascontiguousarray(planes[:, :in_planes])),
        "move": torch.tensor([games[g].moves[k] for g, k in rows], dtype=torch.int64),
        "legal": torch.from_numpy(legal),
        "game": torch.tensor([g for g, _ in rows], dtype=torch.int64),
        "length": torch.tensor([len(game.history) for game in games], dtype=torch.float32),
    }
    if values is not None:
        batch["baseline"] = torch.from_numpy(values.value(planes)).float() if rows else torch.zeros(0)
    if reference is not None:
        batch["reference_logp"] = torch.from_numpy(reference.policy(planes)).float() if rows else \
            torch.zeros(0, size * size + 1)
    return batch


def play_match(learner: nets.PolicyNet, opponent: nets.PolicyNet, games: int, *, size: int, komi: float,
               max_moves: int | None, rng: np.random.Generator, first_black: int = 0,
               value_net: nets.ValueNet | None = None,
               reference_net: nets.PolicyNet | None = None, backend: str = "auto") -> dict[str, torch.Tensor]:
    """``games`` games of ``learner`` against ``opponent``, the learner black in every other one, as a
    :func:`game_batch` (with ``value_net``'s baseline and ``reference_net``'s log-probabilities, if given).

    ``backend`` runs the fixed nets (opponent, value net, reference: :mod:`gogame.inference`); the learner, whose
    weights change with every update, runs on torch."""
    colours = ["B" if (g + first_black) % 2 == 0 else "W" for g in range(games)]
    plans = [Plan(black=0, white=1, record="black") if c == "B" else Plan(black=1, white=0, record="white")
             for c in colours]
    was_training = learner.training
    learner.eval()
    players = [NetPlayer(learner, live=True), NetPlayer(opponent, backend=backend)]
    played = play_games(players, plans, size=size, komi=komi,
                        max_moves=max_moves, rng=rng)
    learner.train(was_training)
    device = next(learner.parameters()).device
    values = None if value_net is None else NetEvaluator(None, value_net, symmetries="none", device=device,
                                                         backend=backend)
    reference = None if reference_net is None else NetEvaluator(reference_net, None, symmetries="none",
                                                                device=device, backend=backend)
    return game_batch(played, colours, learner.in_planes, values, reference)


class ReinforceGames:
    """The trainer's batch source: batch ``i`` is a fresh match of the model against a pool member.

    Before playing batch ``i`` (counted over the whole run) the model joins the pool when ``i`` is a multiple
    of ``pool_every``; the opponent is drawn from the members of earlier iterations (or the start). With
    ``value_net`` each batch carries its baseline values, with ``reference_net`` its log-probabilities.
    """

    def __init__(self, model: nets.PolicyNet, pool: Pool, *, iterations: int, games: int, pool_every: int,
                 size: int, komi: float = 7.5, max_moves: int | None = None, seed: int = 0,
                 value_net: nets.ValueNet | None = None, reference_net: nets.PolicyNet | None = None,
                 backend: str = "auto") -> None:
        if games < 1 or pool_every < 1 or iterations < 1:
            raise ValueError("iterations, games and pool_every must be at least 1")
        self.model, self.pool = model, pool
        self.iterations, self.games, self.pool_every = iterations, games, pool_every
        self.size, self.komi, self.max_moves, self.seed = size, komi, max_moves, seed
        self.value_net, self.reference_net, self.backend = value_net, reference_net, backend

    def num_batches(self, world_size: int = 1) -> int:
        return self.iterations

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[dict]:
        for b in range(start, self.iterations):
            i = epoch * self.iterations + b
            if i % self.pool_every == 0 and i > 0:
                self.pool.add(self.model, i)  # every rank writes the same file: atomic, so harmless
            rng = np.random.default_rng([self.seed, i, rank])
            opponent = self.pool.draw(rng, before=max(i, 1))
            yield play_match(self.model, opponent, self.games, size=self.size, komi=self.komi,
                             max_moves=self.max_moves, rng=rng, first_black=i, value_net=self.value_net,
                             reference_net=self.reference_net, backend=self.backend)


class WinRateGames:
    """The trainer's validation source: ``games`` games of the model against a fixed reference, one seed
    (with ``value_net`` the batches carry baselines, with ``kl`` the reference's log-probabilities, so that
    the loss is the training loss)."""

    def __init__(self, model: nets.PolicyNet, reference: nets.PolicyNet, *, games: int, batch: int, size: int,
                 komi: float = 7.5, max_moves: int | None = None, seed: int = 12345,
                 value_net: nets.ValueNet | None = None, kl: bool = False, backend: str = "auto") -> None:
        if games < 1 or batch < 1:
            raise ValueError("eval games and batch must be at least 1")
        self.model, self.reference = model, reference
        self.games, self.batch, self.size, self.komi, self.max_moves, self.seed = games, batch, size, komi, max_moves, seed
        self.value_net, self.kl, self.backend = value_net, kl, backend

    def num_batches(self, world_size: int = 1) -> int:
        return -(-self.games // (self.batch * world_size))

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[dict]:
        for b in range(rank, -(-self.games // self.batch), world_size):
            n = min(self.batch, self.games - b * self.batch)
            rng = np.random.default_rng([self.seed, b])
            yield play_match(self.model, self.reference, n, size=self.size, komi=self.komi,
                             max_moves=self.max_moves, rng=rng, value_net=self.value_net,
                             reference_net=self.reference if self.kl else None, backend=self.backend)


def reinforce_loss(baseline: str = "mean", entropy_bonus: float = 0.0, kl_penalty: float = 0.0):
    """REINFORCE on a :func:`game_batch` (for ``"value"``, one with a ``baseline``; with ``kl_penalty``, one
    with ``reference_logp``), less ``entropy_bonus`` times the entropy of the learner's move distributions,
    plus ``kl_penalty`` times their KL divergence from the reference's (both over the moves chosen among);
    logs the learner's ``win_rate``, the moves per game, the mean ``entropy`` and, with the penalty, the mean
    ``kl`` (nats)."""
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, not {baseline!r}")
    if entropy_bonus < 0 or kl_penalty < 0:
        raise ValueError(f"the entropy bonus and the KL penalty must be at least 0, not {entropy_bonus}, {kl_penalty}")

    def loss_fn(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        z = batch["z"]
        outcome = z[batch["game"]]  # (M,): each learner move's game outcome
        if baseline == "value":
            advantage = outcome - batch["baseline"]
        else:
            advantage = outcome - (z.mean() if baseline == "mean" else 0.0)
        logp = nets.masked_log_softmax(model(batch["planes"]), batch["legal"])  # (M, S*S + 1)
        chosen = logp.gather(1, batch["move"][:, None]).squeeze(1)  # (M,)
        entropy = -(logp.exp() * logp.masked_fill(~batch["legal"], 0.0)).sum(1)  # (M,)
        objective = (chosen * advantage).sum() + entropy_bonus * entropy.sum()
        metrics = {"win_rate": (z > 0).float().mean().item(), "moves": batch["length"].mean().item(),
                   "entropy": entropy.mean().item() if entropy.numel() else 0.0}
        if kl_penalty:
            reference = nets.masked_log_softmax(batch["reference_logp"], batch["legal"])
            kl = (logp.exp() * (logp - reference).masked_fill(~batch["legal"], 0.0)).sum(1)  # (M,)
            objective = objective - kl_penalty * kl.sum()
            metrics["kl"] = kl.mean().item() if kl.numel() else 0.0
        return -objective / z.numel(), metrics

    return loss_fn


@dataclass(kw_only=True)
class RLConfig(CheckpointStopOptions):
    """Every setting of ``gogame-train rl``, with its default."""

    out: str = option(REQUIRED, "run folder: metrics.csv, last.pt, best.pt, pool/")
    weights: str | None = option(None, "the SL policy to start from (default: the shipped one for --size)")
    reference: str | None = option(None, "the policy the win rate is measured against (default: --weights, the "
                                         "start); another than the start also joins the opponent pool")
    size: int = option(19, "board size")
    iterations: int = option(REQUIRED, "updates (each on a fresh batch of games)")
    games: int = option(64, "games per iteration")
    pool_every: int = option(50, "add the learner to the pool this often")
    eval_every: int = option(50, "measure the win rate against the SL policy")
    eval_games: int = option(200, "games of each win-rate measurement")
    baseline: str = option("mean", "subtracted from the outcome: none, the batch mean, or --value-net's value",
                           choices=BASELINES)
    value_net: str | None = option(None, "the value net of --baseline value")
    entropy_bonus: float = option(0.0, "weight of the move distributions' entropy in the objective (keeps play "
                                       "varied)")
    kl_penalty: float = option(0.0, "weight of the move distributions' KL divergence from --reference's in the "
                                    "objective (keeps play among the reference's moves)")
    optimizer: str = option("sgd", "the optimizer", choices=("sgd", "adam", "adamw"))
    lr: float = option(0.01, "learning rate")
    schedule: str = option("constant", "learning rate over the iterations: constant (AlphaGo's) or cosine down to "
                                       "--min-lr", choices=("constant", "cosine"))
    min_lr: float = option(0.0, "where the cosine schedule ends")
    grad_clip: float = option(0.0, "max gradient norm (0: none)")
    komi: float = option(7.5, "komi of the games")
    max_moves: int | None = option(None, "move cap (default 2 * size * size)")
    ckpt_every: int = option(10, "write last.pt after every this many iterations")
    seed: int = option(0, "seed of the games")
    device: str | None = option(None, "cuda, mps or cpu (default: the best available)")
    backend: str = option("auto", "what runs the fixed nets: opponents, value net, reference (auto: see "
                                  "gogame.inference); the learner runs on torch", choices=inference.BACKENDS)
    resume: bool = option(False, "continue the run in --out")
    max_steps_this_run: int = option(0, "stop after this many iterations (resume later); 0 no limit")
    export: str | None = option(None, "write the final policy here (fp16), with provenance")
    progress: bool = option(True, "progress bars")


CONFIG = RLConfig


def load_for_size(path: str, kind: str, size: int, role: str) -> nets.PolicyNet | nets.ValueNet:
    """The ``kind`` net at ``path``; SystemExit naming its ``role`` if it is for another board size."""
    net = nets.load(path, kind=kind)
    if net.board_size != size:
        raise SystemExit(f"gogame-train rl: the {role} {path} is a {net.board_size}x{net.board_size} net, "
                         f"not {size}x{size}")
    return net


def run(config: RLConfig) -> int:
    weights = config.weights or str(nets.default_weights("policy", config.size))
    start_net = load_for_size(weights, "policy", config.size, "start")
    if (config.baseline == "value") != (config.value_net is not None):
        raise SystemExit("gogame-train rl: --baseline value and --value-net go together")
    value_net = load_for_size(config.value_net, "value", config.size, "value net") if config.value_net else None
    reference = load_for_size(config.reference or weights, "policy", config.size, "reference")
    # A reference other than the start (the SL policy, going on from an RL snapshot) joins the pool.
    ancestors = [config.reference] if config.reference and Path(config.reference).resolve() != Path(weights).resolve() \
        else []
    pool = Pool(Path(config.out) / "pool", ancestors=ancestors)
    if not pool.snapshots():
        pool.add(start_net, 0)
    learner = start_net.train()
    common = {"size": config.size, "komi": config.komi, "max_moves": config.max_moves, "value_net": value_net,
              "backend": config.backend}
    train_src = ReinforceGames(learner, pool, iterations=config.iterations, games=config.games,
                               pool_every=config.pool_every, seed=config.seed,
                               reference_net=reference if config.kl_penalty else None, **common)
    val_src = WinRateGames(learner, reference, games=config.eval_games, batch=config.games,
                           kl=bool(config.kl_penalty), **common)
    train_config = TrainConfig(out_dir=config.out, steps=config.iterations, batch_size=config.games,
                               optimizer=config.optimizer, lr=config.lr,
                               momentum=0.0 if config.optimizer == "sgd" else 0.9, grad_clip=config.grad_clip,
                               schedule=config.schedule, min_lr=config.min_lr,
                               val_every=config.eval_every, val_metric="win_rate", val_mode="max",
                               ckpt_every=config.ckpt_every, log_every=1, seed=config.seed, device=config.device,
                               resume=config.resume, max_steps_this_run=config.max_steps_this_run,
                               progress=config.progress, stop_after_minutes=config.stop_after,
                               ckpt_every_minutes=config.ckpt_every_minutes)
    provenance = {"command": " ".join(["gogame-train", *sys.argv[1:]]), "settings": dataclasses.asdict(config),
                  "start": str(weights),
                  "pool_ancestors": [str(p) for p in ancestors],
                  "stage": "rl (REINFORCE against a pool of earlier policies)", "date": time.strftime("%Y-%m-%d")}
    loss_fn = reinforce_loss(config.baseline, config.entropy_bonus, config.kl_penalty)
    trainer = Trainer(learner, loss_fn, train_src, val_src, config=train_config,
                      extra_meta=nets.describe(learner, features="alphago48", provenance=provenance))
    summary = trainer.fit()
    if config.export:
        provenance.update(iterations=summary["step"], games_per_iteration=config.games,
                          win_rate_vs_reference=summary["val"] and summary["val"]["win_rate"],
                          reference=str(config.reference or weights),
                          eval_games=config.eval_games)
        nets.save(learner, config.export, half=True, features="alphago48", provenance=provenance)
    print(json.dumps(summary, default=str))
    return 0
