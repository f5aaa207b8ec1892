"""Replay every game of a corpus through the Board and check it against sgfmill.

Run: ``python -m training.bench.replay ../shared/data/*.tar.xz [--workers 2]``.
Every recorded move must be legal (simple ko, as records are replayed) and
the stones after every move must equal those of sgfmill's independent board.
Prints games, moves, disagreements (with the first few named) and the rate.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from collections import Counter
from itertools import islice

import numpy as np
from sgfmill import boards
from tqdm import tqdm

from gogame.board import IllegalMove
from training.data.corpus import iter_sgf, parse_games


def check_game(name: str, data: bytes) -> tuple[str, int, str | None]:
    """``(name, moves, problem or None)`` for one SGF file (its first game)."""
    try:
        game = next(parse_games([(name, data)]))[1]
    except StopIteration:
        return name, 0, "unparsable"
    oracle = boards.Board(game.size)
    black, white = game.setup
    oracle.apply_setup(black, white, ())
    colour_of = {"b": 1, "w": -1, None: 0}
    moves = 0
    try:
        for board, colour, move in game.replay():
            expected = np.array([[colour_of[v] for v in row] for row in oracle.board], np.int8)
            if not (board.stones() == expected).all():
                return name, moves, f"stones differ before move {moves + 1}"
            if move is not None:
                oracle.play(move[0], move[1], colour.lower())
            moves += 1
    except IllegalMove as exc:
        return name, moves, str(exc)
    return name, moves, None


def _check(item: tuple[str, bytes]) -> tuple[str, int, str | None]:
    return check_game(*item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--workers", type=int, default=mp.cpu_count())
    parser.add_argument("--max-games", type=int, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    totals: Counter[str] = Counter()
    problems: list[tuple[str, str]] = []
    with mp.get_context("spawn").Pool(args.workers) as pool, tqdm(unit="game", mininterval=5) as bar:
        for name, moves, problem in pool.imap_unordered(_check, islice(iter_sgf(args.sources), args.max_games), 64):
            totals["games"] += 1
            totals["moves"] += moves
            if problem is not None:
                problems.append((name, problem))
            bar.update()
            if totals["games"] % 500 == 0:
                bar.set_postfix(moves=totals["moves"], disagreements=len(problems), refresh=False)
    elapsed = time.perf_counter() - start
    print(f"{totals['games']} games, {totals['moves']} moves, {len(problems)} disagreements, "
          f"{elapsed:.0f} s ({totals['games'] / elapsed:.0f} games/s)")
    for name, problem in problems[:20]:
        print(f"  {name}: {problem}")


if __name__ == "__main__":
    main()
