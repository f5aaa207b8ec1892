"""The numba kernels pinned to plain, obviously correct Python."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gogame import Board
from gogame import fastboard as fb


def recount(board: Board) -> dict[tuple[int, int], tuple[frozenset, int]]:
    """Flood fill every chain from scratch: point -> (chain points, liberty count)."""
    grid = board.stones()
    size = board.size
    out = {}
    for r in range(size):
        for c in range(size):
            if grid[r, c] == 0 or (r, c) in out:
                continue
            chain, libs, todo = {(r, c)}, set(), [(r, c)]
            while todo:
                y, x = todo.pop()
                for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= ny < size and 0 <= nx < size:
                        if grid[ny, nx] == 0:
                            libs.add((ny, nx))
                        elif grid[ny, nx] == grid[r, c] and (ny, nx) not in chain:
                            chain.add((ny, nx))
                            todo.append((ny, nx))
            for p in chain:
                out[p] = (frozenset(chain), len(libs))
    return out


def check_invariants(board: Board) -> None:
    f = board.fast
    expected = recount(board)
    for point, (chain, libs) in expected.items():
        assert set(board.chain(point)) == chain
        assert board.liberties(point) == libs, point
        assert f.chain_size[f.head[board._index(point)]] == len(chain)
    key = 0
    for (r, c), v in np.ndenumerate(board.stones()):
        if v:
            key ^= int(f.zobrist[fb.BLACK if v == 1 else fb.WHITE, board._index((r, c))])
    assert board.zobrist_hash == key
    n = int(f.meta[fb.M_NEMPTY])
    empties = set(int(p) for p in f.empties[:n])
    assert empties == set(int(p) for p in np.flatnonzero(f.colour == fb.EMPTY))
    assert all(f.empty_pos[p] == i for i, p in enumerate(f.empties[:n]))


@settings(max_examples=40, deadline=None)
@given(size=st.sampled_from([5, 7, 9]), choices=st.lists(st.integers(0, 10**6), min_size=1, max_size=160))
def test_incremental_chains_hash_and_empties_match_a_recount(size, choices):
    board = Board(size)
    for choice in choices:
        moves = board.legal_moves()
        if not moves or board.is_over():
            break
        board.play(moves[choice % len(moves)])
        check_invariants(board)


@settings(max_examples=25, deadline=None)
@given(choices=st.lists(st.integers(0, 10**6), min_size=2, max_size=120))
def test_copy_and_undo_are_faithful(choices):
    board = Board(7)
    trail = []
    for choice in choices:
        moves = board.legal_moves() + ["pass"]
        trail.append((board.stones().copy(), board.zobrist_hash, board.to_move, board.copy()))
        board.play(moves[choice % len(moves)])
        if board.is_over():
            break
    for stones, key, to_move, copy in reversed(trail):
        board.undo()
        assert (board.stones() == stones).all() and board.zobrist_hash == key and board.to_move == to_move
        assert (copy.stones() == stones).all() and copy.zobrist_hash == key
        check_invariants(board)


@settings(max_examples=30, deadline=None)
@given(choices=st.lists(st.integers(0, 10**6), min_size=1, max_size=100), suicide=st.booleans())
def test_hash_after_predicts_the_hash_of_every_legal_move(choices, suicide):
    board = Board(6, allow_suicide=suicide)
    for choice in choices:
        c = fb.BLACK if board.to_move == "B" else fb.WHITE
        candidates = [int(p) for p in np.flatnonzero(board.fast.colour == fb.EMPTY) if fb.is_legal(board.fast, int(p), c)]
        for p in candidates:
            trial = fb.copy_board(board.fast)
            fb.play(trial, p, c)
            assert fb.hash_after(board.fast, p, c) == trial.meta[fb.M_HASH]
        moves = board.legal_moves()
        if not moves:
            break
        board.play(moves[choice % len(moves)])


@pytest.mark.parametrize(
    "diagram,point,colour,eye",
    [
        # centre eye with no opponent diagonals, and with one
        (". X .\nX . X\n. X .", (1, 1), fb.BLACK, True),
        ("O X .\nX . X\n. X .", (1, 1), fb.BLACK, True),
        ("O X .\nX . X\n. X O", (1, 1), fb.BLACK, False),
        # an empty neighbour: not an eye
        (". X .\nX . .\n. X .", (1, 1), fb.BLACK, False),
        # corner and edge: any opponent diagonal spoils it
        ("X . .\n. X .\n. . .", (0, 0), fb.BLACK, False),  # A1 of a 3x3: neighbours A2, B1 empty
    ],
)
def test_is_eyelike(diagram, point, colour, eye):
    board = Board.from_diagram(diagram)
    assert fb.is_eyelike(board.fast, board._index(point), colour) == eye


def test_corner_eye_rules():
    board = Board.from_diagram(
        """
        . . . .
        X X . .
        . X . .
        X X . .
        """
    )
    assert fb.is_eyelike(board.fast, board._index((1, 0)), fb.BLACK)  # A2: diagonal B1/B3 black
    board = Board.from_diagram(
        """
        . . . .
        X O . .
        . X . .
        X X . .
        """
    )
    assert not fb.is_eyelike(board.fast, board._index((1, 0)), fb.BLACK)  # on the edge one bad diagonal spoils it


def test_playouts_end_with_no_acceptable_move_for_either_side():
    start = fb.new_board(9)
    for seed in range(20):
        fb.seed(seed)
        b = fb.copy_board(start)
        fb.playout(b, 3 * 81)
        assert b.meta[fb.M_PASSES] == 2
        for c in (fb.BLACK, fb.WHITE):
            for p in np.flatnonzero(b.colour == fb.EMPTY):
                assert fb.is_eyelike(b, int(p), c) or not fb.is_legal(b, int(p), c)
        black, white = fb.area_counts(b, np.zeros(b.colour.size, np.bool_))
        assert black + white <= 81


def test_rebuild_equals_incremental_state():
    board = Board(9)
    for move in "E5 D5 D4 C4 E4 D3 C5 E6 F5 B5".split():
        board.play(move)
    rebuilt = fb.copy_board(board.fast)
    fb.rebuild(rebuilt)
    assert rebuilt.meta[fb.M_HASH] == board.fast.meta[fb.M_HASH]
    stones = np.flatnonzero(fb.copy_board(board.fast).colour == fb.BLACK)
    for p in stones:
        assert rebuilt.libs[rebuilt.head[p]] == board.fast.libs[board.fast.head[p]]
        assert rebuilt.chain_size[rebuilt.head[p]] == board.fast.chain_size[board.fast.head[p]]
