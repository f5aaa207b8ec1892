"""Feature planes pinned to hand-built positions and to copy-and-play references."""

import functools
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gogame import Board
from gogame import fastboard as fb
from gogame import features as F
from gogame.coords import from_gtp
from tests.shared import shared_archive

REPO = Path(__file__).resolve().parents[1]


CAPTURE = F.plane_slice("alphago48", "capture_size").start
SELF_ATARI = F.plane_slice("alphago48", "self_atari_size").start
LIBS_AFTER = F.plane_slice("alphago48", "liberties_after").start
TURNS = F.plane_slice("alphago48", "turns_since").start
LIBS = F.plane_slice("alphago48", "liberties").start
LADDER_CAPTURE = F.plane_slice("alphago48", "ladder_capture").start
LADDER_ESCAPE = F.plane_slice("alphago48", "ladder_escape").start
SENSIBLE = F.plane_slice("alphago48", "sensibleness").start
MOVE_PLANES = slice(CAPTURE, SENSIBLE + 1)


def at(board: Board, vertex: str) -> tuple[int, int]:
    return from_gtp(vertex, board.size)


def points(plane: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in np.argwhere(plane)}


def legal_points(board: Board) -> list[tuple[int, int]]:
    c = int(board.fast.meta[fb.M_TO_MOVE])
    size = board.size
    return [(r, col) for r in range(size) for col in range(size) if fb.is_legal(board.fast, board._index((r, col)), c)]


# -- references: copy and play ---------------------------------------------------


def after_move(board: Board, point: tuple[int, int]) -> tuple[int, int, int]:
    """(captured, liberties, stones) of the mover's chain, by playing on a copy."""
    trial = fb.copy_board(board.fast)
    p = board._index(point)
    captured = fb.play(trial, p, int(board.fast.meta[fb.M_TO_MOVE]))
    h = trial.head[p]
    return int(captured), int(trial.libs[h]), int(trial.chain_size[h])


def liberty_set(b: fb.FastBoard, p: int) -> list[int]:
    return sorted({int(e) for q in fb.chain_stones(b, p) for e in fb.neighbours(b, int(q)) if b.colour[e] == fb.EMPTY})


def played(b: fb.FastBoard, p: int) -> fb.FastBoard:
    child = fb.copy_board(b)
    fb.play(child, p, int(child.meta[fb.M_TO_MOVE]))
    return child


def ref_captured(b: fb.FastBoard, prey: int, depth: int) -> bool:
    """Plain recursive ladder reading with the kernel's depth limit and no node budget."""
    if depth + 1 >= F.LADDER_DEPTH:
        return False
    pc = int(b.colour[prey])
    libs = liberty_set(b, prey)
    if b.meta[fb.M_TO_MOVE] != pc:
        if len(libs) >= 3:
            return False
        return any(
            fb.is_legal(b, a, 3 - pc) and (len(libs) == 1 or ref_captured(played(b, a), prey, depth + 1)) for a in libs
        )
    moves = list(libs)
    for q in fb.chain_stones(b, prey):
        for r in fb.neighbours(b, int(q)):
            if b.colour[r] == 3 - pc and b.libs[b.head[r]] == 1:
                moves += liberty_set(b, int(r))
    return all(not fb.is_legal(b, m, pc) or ref_captured(played(b, m), prey, depth + 1) for m in dict.fromkeys(moves))


def ref_ladders(board: Board, point: tuple[int, int]) -> tuple[bool, bool]:
    """(ladder capture, ladder escape) at a legal point, by copy-and-play reading."""
    b = board.fast
    p = board._index(point)
    c = int(b.meta[fb.M_TO_MOVE])
    child = played(b, p)
    nbrs = [int(q) for q in fb.neighbours(b, p)]
    prey = {int(b.head[q]) for q in nbrs if b.colour[q] == 3 - c and b.libs[b.head[q]] == 2}
    capture = any(ref_captured(child, h, 1) for h in prey)
    in_atari = {int(b.head[q]) for q in nbrs if b.colour[q] == c and b.libs[b.head[q]] == 1}
    for q in nbrs:
        if b.colour[q] == 3 - c and b.libs[b.head[q]] == 1:
            for s in fb.chain_stones(b, q):
                for r in fb.neighbours(b, int(s)):
                    if b.colour[r] == c and b.libs[b.head[r]] == 1:
                        in_atari.add(int(b.head[r]))
    escape = any(not ref_captured(child, h, 1) for h in in_atari)
    return capture, escape


