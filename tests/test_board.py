"""Rules of the Board: captures, ko, superko, suicide, passes, handicap, scoring."""

import numpy as np
import pytest

import gogame
from gogame import Board, IllegalMove
from gogame.board import fixed_handicap_points, format_result


def play_all(board: Board, moves: str) -> Board:
    for move in moves.split():
        board.play(move)
    return board


def diagram(board: Board) -> str:
    """The board as rows of X/O/. , top row first (no labels)."""
    return "\n".join(" ".join(".XO"[v] for v in row) for row in board.stones()[::-1])


def test_empty_board_and_vertices():
    board = Board(19)
    assert board.size == 19 and board.komi == 7.5 and board.to_move == "B"
    assert board.stones().shape == (19, 19) and board.stones().dtype == np.int8
    assert not board.stones().any()
    board.play("d4")
    assert board.stones()[3, 3] == 1
    board.play("A1")
    assert board.stones()[0, 0] == -1
    board.play("T19")
    assert board.stones()[18, 18] == 1
    assert board.to_move == "W"
    assert board.history == [("B", (3, 3)), ("W", (0, 0)), ("B", (18, 18))]


@pytest.mark.parametrize("vertex", ["I5", "Z1", "D0", "D20", "", "4D", "D4x", "passs"])
def test_bad_vertices_raise_value_error(vertex):
    board = Board(19)
    with pytest.raises(ValueError):
        board.play(vertex)
    assert board.history == []


@pytest.mark.parametrize("size", [1, 26, 0, -3])
def test_bad_sizes(size):
    with pytest.raises(ValueError):
        Board(size)


@pytest.mark.parametrize("size", [2, 3, 9, 13, 19, 25])
def test_supported_sizes_play_to_the_corners(size):
    board = Board(size)
    board.play((0, 0))
    board.play((size - 1, size - 1))
    assert board.stones()[0, 0] == 1 and board.stones()[size - 1, size - 1] == -1


def test_single_capture_in_the_corner_and_prisoners():
    board = play_all(Board(9), "A2 A1 B1")
    assert board.stones()[0, 0] == 0
    assert board.captures("B") == 1 and board.captures("W") == 0


def test_capture_of_two_chains_at_once():
    # Black at E5 captures both white stones D5 and F5 (each in atari).
    board = Board.from_diagram(
        """
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . X . X . . .
        . . X O . O X . .
        . . . X . X . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        """
    )
    assert board.play("E5") == 2
    assert board.colour_at("D5") is None and board.colour_at("F5") is None
    assert board.liberties("E5") == 4


def test_merge_counts_shared_liberties_once():
    board = Board.from_diagram(
        """
        . . . . .
        . X . X .
        . . . . .
        . . . . .
        . . . . .
        """
    )
    board.play("C4")
    # B4 C4 D4 in a row: liberties A4, E4, B5, C5, D5, B3, C3, D3.
    assert board.liberties("C4") == 8
    assert len(board.chain("B4")) == 3


def test_snapback():
    board = Board.from_diagram(
        """
        . . . . .
        . . . . .
        X X X X .
        O O O X .
        . . O X .
        """
    )
    board.play("B1")  # the throw-in: a black stone in atari
    board.play("A1")  # white takes it...
    assert board.colour_at("B1") is None and board.liberties("A1") == 1
    assert board.play("B1") == 5  # ...and black takes back five: not a ko
    assert board.captures("B") == 5 and board.captures("W") == 1


def test_simple_ko_and_ko_threat_cycle():
    board = Board.from_diagram(
        """
        . . . . .
        . X O . .
        X O . O .
        . X O . .
        . . . . .
        """
    )
    board.play("C3")  # black takes the ko
    assert board.colour_at("B3") is None
    assert board.ko_point == (2, 1)
    with pytest.raises(IllegalMove, match="ko"):
        board.play("B3")
    assert board.to_move == "W"
    board.play("E1")  # ko threat
    board.play("E2")  # answer
    board.play("B3")  # now white may retake
    assert board.colour_at("C3") is None


def test_suicide_is_illegal_unless_allowed():
    position = """
        . X . . .
        X X . . .
        . . . . .
        . . . . .
        . . . . .
        """
    board = Board.from_diagram(position, to_move="W")
    with pytest.raises(IllegalMove, match="suicide"):
        board.play("A5")
    assert board.to_move == "W" and board.colour_at("A5") is None
    # Multi-stone suicide under Tromp-Taylor removes the chain.
    board = Board.from_diagram(
        """
        . O X . .
        X X . . .
        . . . . .
        . . . . .
        . . . . .
        """,
        to_move="W",
        allow_suicide=True,
    )
    board.play("A5")
    assert board.colour_at("A5") is None and board.colour_at("B5") is None
    assert board.captures("B") == 2


def test_filling_own_last_liberty_while_capturing_is_legal():
    board = Board.from_diagram(
        """
        . O X . .
        O X . . .
        X . . . .
        . . . . .
        . . . . .
        """
    )
    # A5 for black: no liberties of its own, but it captures B5 and A4.
    assert board.play("A5") == 2


