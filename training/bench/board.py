"""Board speed benchmark: random playouts per second, and the cost of play and copy.

Run: ``python -m training.bench.board [--seconds 5]``. Everything is measured
side by side in one run, on one core. The baseline is a plain pure-Python
board written here (dict of points, flood fill for liberties), which plays the
same kind of random games (no filling of one's own single-point eyes).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numba as nb
import numpy as np

from gogame import Board, coords, fastboard as fb, random_playouts


class PythonBoard:
    """A straightforward pure-Python board: the benchmark's baseline, not shipped."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.stones: dict[tuple[int, int], int] = {}
        self.ko: tuple[int, int] | None = None

    def neighbours(self, p: tuple[int, int]):
        r, c = p
        for q in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= q[0] < self.size and 0 <= q[1] < self.size:
                yield q

    def chain(self, p: tuple[int, int]) -> tuple[set, set]:
        colour = self.stones[p]
        chain, libs, todo = {p}, set(), [p]
        while todo:
            for q in self.neighbours(todo.pop()):
                v = self.stones.get(q)
                if v is None:
                    libs.add(q)
                elif v == colour and q not in chain:
                    chain.add(q)
                    todo.append(q)
        return chain, libs

    def is_eye(self, p, colour) -> bool:
        if any(self.stones.get(q) != colour for q in self.neighbours(p)):
            return False
        r, c = p
        diagonals = [(r + dr, c + dc) for dr in (-1, 1) for dc in (-1, 1)]
        on_board = [q for q in diagonals if 0 <= q[0] < self.size and 0 <= q[1] < self.size]
        bad = sum(self.stones.get(q) == -colour for q in on_board) + (len(on_board) < 4)
        return bad < 2

    def try_play(self, p, colour) -> bool:
        if p in self.stones or p == self.ko:
            return False
        self.stones[p] = colour
        captured = []
        for q in self.neighbours(p):
            if self.stones.get(q) == -colour:
                chain, libs = self.chain(q)
                if not libs:
                    captured.extend(chain)
                    for s in chain:
                        del self.stones[s]
        chain, libs = self.chain(p)
        if not libs:
            del self.stones[p]
            return False
        self.ko = captured[0] if len(captured) == 1 and len(chain) == 1 and len(libs) == 1 else None
        return True

    def playout(self, rng: random.Random) -> None:
        colour, passes = 1, 0
        points = [(r, c) for r in range(self.size) for c in range(self.size)]
        for _ in range(3 * self.size * self.size):
            empties = [p for p in points if p not in self.stones]
            rng.shuffle(empties)
            for p in empties:
                if not self.is_eye(p, colour) and self.try_play(p, colour):
                    passes = 0
                    break
            else:
                passes += 1
                self.ko = None
                if passes == 2:
                    return
            colour = -colour


def rate(fn, seconds: float) -> tuple[float, int]:
    """Calls per second of fn() over about ``seconds``, and the number of calls."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start), n


@nb.njit(cache=True)
def _numba_play_loop(start: fb.FastBoard, moves: np.ndarray, colours: np.ndarray, reps: int) -> int:
    b = fb.copy_board(start)
    total = 0
    for _ in range(reps):
        fb.copy_into(b, start)
        for i in range(moves.size):
            total += fb.play(b, moves[i], colours[i])
    return total


def playout_rates(size: int, seconds: float) -> dict[str, float]:
    random_playouts(size, 10)
    batches = []
    moves = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        random_playouts(size, 200, seed=len(batches))
        batches.append(200 / (time.perf_counter() - t))
    # moves per game, measured on the same kind of games
    b = fb.new_board(size)
    fb.seed(1)
    for _ in range(50):
        trial = fb.copy_board(b)
        fb.playout(trial, 3 * size * size)
        moves += int(trial.meta[fb.M_MOVES])
    rng = random.Random(0)
    python_rate, _ = rate(lambda: PythonBoard(size).playout(rng), seconds)
    return {
        "numba playouts/s": statistics.median(batches),
        "moves/game": moves / 50,
        "python playouts/s": python_rate,
    }


def per_call_costs(seconds: float) -> dict[str, float]:
    """ns per call of Board.play from Python, fastboard.play inside numba, and Board.copy."""
    game = "Q16 D4 Q3 D17 R5 C15 O17 E3 C3 D3 C4 C6 D2 E2 C2 F3 C7 D6 B6 B5".split()
    board = Board(19)

    def replay():
        b = Board(19)
        for v in game:
            b.play(v)
        return b

    played = replay()
    per_play = 1e9 / (rate(replay, seconds)[0] * len(game))
    per_copy = 1e9 / rate(played.copy, seconds)[0]
    moves = np.array([board._index(coords.from_gtp(v, 19)) for v in game], np.int32)
    colours = np.array([fb.BLACK, fb.WHITE] * (len(game) // 2), np.int32)
    _numba_play_loop(board.fast, moves, colours, 1)
    reps = 20000
    t = time.perf_counter()
    _numba_play_loop(board.fast, moves, colours, reps)
    per_numba = (time.perf_counter() - t) * 1e9 / (reps * len(game))
    return {"Board.play (Python) ns": per_play, "fastboard.play (numba) ns": per_numba, "Board.copy ns": per_copy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    args = parser.parse_args()
    print(f"{'board':>6} {'numba playouts/s':>17} {'python playouts/s':>18} {'ratio':>7} {'moves/game':>11} {'numba moves/s':>14}")
    for size in (9, 19):
        r = playout_rates(size, args.seconds)
        print(
            f"{size:>4}x{size:<1} {r['numba playouts/s']:>17,.0f} {r['python playouts/s']:>18,.1f} "
            f"{r['numba playouts/s'] / r['python playouts/s']:>7,.0f} {r['moves/game']:>11.1f} "
            f"{r['numba playouts/s'] * r['moves/game']:>14,.0f}"
        )
    for name, value in per_call_costs(args.seconds).items():
        print(f"{name:>28}: {value:,.0f}")


if __name__ == "__main__":
    main()