def check_move_planes(board: Board, ladders: bool = False) -> None:
    """Every move-dependent plane at every point against the references."""
    x = F.planes(board)
    legal = legal_points(board)
    mask = np.zeros((board.size, board.size), bool)
    for point in legal:
        mask[point] = True
        captured, libs, stones = after_move(board, point)
        expected = np.zeros(F.FEATURE_SETS["alphago48"], np.uint8)
        expected[CAPTURE + min(captured, 7)] = 1
        expected[LIBS_AFTER + min(libs, 8) - 1] = 1
        if libs == 1:
            expected[SELF_ATARI + min(stones, 8) - 1] = 1
        expected[SENSIBLE] = not fb.is_eyelike(board.fast, board._index(point), int(board.fast.meta[fb.M_TO_MOVE]))
        got = x[:, point[0], point[1]]
        assert (got[CAPTURE:LADDER_CAPTURE] == expected[CAPTURE:LADDER_CAPTURE]).all(), (point, got, expected)
        assert got[SENSIBLE] == expected[SENSIBLE], point
        if ladders:
            assert (bool(got[LADDER_CAPTURE]), bool(got[LADDER_ESCAPE])) == ref_ladders(board, point), point
    assert not x[MOVE_PLANES][:, ~mask].any()


# -- hand-built positions ----------------------------------------------------------

LADDER = """
. . . . . . . . .
. . . . . . . . .
. . . . . . . . .
. . . . . . . . .
. . . . . . . . .
. . X O . . . . .
. . . X X . . . .
. . . . . . . . .
. . . . . . . . .
"""


def with_stones(diagram: str, board_size: int = 9, **vertices: str) -> str:
    """``diagram`` with stones added: ``with_stones(d, X="D5", O="G7 H8")``."""
    rows = [line.split() for line in diagram.strip().splitlines()]
    for colour, where in vertices.items():
        for vertex in where.split():
            row, col = from_gtp(vertex, board_size)
            rows[board_size - 1 - row][col] = colour
    return "\n".join(" ".join(r) for r in rows)


@pytest.mark.parametrize("breaker", ["", "G7"])
def test_ladder_capture_works_unless_broken(breaker):
    # White D4 has liberties D5 and E4; black D5 chases it up and right to the edge.
    board = Board.from_diagram(with_stones(LADDER, O=breaker))
    x = F.planes(board)
    assert points(x[LADDER_CAPTURE]) == (set() if breaker else {at(board, "D5")})
    assert not x[LADDER_CAPTURE][at(board, "E4")]  # the other atari lets white out at once
    assert not x[LADDER_ESCAPE].any()
    check_move_planes(board, ladders=True)


@pytest.mark.parametrize("breaker", ["", "G7"])
def test_ladder_escape_fails_unless_broken(breaker):
    board = Board.from_diagram(with_stones(LADDER, X="D5", O=breaker), to_move="W")
    assert board.liberties("D4") == 1
    x = F.planes(board)
    assert points(x[LADDER_ESCAPE]) == ({at(board, "E4")} if breaker else set())
    assert x[LIBS_AFTER + 1][at(board, "E4")]  # two liberties after the extension either way
    check_move_planes(board, ladders=True)


def test_ladder_escape_by_capturing():
    # White E5 is in atari at E4, black F5 in atari at F4: capturing F5 saves E5, as does extending.
    board = Board.from_diagram(
        """
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . X O . . .
        . . . X O X O . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        """,
        to_move="W",
    )
    x = F.planes(board)
    assert points(x[LADDER_ESCAPE]) == {at(board, "F4"), at(board, "E4")}
    assert x[CAPTURE + 1][at(board, "F4")]
    check_move_planes(board, ladders=True)