TRIPLE_KO = """
    X O . O O X . X J O . O .
    X X O . O O X . X X O . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    . . . . . . . . . . . . .
    """.replace("J", "X")
# Three kos on the top edge: black captures at C13 and L13, white at G13.


def test_positional_superko_forbids_the_triple_ko_cycle():
    board = Board.from_diagram(TRIPLE_KO)
    # Each capture is legal under simple ko; after six captures every ko has
    # flipped twice and the sixth move would recreate the starting position.
    for move in "C13 G13 L13 B13 F13".split():
        assert board.play(move) == 1
    assert not board.is_legal("K13")
    with pytest.raises(IllegalMove, match="superko"):
        board.play("K13")
    simple_ko_only = board.fast
    from gogame import fastboard as fb

    assert fb.is_legal(simple_ko_only, board._index((12, 9)), fb.WHITE)


def test_superko_none_keeps_simple_ko_only():
    board = Board.from_diagram(TRIPLE_KO, superko="none")
    for move in "C13 G13 L13 B13 F13 K13".split():
        board.play(move)  # the cycle completes: the starting position again
    assert (board.stones() == Board.from_diagram(TRIPLE_KO).stones()).all()
    with pytest.raises(ValueError):
        Board(9, superko="japanese")


def test_situational_superko_allows_the_same_stones_with_the_other_side_to_move():
    positional = Board.from_diagram(TRIPLE_KO)
    situational = Board.from_diagram(TRIPLE_KO, superko="situational")
    for board in (positional, situational):
        for move in "C13 G13 L13 B13 F13 pass C13".split():
            board.play(move)
    # G13 recreates the stones after the third move, when white was to move;
    # now black is to move after it.
    assert not positional.is_legal("G13")
    assert situational.is_legal("G13")
    situational.play("G13")


def test_passes_end_the_game_and_resignation():
    board = Board(9)
    board.play("pass")
    assert not board.is_over()
    board.play("E5")
    board.play("PASS")
    board.pass_move()
    assert board.is_over()
    board.play("D4")  # play may go on after two passes (a disputed end)
    assert not board.is_over()
    board.undo()
    assert board.is_over()
    board.undo()
    assert not board.is_over()
    board.resign()
    assert board.is_over() and board.result() == "B+R"
    with pytest.raises(IllegalMove, match="over"):
        board.play("D4")
    assert board.legal_moves() == []
    board.undo()
    assert not board.is_over() and board.legal_moves()


def test_illegal_move_leaves_board_unchanged():
    board = play_all(Board(9), "E5 D5")
    before = (board.stones().copy(), board.to_move, list(board.history), board.zobrist_hash)
    with pytest.raises(IllegalMove, match="occupied"):
        board.play("E5")
    assert (board.stones() == before[0]).all() and board.to_move == before[1]
    assert board.history == before[2] and board.zobrist_hash == before[3]


def test_illegal_move_is_a_value_error():
    assert issubclass(IllegalMove, ValueError)
    assert gogame.IllegalMove is IllegalMove


def test_undo_restores_exactly():
    board = play_all(Board(9), "E5 D5 D4 C4 E4 D3")
    snapshots = []
    replay = Board(9)
    for colour, move in board.history:
        snapshots.append((replay.stones().copy(), replay.zobrist_hash, replay.to_move))
        replay.play(move, colour)
    for stones, h, to_move in reversed(snapshots):
        board.undo()
        assert (board.stones() == stones).all() and board.zobrist_hash == h and board.to_move == to_move
    with pytest.raises(IndexError):
        board.undo()


def test_copy_is_independent():
    board = play_all(Board(9), "E5 D5")
    other = board.copy()
    other.play("C3")
    assert board.colour_at("C3") is None and other.colour_at("C3") == "B"
    other.undo()
    other.undo()
    assert board.colour_at("D5") == "W"


def test_hash_is_reproducible_and_order_independent():
    a = play_all(Board(9), "C3 D4 E5 F6")
    b = play_all(Board(9), "E5 F6 C3 D4")
    assert a.zobrist_hash == b.zobrist_hash != 0
    assert Board(9).zobrist_hash == 0


def test_legal_moves_agree_with_is_legal():
    board = Board.from_diagram(
        """
        . X O . .
        X O . O .
        . X O . .
        . . . . .
        . . . . .
        """,
        to_move="W",
    )
    legal = set(board.legal_moves())
    for row in range(5):
        for col in range(5):
            vertex = "ABCDE"[col] + str(row + 1)
            assert (vertex in legal) == board.is_legal(vertex)
    assert "A5" in legal  # no liberty of its own, but it captures B5
    assert "C4" in legal


# -- handicap -------------------------------------------------------------------


