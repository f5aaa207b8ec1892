"""``gogame-train policy-match A.pt B.pt``: two policy nets head to head in raw-policy games.

Every move is sampled from the distribution of the net to move (temperature 1: the RL stage's games), A black
in every other game. Seed ``S`` plays exactly the games of the RL stage's own measure
(:class:`training.stages.rl.WinRateGames` with that seed), so ``--seeds 1-8`` measures an RL policy against the SL
policy on 4,000 games no training run saw (the stage itself measures on one fixed seed). Seeds run in worker
processes, one core each. Reports A's wins, win rate with its 95% Wilson interval, the Elo difference, and the
split by A's colour.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing

import numpy as np
import torch

from gogame import nets
from gogame.stats import elo_difference, wilson_interval
from training.stages.rl import WinRateGames


def parse_seeds(text: str) -> list[int]:
    """``"1-8"`` or ``"1,3,5"`` (or a mix) as a list of seeds; ValueError for anything else."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            seeds.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"seeds must look like 1-8 or 1,3,5, not {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one: {text!r}")
    return seeds


def play_seed(a_path: str, b_path: str, seed: int, games: int, batch: int,
              komi: float) -> tuple[np.ndarray, np.ndarray]:
    """A's outcome (+1 win, -1 loss) in each game of one seed, and whether A was black in it."""
    torch.set_num_threads(1)  # one process per core
    a, b = nets.load(a_path, kind="policy"), nets.load(b_path, kind="policy")
    source = WinRateGames(a, b, games=games, batch=batch, size=a.board_size, komi=komi, seed=seed)
    with torch.no_grad():
        batches = list(source.batches(0))
    return (np.concatenate([x["z"].numpy() for x in batches]),
            np.concatenate([x["learner_black"].numpy() for x in batches]))


def summarise(z: np.ndarray, black: np.ndarray) -> dict:
    """Wins, win rate, its interval and the Elo difference of outcomes ``z``, overall and by A's colour."""
    def tally(mask: np.ndarray) -> dict:
        n, wins = int(mask.sum()), int((z[mask] > 0).sum())
        rate = wins / n if n else float("nan")
        return {"games": n, "wins": wins, "win_rate": rate, "ci95": list(wilson_interval(wins, n))}

    report = tally(np.ones_like(black))
    elo = elo_difference(report["win_rate"])
    report["elo"] = elo if math.isfinite(elo) else None  # JSON has no infinity
    report["as_black"], report["as_white"] = tally(black), tally(~black)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="policy net A (the one scored: an RL policy, say)")
    parser.add_argument("b", help="policy net B (its opponent: the SL policy, say)")
    parser.add_argument("--seeds", default="1-8", help="seeds to play, as 1-8 or 1,3,5 (default 1-8)")
    parser.add_argument("--games-per-seed", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100, help="games played at once")
    parser.add_argument("--komi", type=float, default=7.5)
    parser.add_argument("--workers", type=int, default=1, help="processes, one seed at a time each")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        seeds = parse_seeds(args.seeds)
        sizes = {nets.load(path, kind="policy").board_size for path in (args.a, args.b)}
    except (ValueError, OSError) as exc:  # bad seeds; a missing, corrupt or foreign checkpoint
        raise SystemExit(f"gogame-train policy-match: {exc}") from None
    if len(sizes) > 1:
        raise SystemExit(f"gogame-train policy-match: the nets are for different board sizes {sorted(sizes)}")
    if args.games_per_seed < 1 or args.batch < 1:
        raise SystemExit("gogame-train policy-match: --games-per-seed and --batch must be at least 1")
    jobs = [(args.a, args.b, seed, args.games_per_seed, args.batch, args.komi) for seed in seeds]
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
            results = pool.starmap(play_seed, jobs)
    else:
        results = [play_seed(*job) for job in jobs]
    report = {"a": args.a, "b": args.b, "seeds": seeds, "komi": args.komi,
              **summarise(np.concatenate([z for z, _ in results]), np.concatenate([b for _, b in results]))}
    if args.json:
        print(json.dumps(report))
    else:
        low, high = report["ci95"]
        print(f"A wins {report['wins']} of {report['games']}: {report['win_rate']:.1%} "
              f"(95% CI {low:.1%}-{high:.1%}, Elo {report['elo']}); as black "
              f"{report['as_black']['win_rate']:.1%}, as white {report['as_white']['win_rate']:.1%}")
    return 0