def test_capture_sizes_and_liberties_after_a_capture():
    board = Board.from_diagram(
        """
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        X X X X X X X X .
        O O O O O O O O .
        X X X X X X X X .
        . . . . . . . . .
        . . . . . X X . .
        O X . . X O O . .
        """
    )
    x = F.planes(board)
    for vertex, captured in (("A2", 1), ("H1", 2), ("J5", 7)):
        assert x[CAPTURE + captured][at(board, vertex)], vertex
        assert x[LIBS_AFTER + 3 - 1][at(board, vertex)], vertex  # the captured stone next to it counts
    assert x[CAPTURE].sum() == len(legal_points(board)) - 3
    check_move_planes(board)


def test_capturing_two_chains_adds_their_sizes():
    board = Board.from_diagram(
        """
        . . . . . . .
        . . X . X . .
        . X O . O X .
        . . X . X . .
        . . . . . . .
        . . . . . . .
        . . . . . . .
        """
    )
    x = F.planes(board)
    assert x[CAPTURE + 2][at(board, "D5")]
    assert x[LIBS_AFTER + 4 - 1][at(board, "D5")]
    check_move_planes(board)


def test_self_atari_sizes_and_eye_filling():
    board = Board.from_diagram(
        """
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        O O O . . O . X X
        . X . O . . O X .
        """
    )
    x = F.planes(board)
    assert points(x[SELF_ATARI + 1]) == {at(board, "A1"), at(board, "C1")}  # joining B1: two stones, one liberty
    assert points(x[SELF_ATARI]) == {at(board, "F1")}
    assert not x[SELF_ATARI + 2 : SELF_ATARI + 8].any()
    j1 = at(board, "J1")
    assert x[CAPTURE][j1] and x[LIBS_AFTER + 3 - 1][j1]  # filling the own eye is legal (G2, H3, J3) ...
    assert not x[SENSIBLE][j1]  # ... but not sensible
    assert x[SENSIBLE].sum() == len(legal_points(board)) - 1
    check_move_planes(board)


def test_ko_point_gets_no_move_planes():
    board = Board.from_diagram(
        """
        . . . . .
        . X O . .
        X O . O .
        . X O . .
        . . . . .
        """
    )
    board.play("C3")  # takes B3: white may not retake at once
    assert board.ko_point == at(board, "B3")
    x = F.planes(board)
    b3 = at(board, "B3")
    assert x[2][b3] and not x[MOVE_PLANES][:, b3[0], b3[1]].any()
    assert x[LIBS][at(board, "C3")]  # the capturing stone has one liberty
    check_move_planes(board)


def test_turns_since_and_liberty_buckets():
    board = Board(9)
    moves = "A1 C1 E1 G1 J1 A3 C3 E3 G3 J3".split()
    for move in moves:
        board.play(move)
    x = F.planes(board)
    for i, move in enumerate(moves):
        turns = len(moves) - i
        assert x[TURNS + min(turns, 8) - 1][at(board, move)], move
    assert x[TURNS].sum() == 1 and x[TURNS + 7].sum() == 3
    assert x[LIBS + 1][at(board, "A1")] and x[LIBS + 2][at(board, "C1")] and x[LIBS + 3][at(board, "E3")]
    stones = board.stones() != 0
    assert (x[TURNS : LIBS + 8].sum(axis=0) == 2 * stones).all()
    board = Board.from_diagram(with_stones(LADDER, X="C5 D5 E5 F5 G5"))
    assert F.planes(board)[LIBS + 7][at(board, "E5")]  # 5 stones in the open: >= 8 liberties


def test_stone_colour_planes_follow_the_side_to_move():
    board = Board.from_diagram(LADDER)
    black = F.planes(board, "alphago49")
    board.to_move = "W"
    white = F.planes(board, "alphago49")
    assert (black[0] == (board.stones() == 1)).all() and (black[1] == (board.stones() == -1)).all()
    assert (white[0] == black[1]).all() and (white[1] == black[0]).all()
    assert (black[2] == (board.stones() == 0)).all() and black[3].all() and not black[47].any()
    assert black[48].all() and not white[48].any()