@pytest.mark.parametrize(
    "size,n,expected",
    [
        (19, 2, "D4 Q16"),
        (19, 3, "D4 Q16 D16"),
        (19, 4, "D4 Q16 D16 Q4"),
        (19, 5, "D4 Q16 D16 Q4 K10"),
        (19, 6, "D4 Q16 D16 Q4 D10 Q10"),
        (19, 7, "D4 Q16 D16 Q4 D10 Q10 K10"),
        (19, 8, "D4 Q16 D16 Q4 D10 Q10 K4 K16"),
        (19, 9, "D4 Q16 D16 Q4 D10 Q10 K4 K16 K10"),
        (13, 4, "D4 K10 D10 K4"),
        (9, 5, "C3 G7 C7 G3 E5"),
    ],
)
def test_fixed_handicap_matches_gtp_spec(size, n, expected):
    board = Board(size)
    vertices = board.fixed_handicap(n)
    assert vertices == expected.split()
    assert board.to_move == "W"
    assert int((board.stones() == 1).sum()) == n


@pytest.mark.parametrize("size,n", [(19, 1), (19, 10), (6, 2), (8, 5), (9, 10)])
def test_bad_fixed_handicap(size, n):
    with pytest.raises(ValueError):
        fixed_handicap_points(size, n)


def test_free_handicap_needs_an_empty_board():
    board = Board(9)
    board.place_handicap(["C3", "G7", "E5"])
    assert board.to_move == "W" and board.handicap == [(2, 2), (6, 6), (4, 4)]
    with pytest.raises(ValueError):
        board.place_handicap(["A1", "B1"])


# -- scoring --------------------------------------------------------------------


def test_area_score_and_result_strings():
    board = Board.from_diagram(
        """
        . . X O .
        . . X O .
        . . X O .
        . . X O .
        . . X O .
        """,
        komi=0.5,
    )
    # Black: 15 points, white: 10.
    assert board.score() == 15 - 10 - 0.5
    assert board.result() == "B+4.5"
    board.komi = 5
    assert board.result() == "0"
    board.komi = 7.5
    assert board.result() == "W+2.5"


def test_dame_counts_for_nobody():
    board = Board.from_diagram(
        """
        X X . O O
        X X . O O
        X X . O O
        X X . O O
        X X . O O
        """,
        komi=0,
    )
    assert board.score() == 0
    assert (board.ownership()[:, 2] == 0).all()


def test_dead_stones_score_for_the_opponent():
    board = Board.from_diagram(
        """
        . . X O .
        . . X O .
        . X X O .
        . . X O O
        . . X O X
        """,
        komi=0,
    )
    assert board.score(dead=["E1"]) == 15 - 10
    assert board.score() == 16 - 9  # alive, E1 is black's; E3-E5 touch white only
    # Naming one stone marks its whole chain.
    with pytest.raises(ValueError):
        board.score(dead=["A1"])


def test_territory_scoring_counts_prisoners():
    board = play_all(Board(5, komi=0.5), "A2 A1 B1")  # black captured one stone
    assert board.captures("B") == 1
    area = board.score("area")
    territory = board.score("territory")
    assert territory == pytest.approx(25 - 2 + 1 - 0.5)  # all empty points are black's, plus a prisoner
    assert area == pytest.approx(25 - 0.5)
    with pytest.raises(ValueError):
        board.score("chinese-ish")


def test_format_result():
    assert format_result(3.5) == "B+3.5"
    assert format_result(-0.5) == "W+0.5"
    assert format_result(0.0) == "0"
    assert format_result(12.0) == "B+12"


def test_diagram_round_trip():
    board = play_all(Board(9), "E5 D5 C3")
    assert (Board.from_diagram(str(board)).stones() == board.stones()).all()
    assert diagram(board).count("X") == 2


def test_random_playouts_are_reproducible_and_balanced():
    a = gogame.random_playouts(9, 200, komi=7.5, seed=3)
    b = gogame.random_playouts(9, 200, komi=7.5, seed=3)
    assert a.shape == (200,) and (a == b).all()
    # Every game ends with the whole board counted: |margin + komi| <= 81.
    assert (np.abs(a + 7.5) <= 81).all()
    assert not (a == gogame.random_playouts(9, 200, komi=7.5, seed=4)).all()


def test_komi_must_be_finite_and_within_the_largest_board():
    from gogame.board import MAX_KOMI, check_komi

    assert check_komi("6.5") == 6.5 and check_komi(-MAX_KOMI) == -625.0
    for bad in (float("nan"), float("inf"), 1e300, MAX_KOMI + 0.5):
        with pytest.raises(ValueError, match="komi must be a finite number"):
            Board(9, komi=bad)


def test_continue_under_superko_counts_positions_from_there():
    board = Board(9, superko="none")
    ko = Board.from_diagram("""
        . X O . . . . . .
        X O . O . . . . .
        . X O . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .
        . . . . . . . . .""", superko="none")
    for move in ("C8", "pass", "pass"):  # black takes the ko; both pass
        ko.play(move)
    ko.continue_under("positional")
    assert ko.superko == "positional" and ko.is_legal("B8", "W")  # retaking recreates a position from before
    ko.play("B8", "W")
    ko.play("pass", "B")
    assert not ko.is_legal("C8", "B")  # that would repeat the position continue_under started from
    with pytest.raises(ValueError, match="superko must be one of"):
        board.continue_under("japanese")
