"""Compiling numba kernels ahead, in a second process, into numba's on-disk cache.

numba compiles a kernel at its first call, in one thread (compiling holds the GIL and numba's compiler lock):
on an empty cache, the first start after an install, the board's, the features' and the search's kernels take
over a minute of one core, the search's (tree and rollout kernels) about two thirds of it. ``python -m
gogame.warmup SIZE`` (:func:`start`) compiles on the second core: first the features' kernels
(:func:`compile_features`, the larger half of what the policy net's move needs), then it says so on its stdout
(:data:`FEATURES_DONE`), then the search's: a small search with uniform priors and rollout ownership
(:func:`compile_search`; no networks, so no torch), with the argument types of the engine's search. Meanwhile
the GTP engine's warm-up (:class:`gtp.session.EnginePlayer`) makes its networks ready and compiles the board's
kernels, then waits for that line. A kernel a process finds in the cache is loaded from it instead of compiled
(numba checks the source's time stamp), so the engine loads the features' kernels in milliseconds once the line
has come, and its search, once the second process is done, in seconds.
"""

from __future__ import annotations

import argparse
import atexit
import os
import subprocess
import sys
from pathlib import Path

from gogame import coords, features, mcts
from gogame import rollout as ro
from gogame.board import Board

# The search's largest kernels (three quarters of its compile time): cached specialisations of all of them
# mean the second process has nothing to do.
SEARCH_KERNELS = (ro.rollouts_kernel, ro.playout_kernel, mcts.select_batch, mcts.backup_batch)
FEATURES_DONE = "features compiled"  # the second process's stdout line once the features' kernels are cached
NICENESS = 5  # the second process yields the CPU to the engine's own warm-up (the policy net's move comes first)


def search_cached() -> bool:
    """Whether numba's cache holds, for the current source, a specialisation of each of :data:`SEARCH_KERNELS`."""
    return all(kernel._cache._cache_file._load_index() for kernel in SEARCH_KERNELS)


def compile_features(size: int) -> None:
    """Compute the engine's feature planes (``alphago49``) of an empty ``size`` board: the features' kernels,
    the ladders' among them, go to numba's cache (with the few board kernels they call)."""
    features.planes(Board(size), "alphago49")


def compile_search(size: int, rollout: bool = True) -> None:
    """Run the search's kernels once on ``size``: a 32-visit search with uniform priors and a constant value, and
    rollout ownership, with AlphaGo's rollout policy (``rollout``) or uniform playouts, as the engine's search
    calls them; their compiled code goes to numba's cache."""
    policy = ro.RolloutPolicy.load() if rollout else None
    rollouts = mcts.Rollouts(policy, threads=2)
    search = mcts.MCTS(mcts.UniformEvaluator(size, value=0.0),
                       mcts.SearchConfig(batch_size=8, max_nodes=10_000, seed=0), rollouts)
    board = Board(size, 7.5)
    centre = size // 2
    board.play((centre, centre))
    board.play((centre, centre - 1))
    search.set_root(board)
    search.search(visits=32, stop_when_decided=True)
    rollouts.ownership(board, 2)


def start(size: int, rollout: bool = True) -> subprocess.Popen:
    """Start ``python -m gogame.warmup`` for ``size`` in a process of its own, in a session of its own: where the
    kernel shares the CPU between sessions first (Linux's autogroup), the compile then takes no share from this
    process. It is ended, if still running, when this one exits; its stdout and stderr are pipes: its stdout's
    first line is :data:`FEATURES_DONE` once the features' kernels are cached (:func:`wait_for_features`), then
    read both with ``communicate``."""
    package_root = str(Path(__file__).resolve().parent.parent)  # the same gogame, however this one was found
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    argv = [sys.executable, "-m", "gogame.warmup", str(size)] + ([] if rollout else ["--uniform"])
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    atexit.register(lambda: process.poll() is None and process.kill())
    return process


def wait_for_features(process: subprocess.Popen) -> bool:
    """Wait until the second process ``process`` (:func:`start`) has the features' kernels in the cache; False
    when it ended without saying so."""
    return process.stdout.readline().strip() == FEATURES_DONE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gogame.warmup",
                                     description="Compile the features' numba kernels, then the search's, "
                                                 "into numba's cache.")
    parser.add_argument("size", type=int, choices=range(coords.MIN_SIZE, coords.MAX_SIZE + 1), metavar="SIZE")
    parser.add_argument("--uniform", action="store_true", help="uniform playouts instead of the rollout policy")
    args = parser.parse_args(argv)
    os.nice(NICENESS)
    compile_features(args.size)
    print(FEATURES_DONE, flush=True)
    compile_search(args.size, rollout=not args.uniform)
    return 0


if __name__ == "__main__":
    sys.exit(main())
