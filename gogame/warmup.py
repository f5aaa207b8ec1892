"""Compiling the search's numba kernels ahead, in a second process, into numba's on-disk cache.

numba compiles a kernel at its first call, in one thread (compiling holds the GIL and numba's compiler lock):
on an empty cache, the first start after an install, the board's, the features' and the search's kernels take
over a minute of one core, the search's (tree and rollout kernels) about two thirds of it. The GTP engine's
warm-up (:class:`gtp.session.EnginePlayer`) compiles the board's and the features' kernels itself, which is
what the policy net's move needs, while ``python -m gogame.warmup SIZE`` (:func:`start`) compiles the search's
on the other core: a small search with uniform priors and rollout ownership (:func:`compile_search`; no
networks, so no torch), with the argument types of the engine's search. A kernel a process finds in the cache
is loaded from it instead of compiled (numba checks the source's time stamp), so the engine's own search, once
the second process is done, loads in seconds whatever it compiled.
"""

from __future__ import annotations

import argparse
import atexit
import os
import subprocess
import sys
from pathlib import Path

from gogame import coords, mcts
from gogame import rollout as ro
from gogame.board import Board

# The search's largest kernels (three quarters of its compile time): cached specialisations of all of them
# mean the second process has nothing to do.
SEARCH_KERNELS = (ro.rollouts_kernel, ro.playout_kernel, mcts.select_batch, mcts.backup_batch)
NICENESS = 5  # the second process yields the CPU to the engine's own warm-up (the policy net's move comes first)


def search_cached() -> bool:
    """Whether numba's cache holds, for the current source, a specialisation of each of :data:`SEARCH_KERNELS`."""
    return all(kernel._cache._cache_file._load_index() for kernel in SEARCH_KERNELS)


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
    process. It is ended, if still running, when this one exits; its stdout and stderr are pipes (read them with
    ``communicate``)."""
    package_root = str(Path(__file__).resolve().parent.parent)  # the same gogame, however this one was found
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    argv = [sys.executable, "-m", "gogame.warmup", str(size)] + ([] if rollout else ["--uniform"])
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    atexit.register(lambda: process.poll() is None and process.kill())
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gogame.warmup",
                                     description="Compile the search's numba kernels into numba's cache.")
    parser.add_argument("size", type=int, choices=range(coords.MIN_SIZE, coords.MAX_SIZE + 1), metavar="SIZE")
    parser.add_argument("--uniform", action="store_true", help="uniform playouts instead of the rollout policy")
    args = parser.parse_args(argv)
    os.nice(NICENESS)
    compile_search(args.size, rollout=not args.uniform)
    return 0


if __name__ == "__main__":
    sys.exit(main())
