"""Feature speed benchmark: the 48 AlphaGo planes of real 19x19 positions, kernel against a plain reference.

Run: ``taskset -c 0 python -m training.bench.features [--games 300] [--reference-every 100] [--repeat 3]``.
It replays the first ``--games`` games of a 19x19 archive (professional games by
default) and times, for the position before every move, a call of
:func:`gogame.features.compute_alphago` into a preallocated array and one of
:func:`gogame.features.planes` (allocation included), each the fastest of
``--repeat`` calls, which discounts other processes on a shared machine (the
load average is printed). Times are per position as seen from Python, so they
include a numba call's fixed cost, shown on its own row.

Every ``--reference-every``-th position is also computed by the reference
written here: plain Python and numpy plane by plane, each legal move played on
a copy of the board (capture size, self-atari, liberties after), and ladders
read by playing them out on copies with no node budget. Its planes are
compared with the kernel's at those positions.
"""

from __future__ import annotations

import argparse
import os
import time
from itertools import islice
from pathlib import Path

import numba as nb
import numpy as np

from gogame import coords, fastboard as fb
from gogame import features
from gogame.board import Board, IllegalMove
from training.data.corpus import read_games

DEFAULT_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "pro19.tar.xz"  # ../shared/data


# -- the reference --------------------------------------------------------------------------


def _liberties(b: fb.FastBoard, p: int) -> set[int]:
    return {int(e) for q in fb.chain_stones(b, p) for e in fb.neighbours(b, int(q)) if b.colour[e] == fb.EMPTY}


def _played(b: fb.FastBoard, p: int) -> fb.FastBoard:
    child = fb.copy_board(b)
    fb.play(child, p, int(child.meta[fb.M_TO_MOVE]))
    return child


def _ladder_captured(b: fb.FastBoard, prey: int, depth: int) -> bool:
    """Is the chain through ``prey`` captured by ladder? Full reading, same depth limit as the kernel."""
    if depth + 1 >= features.LADDER_DEPTH:
        return False
    pc = int(b.colour[prey])
    libs = sorted(_liberties(b, prey))
    if b.meta[fb.M_TO_MOVE] != pc:  # attacker to move
        if len(libs) >= 3:
            return False
        return any(
            fb.is_legal(b, a, 3 - pc) and (len(libs) == 1 or _ladder_captured(_played(b, a), prey, depth + 1))
            for a in libs
        )
    tries = list(libs)
    for q in fb.chain_stones(b, prey):
        for r in fb.neighbours(b, int(q)):
            if b.colour[r] == 3 - pc and b.libs[b.head[r]] == 1:
                tries += sorted(_liberties(b, int(r)))
    return all(
        not fb.is_legal(b, m, pc) or _ladder_captured(_played(b, m), prey, depth + 1) for m in dict.fromkeys(tries)
    )


def reference_planes(board: Board) -> np.ndarray:
    """The ``alphago48`` planes, straightforwardly: numpy for the stone planes, copy-and-play for the rest."""
    f = board.fast
    size = board.size
    c = int(f.meta[fb.M_TO_MOVE])
    x = np.zeros((48, size, size), np.uint8)
    grid = coords.unpad(f.colour, size)
    stones = (grid == fb.BLACK) | (grid == fb.WHITE)
    x[0], x[1], x[2], x[3] = grid == c, grid == 3 - c, grid == fb.EMPTY, 1
    turns = np.clip(f.meta[fb.M_MOVES] - coords.unpad(f.placed, size), 1, 8)
    libs = np.clip(coords.unpad(f.libs[f.head], size), 1, 8)
    for k in range(1, 9):
        x[3 + k] = stones & (turns == k)
        x[11 + k] = stones & (libs == k)
    for row, col in zip(*np.nonzero(grid == fb.EMPTY)):
        p = board._index((int(row), int(col)))
        if not fb.is_legal(f, p, c):
            continue
        after = fb.copy_board(f)
        captured = fb.play(after, p, c)
        h = after.head[p]
        x[20 + min(captured, 7), row, col] = 1
        if after.libs[h] == 1:
            x[28 + min(after.chain_size[h], 8) - 1, row, col] = 1
        x[36 + min(after.libs[h], 8) - 1, row, col] = 1
        nbrs = [int(q) for q in fb.neighbours(f, p)]
        prey = {int(f.head[q]) for q in nbrs if f.colour[q] == 3 - c and f.libs[f.head[q]] == 2}
        x[44, row, col] = any(_ladder_captured(after, q, 1) for q in prey)
        in_atari = {int(f.head[q]) for q in nbrs if f.colour[q] == c and f.libs[f.head[q]] == 1}
        for q in nbrs:
            if f.colour[q] == 3 - c and f.libs[f.head[q]] == 1:
                for s in fb.chain_stones(f, q):
                    beside = [int(r) for r in fb.neighbours(f, int(s))]
                    in_atari |= {int(f.head[r]) for r in beside if f.colour[r] == c and f.libs[f.head[r]] == 1}
        x[45, row, col] = any(not _ladder_captured(after, q, 1) for q in in_atari)
        x[46, row, col] = not fb.is_eyelike(f, p, c)
    return x


