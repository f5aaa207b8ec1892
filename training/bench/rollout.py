"""Benchmark of the rollout and tree policies: held-out accuracy and rollout speed.

Figures, one per line: top-1 accuracy and log loss of each policy on held-out expert games (the ``test`` split of
:func:`training.data.shards.split_of`, which training never sees), microseconds per rollout move
and full rollouts per second per core on an empty board (19x19 unless ``--size``), rollouts per second with
``--threads`` threads, and uniformly random playouts per second for scale. The numba kernels are compiled (or
loaded from the cache) before any timing.

    python -m training.bench.rollout --data /work/shared/data/pro19.tar.xz
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from gogame import Board, random_playouts
from gogame import rollout as ro
from training.stages import rollout as rt


def accuracy_lines(policies: dict[str, ro.RolloutPolicy], args: argparse.Namespace) -> list[str]:
    _, held = rt.load_games(args.data, 19, games=0, eval_games=args.games, seed=args.seed, val=args.val,
                            test=args.test)
    lines = []
    for name, policy in policies.items():
        start = time.perf_counter()
        accuracy, loss, positions = rt.evaluate(policy, held)
        lines.append(f"{name} policy: held-out top-1 accuracy {accuracy:.4f}, log loss {loss:.3f} "
                     f"({positions} positions of {len(held)} games, {time.perf_counter() - start:.0f} s)")
    return lines


def speed_lines(policy: ro.RolloutPolicy, size: int, n: int, threads: int) -> list[str]:
    board = Board(size)
    policy.rollouts(board, 2, threads=min(2, threads))  # compile or load the kernels
    random_playouts(size, 2)
    moves = sum(len(policy.playout(board, seed)) for seed in range(n))
    wall, cpu = time.perf_counter(), time.process_time()
    outcomes = policy.rollouts(board, n)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    lines = [
        f"rollout policy, {size}x{size} from the empty board: {n} rollouts, {moves / n:.0f} moves each, "
        f"black wins {np.mean(outcomes > 0):.2f}",
        f"  {cpu / moves * 1e6:.2f} us per move (CPU), {n / cpu:.0f} rollouts/s per core "
        f"({n / wall:.0f} rollouts/s wall, 1 thread)",
    ]
    if threads > 1:
        wall = time.perf_counter()
        policy.rollouts(board, n * threads, threads=threads)
        wall = time.perf_counter() - wall
        lines.append(f"  {n * threads / wall:.0f} rollouts/s wall with {threads} threads")
    cpu = time.process_time()
    random_playouts(size, n * 4)
    cpu = time.process_time() - cpu
    lines.append(f"uniform random playouts (gogame.random_playouts): {n * 4 / cpu:.0f} playouts/s per core")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.bench.rollout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="*", default=[], help="SGF sources for the accuracy figures (19x19)")
    parser.add_argument("--games", type=int, default=500, help="held-out games to score")
    parser.add_argument("--seed", type=int, default=0, help="the train/val/test split, as in training")
    parser.add_argument("--val", type=float, default=0.02)
    parser.add_argument("--test", type=float, default=0.02)
    parser.add_argument("--rollout", type=Path, default=ro.DEFAULT_ROLLOUT, help="rollout policy weights")
    parser.add_argument("--tree", type=Path, default=ro.DEFAULT_TREE, help="tree policy weights (if present)")
    parser.add_argument("--size", type=int, default=19)
    parser.add_argument("--rollouts", type=int, default=200, help="rollouts to time")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    print("command: python -m training.bench.rollout " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    rollout = ro.RolloutPolicy.load(args.rollout)
    policies = {"rollout": rollout}
    if args.tree.exists():
        policies["tree"] = ro.RolloutPolicy.load(args.tree)
    lines = speed_lines(rollout, args.size, args.rollouts, args.threads)
    if args.data:
        lines += accuracy_lines(policies, args)
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
