"""Time use of a move: the visits a time budget buys, and what the early stop saves at a visit budget.

Run: ``python -m training.bench.genmove SGF... [--size 9] [--weights NET] [--threads 2] [--moves 8 20 34] [--budget 5]
[--visits 10000]``.
Positions are the boards after each of ``--moves`` in each record (records that end before a move number
are skipped). For each position, on the shipped engine for ``--size`` or the net of ``--weights`` (the GTP engine's
defaults: 2 threads, batches of 16; ``--threads 1`` as a match stream that has one core) and from a fresh tree:

- ``--budget`` seconds of search: the root visits reached, so that a time budget can be stated as visits;
- ``genmove`` at ``--visits`` with the early stop and without it, seeded alike: the two searches run the same
  batches until the early one stops, so they must play the same move; reports how many did, and the seconds.

Medians and totals close the report. Either part can be left out with ``--budget 0`` or ``--visits 0``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from gogame import sgf
from gogame.api import Engine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="SGF files to take positions from")
    parser.add_argument("--size", type=int, default=9)
    parser.add_argument("--moves", type=int, nargs="+", default=[8, 20, 34], help="move numbers of the positions")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per search for the visits count")
    parser.add_argument("--visits", type=int, default=10_000, help="visit budget of the early-stop comparison")
    parser.add_argument("--weights", default=None, help="a net file or folder (default: the shipped engine's)")
    parser.add_argument("--threads", type=int, default=2, help="search threads, as gogame-gtp --threads")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    boards = []
    for path in args.records:
        game = sgf.load(path)[0]
        played = len(game.moves_of(game.main_line()))
        boards += [(path, n, game.board_at(n)) for n in args.moves if n < played]
    print("command: python -m training.bench.genmove " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"{len(boards)} positions from {len(args.records)} records")

    def engine(**options) -> Engine:
        return Engine.load(args.weights, size=args.size, threads=args.threads, batch_size=16, seed=args.seed, **options)

    engine().analyze(boards[0][2], visits=256)  # warm-up: numba kernels, torch
    reached, full_s, early_s, same = [], [], [], 0
    for path, n, board in boards:
        line = f"{path} move {n}:"
        if args.budget > 0:
            reached.append(engine().analyze(board, visits=10**9, seconds=args.budget).visits)
            line += f" {reached[-1]} visits in {args.budget:g} s;"
        if args.visits > 0:
            moves = []
            for early_stop, seconds in ((False, full_s), (True, early_s)):
                player = engine(visits=args.visits, early_stop=early_stop)
                start = time.perf_counter()
                moves.append(player.genmove(board))
                seconds.append(time.perf_counter() - start)
            same += moves[0] == moves[1]
            line += f" {moves[0]} in {full_s[-1]:.2f} s, early stop {moves[1]} in {early_s[-1]:.2f} s"
        print(line, flush=True)
    if reached:
        print(f"visits in {args.budget:g} s: median {statistics.median(reached):.0f}, "
              f"min {min(reached)}, max {max(reached)}")
    if full_s:
        print(f"genmove at {args.visits} visits: same move {same}/{len(full_s)}; median {statistics.median(full_s):.2f} s "
              f"full, {statistics.median(early_s):.2f} s early stop; total {sum(full_s):.1f} s vs "
              f"{sum(early_s):.1f} s ({sum(early_s) / sum(full_s):.2f}x)")


if __name__ == "__main__":
    main()