# -- timing ----------------------------------------------------------------------------------


@nb.njit
def _empty_call(b: fb.FastBoard, out: np.ndarray, with_colour_plane: bool) -> int:
    """A numba call with compute_alphago's arguments that does nothing: the fixed cost of a call."""
    return out.shape[0]


def _timed(fn, *args, repeat: int = 1) -> tuple[float, object]:
    """Microseconds of the fastest of ``repeat`` calls ``fn(*args)``, and its result."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        result = fn(*args)
        best = min(best, (time.perf_counter_ns() - start) / 1000)
    return best, result


def run(archive: Path, games: int, reference_every: int, repeat: int) -> None:
    out = np.empty((48, 19, 19), np.uint8)
    warm = Board(19)
    features.compute_alphago(warm.fast, out, False)
    _empty_call(warm.fast, out, False)
    times: dict[str, list[float]] = {"compute_alphago": [], "planes()": [], "empty numba call": [], "reference": []}
    kernel_at_reference: list[float] = []
    mismatched = np.zeros(48, np.int64)
    positions = 0
    started = time.perf_counter()
    for _, game in islice(read_games(archive, size=19), games):
        board = Board(19, game.komi, superko="none")
        board.setup(*game.setup)
        for colour, move in game.moves:
            board.to_move = colour
            t, _ = _timed(features.compute_alphago, board.fast, out, False, repeat=repeat)
            times["compute_alphago"].append(t)
            times["planes()"].append(_timed(features.planes, board, repeat=repeat)[0])
            times["empty numba call"].append(_timed(_empty_call, board.fast, out, False, repeat=repeat)[0])
            if positions % reference_every == 0:
                t_ref, ref = _timed(reference_planes, board)
                times["reference"].append(t_ref)
                kernel_at_reference.append(t)
                mismatched += (ref != out).any(axis=(1, 2))
            positions += 1
            try:
                board.play(move, colour)
            except IllegalMove:
                break
    n_ref = len(times["reference"])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{positions} positions from {games} games of {archive.name}, {time.perf_counter() - started:.0f} s,"
          f" fastest of {repeat} calls per position, load average {load} on {os.cpu_count()} cores")
    print(f"{'':18} {'positions':>9} {'median us':>10} {'p90 us':>8} {'mean us':>8} {'positions/s':>12}")
    for name, ts in times.items():
        a = np.array(ts)
        median, p90, mean = np.median(a), np.percentile(a, 90), a.mean()
        print(f"{name:18} {a.size:9d} {median:10.1f} {p90:8.1f} {mean:8.1f} {1e6 / mean:12,.0f}")
    ratio = np.median(np.array(times["reference"]) / np.array(kernel_at_reference))
    print(f"median speed-up of compute_alphago over the reference, position by position: {ratio:,.0f}x")
    if mismatched.any():
        print("planes differing from the reference (plane: positions):",
              ", ".join(f"{i}: {k}" for i, k in enumerate(mismatched) if k))
    else:
        print(f"all 48 planes identical to the reference at all {n_ref} reference positions")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="19x19 SGF archive or folder")
    parser.add_argument("--games", type=int, default=300, help="games to replay (default 300)")
    parser.add_argument("--reference-every", type=int, default=100, help="run the reference on every n-th position")
    parser.add_argument("--repeat", type=int, default=3, help="time each position this many times, keep the fastest")
    args = parser.parse_args(argv)
    run(args.archive, args.games, args.reference_every, args.repeat)


if __name__ == "__main__":
    main()