@pytest.mark.parametrize("name", list(F.FEATURE_SETS))
def test_plane_counts_and_dtypes(name):
    board = Board.from_diagram(LADDER)
    x = F.planes(board, name)
    assert x.shape == (F.FEATURE_SETS[name], 9, 9) and x.dtype == np.uint8
    assert x.max() <= 1
    batch = F.planes_batch([board, Board(9)], name)
    assert batch.shape == (2, F.FEATURE_SETS[name], 9, 9) and batch.dtype == np.uint8
    assert (batch[0] == x).all() and (batch[1] == F.planes(Board(9), name)).all()


def test_the_recursive_ladder_reader_has_one_signature():
    # numba's cache crashes on reloading a recursive function compiled for several signatures
    # (numba issue 6713). Checked when the module compiles afresh, as after any edit; a run that
    # loads the kernels from the cache sees no signatures at all.
    check_move_planes(Board.from_diagram(with_stones(LADDER, X="D5"), to_move="W"), ladders=True)
    check_move_planes(Board.from_diagram(LADDER), ladders=True)
    assert len(F._ladder_captured.signatures) <= 1


LADDER_KERNELS = ("_chain_liberties", "_play_local", "_ladder_captured", "_read_ladder", "_neighbour_chains",
                  "_ladder_capture", "_ladder_escape")


