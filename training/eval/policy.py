"""``gogame-train eval-policy``: how often a policy net (or a dual net's policy head) predicts the expert's move.

Reads held-out games straight from SGF (folders, files, archives), computes
features on the fly, and reports top-1 and top-5 accuracy and the mean
log-likelihood of the expert moves (illegal moves masked), overall and by
move-number bucket. ``--split test`` keeps only the games that a dataset
built with the same ``--seed/--val/--test`` put in its test split, so the
figures are on games the net never trained on.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from itertools import islice

import numpy as np
import torch
from tqdm import tqdm

from gogame import features, inference, nets
from gogame.board import IllegalMove
from gogame.sgf import SGFError
from training.data.corpus import read_games
from training.data.shards import SPLITS, split_of

BUCKETS = (0, 50, 100, 150, 200, 250)


def bucket_name(move_number: int) -> str:
    lo = max(b for b in BUCKETS if b <= move_number)
    hi = next((b for b in BUCKETS if b > lo), None)
    return f"{lo}-{hi - 1}" if hi is not None else f"{lo}+"


class _Tally:
    def __init__(self) -> None:
        self.n = 0
        self.top1 = 0
        self.top5 = 0
        self.loglik = 0.0

    def add(self, rank: int, logp: float) -> None:
        self.n += 1
        self.top1 += rank == 0
        self.top5 += rank < 5
        self.loglik += logp

    def report(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"positions": self.n, "top1": self.top1 / n, "top5": self.top5 / n, "loglik": self.loglik / n}


def policy_log_probs(net: torch.nn.Module, planes: np.ndarray, legal: torch.Tensor, *, ensemble: bool = False,
                     bf16: bool = True, runner: inference.Runner | None = None) -> torch.Tensor:
    """Log-probabilities ``(B, S*S + 1)`` of ``net`` over the legal moves of ``planes`` ``(B, C, S, S)``.

    With ``ensemble`` the probabilities are the mean over the 8 board symmetries (AlphaGo's ensemble,
    8 times the work); with ``bf16`` the net runs in bf16 where native. ``runner`` runs ``net``
    (:func:`gogame.inference.runner`; default: torch on ``legal``'s device, the net's live weights).
    """
    run = runner or inference.TorchRunner(net, legal.device, bf16, live=True)
    ks = inference.symmetries("all" if ensemble else "none", len(planes))
    return torch.from_numpy(inference.policy(run, planes, ks, legal.cpu().numpy())).to(legal.device)


def evaluate_policy(net: torch.nn.Module, positions, batch_size: int = 256, device: str = "cpu", *,
                    ensemble: bool = False, bf16: bool = True, backend: str = "auto") -> dict:
    """Accuracy of ``net`` on ``(planes, legal_mask, move_index, move_number)`` tuples; see the module docstring
    and :func:`policy_log_probs` for ``ensemble`` and ``bf16``; ``backend`` runs the net (:mod:`gogame.inference`)."""
    net = net.to(device).eval()
    run = inference.runner(net, backend, device=device, bf16=bf16)
    overall, by_bucket = _Tally(), defaultdict(_Tally)

    def flush(batch):
        planes = np.stack([b[0] for b in batch])
        legal = torch.from_numpy(np.stack([b[1] for b in batch])).to(device)
        logp = policy_log_probs(net, planes, legal, ensemble=ensemble, bf16=bf16, runner=run)
        moves = torch.tensor([b[2] for b in batch], device=device)
        expert = logp.gather(1, moves[:, None]).squeeze(1)
        ranks = (logp > expert[:, None]).sum(dim=1)
        for (_, _, _, number), rank, lp in zip(batch, ranks.tolist(), expert.tolist()):
            overall.add(rank, lp)
            by_bucket[bucket_name(number)].add(rank, lp)

    batch = []
    for item in positions:
        batch.append(item)
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    return {**overall.report(), "by_move_number": {k: by_bucket[k].report() for k in sorted(by_bucket, key=lambda s: int(s.split("-")[0].rstrip("+")))}}


def expert_positions(sources, size: int, feature_set: str, keep=lambda name: True, max_games: int | None = None, skipped=None):
    """Yield ``(planes, legal_mask, move_index, move_number)`` for every move of the kept games
    among the first ``max_games`` games of the sources."""
    for name, game in islice(read_games(sources, size=size, skipped=skipped), max_games):
        if not keep(name):
            continue
        try:
            for board, colour, move in game.replay():
                index = size * size if move is None else move[0] * size + move[1]
                yield features.planes(board, feature_set), np.append(features.legal_mask(board), True), index, len(board.history)
        except (IllegalMove, SGFError):
            if skipped is not None:
                skipped["illegal move"] += 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a policy net file or trainer checkpoint, a dual net (its policy head), "
                        "'default' (the shipped policy net), a rollout/tree policy .npz, or 'default-rollout' / "
                        "'default-tree'")
    parser.add_argument("sources", nargs="+", help="SGF folders, files or archives")
    parser.add_argument("--size", type=int, default=None,
                        help="board size (default: the net's; a dual net's first trained size)")
    parser.add_argument("--split", choices=[*SPLITS, "all"], default="all",
                        help="keep only the games a dataset with the same seed/fractions put in this split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val", type=float, default=0.02)
    parser.add_argument("--test", type=float, default=0.02)
    parser.add_argument("--max-games", type=int, default=None, help="read only the first N games (before --split)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ensemble", action="store_true",
                        help="average the net's probabilities over the 8 board symmetries (8 times the work)")
    parser.add_argument("--fp32", action="store_true",
                        help="run the net in fp32 (default: bf16 where the device computes it natively, as the engine)")
    parser.add_argument("--backend", choices=inference.BACKENDS, default="auto",
                        help="what runs the net (default auto: see gogame.inference)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


ROLLOUT_DEFAULTS = {"default-rollout": False, "default-tree": True}


def evaluate_pattern_policy(args: argparse.Namespace, keep) -> dict:
    """Top-1 accuracy, log loss and microseconds per move of a rollout or tree policy (see
    :mod:`training.stages.rollout`)."""
    from gogame.rollout import RolloutPolicy
    from training.stages import rollout

    if args.checkpoint in ROLLOUT_DEFAULTS:
        policy = RolloutPolicy.load(tree=ROLLOUT_DEFAULTS[args.checkpoint])
    else:
        policy = RolloutPolicy.load(args.checkpoint)
    size = args.size or 19
    skipped = defaultdict(int)
    games = [g for name, g in islice(read_games(args.sources, size=size, skipped=skipped), args.max_games) if keep(name)]
    packed = rollout.GameSet.from_games(games, size)
    rollout.evaluate(policy, rollout.GameSet.from_games(games[:1], size))  # compile outside the timing
    start = time.perf_counter()
    top1, loss, positions = rollout.evaluate(policy, packed)
    seconds = time.perf_counter() - start
    return {"positions": positions, "top1": top1, "loglik": -loss, "us_per_move": 1e6 * seconds / max(positions, 1),
            "policy": "tree" if policy.tree else "rollout", "skipped": dict(skipped)}


def _require_positions(report: dict, size: int) -> None:
    """ValueError when ``report`` counts no position: an accuracy over nothing is no result."""
    if not report["positions"]:
        skipped = ", ".join(f"{n} {why}" for why, n in report["skipped"].items()) or "none"
        raise ValueError(f"no {size}x{size} positions to evaluate in the sources (games skipped: {skipped}); "
                         "--size picks the board size of the records and of the default net")


def run(args: argparse.Namespace) -> int:
    keep = (lambda name: True) if args.split == "all" else (
        lambda name: split_of(name, args.seed, args.val, args.test) == args.split)
    if args.checkpoint in ROLLOUT_DEFAULTS or args.checkpoint.endswith(".npz"):
        report = evaluate_pattern_policy(args, keep)
        _require_positions(report, args.size or 19)
        report["checkpoint"] = args.checkpoint
        print(json.dumps(report) if args.json else
              f"positions {report['positions']}: top-1 {report['top1']:.1%}, log-likelihood {report['loglik']:.3f}, "
              f"{report['us_per_move']:.2f} us per move ({report['policy']} policy)")
        return 0
    if args.checkpoint == "default":
        net = nets.load(nets.default_weights("policy", args.size or 19), kind="policy")
    else:
        net = nets.load(args.checkpoint, kind=("policy", "dual"))
    if net.meta["kind"] == "dual":  # its policy head, on any size
        size = args.size or net.meta["board_sizes"][0]
    else:
        size = args.size or net.meta["board_size"]
        if size != net.meta["board_size"]:
            raise SystemExit(f"the net plays {net.meta['board_size']}x{net.meta['board_size']}, not {size}x{size}")
    skipped = defaultdict(int)
    start = time.perf_counter()
    positions = tqdm(expert_positions(args.sources, size, net.meta["features"], keep, args.max_games, skipped),
                     desc="eval-policy", unit="pos", disable=args.json)
    report = evaluate_policy(net, positions, args.batch_size, args.device, ensemble=args.ensemble, bf16=not args.fp32,
                             backend=args.backend)
    report["ensemble"] = args.ensemble
    report["backend"] = inference.choose(args.backend, args.device, not args.fp32)
    report["precision"] = "bf16" if (report["backend"] == "torch" and not args.fp32
                                     and nets.bf16_native(torch.device(args.device).type)) else "fp32"
    report["skipped"] = dict(skipped)
    _require_positions(report, size)
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["checkpoint"] = args.checkpoint
    if args.json:
        print(json.dumps(report))
    else:
        print(f"positions {report['positions']}: top-1 {report['top1']:.1%}, top-5 {report['top5']:.1%}, "
              f"log-likelihood {report['loglik']:.3f}")
        for bucket, r in report["by_move_number"].items():
            print(f"  moves {bucket:>8}: top-1 {r['top1']:.1%}, top-5 {r['top5']:.1%} ({r['positions']} positions)")
    return 0