def test_each_ladder_kernel_compiles_for_one_signature(tmp_path):
    """On an empty cache (a fresh NUMBA_CACHE_DIR, in a process of its own) the ladder kernels are each compiled
    once: a constant or an int32 argument would make numba compile a kernel again, seconds of the first start."""
    script = f"""
from tests.test_features import LADDER, LADDER_KERNELS, with_stones
from gogame import Board, features as F
for board in (Board.from_diagram(LADDER), Board.from_diagram(with_stones(LADDER, X="D5"), to_move="W")):
    F.planes(board)
print(" ".join(str(len(getattr(F, name).signatures)) for name in LADDER_KERNELS))
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=600, check=True).stdout
    assert dict(zip(LADDER_KERNELS, out.split())) == {name: "1" for name in LADDER_KERNELS}


def test_feature_set_table():
    assert F.FEATURE_SETS == {"alphago48": 48, "alphago49": 49, "zero17": 17}
    assert F.plane_slice("alphago48", "turns_since") == slice(4, 12)
    assert F.plane_slice("alphago48", "ladder_capture") == slice(44, 45)
    assert F.plane_slice("alphago49", "player_colour") == slice(48, 49)
    for family, start in (("stone_colour", F._OWN), ("ones", F._ONES), ("turns_since", F._TURNS),
                          ("liberties", F._LIBS), ("capture_size", F._CAPTURE), ("self_atari_size", F._SELF_ATARI),
                          ("liberties_after", F._LIBS_AFTER), ("ladder_capture", F._LADDER_CAPTURE),
                          ("ladder_escape", F._LADDER_ESCAPE), ("sensibleness", F._SENSIBLE)):
        assert F.plane_slice("alphago49", family).start == start, family
    assert F.plane_slice("alphago49", "player_colour").start == F._COLOUR
    with pytest.raises(ValueError):
        F.planes(Board(9), "alphago47")
    with pytest.raises(KeyError):
        F.plane_slice("alphago48", "ownership")


def test_zero17_history():
    board = Board(9)
    snapshots = [board.stones().copy()]
    for move in "E5 C3 G7 C7 G3 pass D4".split():
        board.play(move)
        snapshots.append(board.stones().copy())
    x = F.planes(board, "zero17")
    assert board.to_move == "W"
    for t in range(8):
        old = snapshots[-1 - t] if t < len(snapshots) else np.zeros((9, 9), np.int8)
        assert (x[t] == (old == -1)).all() and (x[8 + t] == (old == 1)).all(), t
    assert not x[16].any()
    board.play("A1")
    x = F.planes(board, "zero17")
    assert x[16].all() and (x[0] == (board.stones() == 1)).all() and (x[15] == 0).all()


# -- references on many positions ---------------------------------------------------


def random_position(size: int, seed: int, n: int) -> Board:
    """``n`` random moves that fill no own eye (passes where there is none); simple ko, as the planes."""
    board = Board(size, superko="none")
    rng = random.Random(seed)
    for _ in range(n):
        c = int(board.fast.meta[fb.M_TO_MOVE])
        moves = [p for p in legal_points(board) if not fb.is_eyelike(board.fast, board._index(p), c)]
        board.play(rng.choice(moves) if moves else None)
        if board.is_over():
            break
    return board


@settings(max_examples=60, deadline=None)
@given(size=st.sampled_from([7, 9]), seed=st.integers(0, 2**31), n=st.integers(1, 120))
def test_move_planes_match_copy_and_play_on_random_positions(size, seed, n):
    check_move_planes(random_position(size, seed, n), ladders=True)


@functools.lru_cache(maxsize=None)
def pro_games(n: int) -> tuple[tuple[tuple[str, tuple[int, int] | None], ...], ...]:
    """The main-line moves of the first ``n`` pro19 games without setup stones."""
    sgf = pytest.importorskip("sgfmill.sgf")
    games = []
    with tarfile.open(shared_archive("pro19.tar.xz"), "r|xz") as tar:
        for member in tar:
            if not member.name.endswith(".sgf"):
                continue
            game = sgf.Sgf_game.from_bytes(tar.extractfile(member).read())
            if game.get_size() != 19 or game.get_root().has_property("AB"):
                continue
            moves = [node.get_move() for node in game.get_main_sequence()[1:]]
            games.append(tuple((c.upper(), m) for c, m in moves if c is not None))
            if len(games) == n:
                break
    return tuple(games)


def replay(moves, k: int = 0, upto: int | None = None) -> Board:
    board = Board(19)
    for colour, move in moves[:upto]:
        if move is not None and k:
            move = divmod(F.transform_flat_move(move[0] * 19 + move[1], 19, k), 19)
        board.play(move, colour)
    return board


def test_move_planes_match_copy_and_play_on_pro_positions():
    for moves in pro_games(6):
        for upto in range(20, len(moves), 15):
            check_move_planes(replay(moves, upto=upto), ladders=True)


def test_planes_are_equivariant_under_the_symmetries():
    games = pro_games(3)
    for moves, upto in ((games[0], 70), (games[2], 150)):  # with ladder captures and escapes
        x = F.planes(replay(moves, upto=upto), "alphago49")
        assert x[LADDER_CAPTURE].any() and x[LADDER_ESCAPE].any()
        for k in range(8):
            y = F.planes(replay(moves, k, upto), "alphago49")
            assert (y == F.transform_planes(x, k)).all(), k
            assert (F.transform_planes(y, F.inverse(k)) == x).all(), k


def test_symmetry_helpers_agree():
    size = 5
    grid = np.arange(size * size).reshape(size, size)
    assert len(F.SYMMETRIES) == 8
    seen = set()
    for k in range(8):
        t = F.transform_planes(grid, k)
        seen.add(t.tobytes())
        for i in range(size * size):
            j = F.transform_flat_move(i, size, k)
            assert t.flat[j] == i
        assert F.transform_flat_move(size * size, size, k) == size * size
        moves = np.array([0, 7, size * size])
        assert list(F.transform_flat_move(moves, size, k)) == [F.transform_flat_move(int(m), size, k) for m in moves]
        assert F.inverse(F.inverse(k)) == k
        assert (F.transform_planes(t, F.inverse(k)) == grid).all()
    assert len(seen) == 8
    # With row 0 at the bottom, a quarter turn anticlockwise takes the bottom-right corner to the top right.
    corner = size - 1
    assert F.transform_flat_move(corner, size, F.SYMMETRIES.index("rotate_90_ccw")) == size * size - 1
    assert F.transform_flat_move(corner, size, F.SYMMETRIES.index("rotate_90_cw")) == 0


def test_legal_mask_matches_the_board_rules():
    moves = pro_games(1)[0]
    for upto in (0, 41, 120):
        board = replay(moves, upto=upto)
        mask = F.legal_mask(board)
        expected = np.zeros(361, bool)
        for vertex in board.legal_moves():
            row, col = from_gtp(vertex, 19)
            expected[row * 19 + col] = True
        assert (mask == expected).all()
    board = Board.from_diagram(
        """
        . . . . .
        . X O . .
        X O . O .
        . X O . .
        . . . . .
        """
    )
    board.play("C3")
    mask = F.legal_mask(board)
    assert not mask[2 * 5 + 1] and mask.sum() == len(board.legal_moves())
    board.pass_move()
    board.pass_move()
    assert not F.legal_mask(board).any()
    # A 3x3 game where C1 is legal under simple ko but would repeat an earlier position.
    board = Board(3)
    for move in "C1 B3 A3 B2 A2 C3 A1 C2 B1 C2 B2 B3 C1 A3 B2 A1 B1 A2 B1 C3 C1 B2 C1 B1".split():
        board.play(move)
    c1 = board._index(at(board, "C1"))
    assert fb.is_legal(board.fast, c1, int(board.fast.meta[fb.M_TO_MOVE])) and not board.is_legal("C1")
    assert not F.legal_mask(board)[2] and F.legal_mask(board).sum() == len(board.legal_moves())


def test_setup_stones_count_as_old():
    board = Board(9)
    board.place_handicap(["C3", "G7"])
    board.play("E5")
    p = F.planes(board, "alphago48")
    turns = p[F.plane_slice("alphago48", "turns_since")]
    assert turns[:, 2, 2].argmax() == 7 and turns[:, 6, 6].argmax() == 7  # the >= 8 bucket
    assert turns[0, 4, 4] == 1  # the stone just played


def test_moves_to_board_undoes_each_rows_symmetry_and_keeps_pass():
    size = 5
    rng = np.random.default_rng(0)
    board_values = rng.random((8, size * size + 1))
    seen = np.empty_like(board_values)  # what a net looking through symmetry k would output
    for k in range(8):
        seen[k, F.transform_flat_move(np.arange(size * size + 1), size, k)] = board_values[k]
    assert np.array_equal(F.moves_to_board(seen, range(8), size), board_values)
    assert not np.array_equal(seen[1:], board_values[1:])  # the symmetries did move the points


@pytest.mark.parametrize("size", [5, 9, 19])
def test_transform_planes_batch_is_the_per_row_transform_for_every_symmetry(size):
    rng = np.random.default_rng(size)
    planes = rng.integers(0, 256, (24, 49, size, size)).astype(np.uint8)
    ks = np.tile(np.arange(8), 3)  # every symmetry, three rows each, shuffled
    rng.shuffle(ks)
    per_row = np.stack([F.transform_planes(p, int(k)) for p, k in zip(planes, ks)])
    out = F.transform_planes_batch(planes, ks)
    assert out.dtype == np.uint8 and np.array_equal(out, per_row)
    floats = F.transform_planes_batch(planes[:, :48], ks, np.float32)  # a sliced view, cast on the way
    assert floats.dtype == np.float32 and np.array_equal(floats, per_row[:, :48].astype(np.float32))


@pytest.mark.parametrize("size", [5, 19])
def test_moves_to_board_is_the_per_row_inverse_transform(size):
    rng = np.random.default_rng(size)
    values = rng.normal(size=(16, size * size + 1)).astype(np.float32)
    ks = np.repeat(np.arange(8), 2)
    expected = np.array(values)
    for r, k in enumerate(ks):  # the per-row loop: each grid back through the inverse symmetry
        expected[r, : size * size] = F.transform_planes(values[r, : size * size].reshape(size, size),
                                                        F.inverse(int(k))).ravel()
    out = F.moves_to_board(values, ks, size)
    assert np.array_equal(out, expected) and np.array_equal(out[:, -1], values[:, -1])
