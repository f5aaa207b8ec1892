"""SGF reading and writing: syntax, encodings, the Go meaning of properties, replay and round trips."""

import subprocess
import sys

import pytest
from sgfmill import sgf as sgfmill_sgf

from gogame.board import IllegalMove
from gogame.sgf import Game, Node, SGFError, dumps, load, loads


def only(text: str | bytes) -> Game:
    games = loads(text)
    assert len(games) == 1
    return games[0]


def via_sgfmill(text: str) -> tuple[int, list[tuple[str, tuple[int, int] | None]], tuple[set, set]]:
    """Size, main-line moves and root setup of ``text`` as sgfmill reads them."""
    game = sgfmill_sgf.Sgf_game.from_bytes(text.encode("utf-8"))
    moves = [(colour.upper(), move) for colour, move in (n.get_move() for n in game.get_main_sequence()) if colour]
    black, white, _ = game.get_root().get_setup_stones()
    return game.get_size(), moves, (black, white)


# ---------------------------------------------------------------------------------------------------- properties

def test_ff4_root_properties():
    game = only("""(;FF[4]GM[1]CA[UTF-8]SZ[19]KM[6.5]HA[2]RU[Japanese]PB[Cho Chikun]BR[9p]PW[Kobayashi Koichi]
        WR[9p]DT[1986-01-23]RE[W+R]AB[dp][pd];W[dd];B[pq])""")
    assert (game.size, game.komi, game.handicap, game.result, game.winner) == (19, 6.5, 2, "W+R", "W")
    assert game.setup == (frozenset({(3, 3), (15, 15)}), frozenset())
    assert game.moves == [("W", (15, 3)), ("B", (2, 15))]
    assert game.get("PB") == "Cho Chikun" and game.properties["RU"] == ["Japanese"]
    assert game.get("PB") == game.root.get("PB") and game.get("XX", "-") == "-"


def test_ff3_lower_case_property_names_and_tt_pass():
    game = only("(;FF[3]GaMe[1]SiZe[9]KoMi[5.5]AddBlack[ee]PlayerBlack[x];W[tt];B[cc];White[dd])")
    assert (game.size, game.komi) == (9, 5.5)
    assert game.setup == (frozenset({(4, 4)}), frozenset())
    assert game.moves == [("W", None), ("B", (6, 2)), ("W", (5, 3))]
    assert game.get("PB") == "x" and "PlayerBlack" not in game.properties


def test_defaults_and_absent_komi_is_distinguishable():
    bare, zero = only("(;B[aa])"), only("(;KM[0]B[aa])")
    assert (bare.size, bare.komi, bare.handicap, bare.result, bare.winner) == (19, 0.0, 0, None, None)
    assert zero.komi == 0.0 and "KM" in zero.properties and "KM" not in bare.properties


@pytest.mark.parametrize("value, size, move", [
    ("", 19, None),
    ("tt", 19, None),
    ("tt", 9, None),
    ("  ", 19, None),
    ("aa", 19, (18, 0)),
    ("sa", 19, (18, 18)),
    ("as", 19, (0, 0)),
    ("ee", 9, (4, 4)),
    ("tt", 21, (1, 19)),  # beyond 19x19, tt is a point
    ("yy", 25, (0, 24)),
])
def test_moves_and_passes(value, size, move):
    assert only(f"(;SZ[{size}];B[{value}])").moves == [("B", move)]


@pytest.mark.parametrize("raw, value", [
    (r"a\]b", "a]b"),
    (r"a\\b", "a\\b"),
    ("a\\\\", "a\\"),
    ("soft\\\nbreak", "softbreak"),
    ("soft\\\r\nbreak", "softbreak"),
    ("hard\nbreak", "hard\nbreak"),
    (r"\:\[x", ":[x"),
    ("[x", "[x"),  # [ needs no escape
])
def test_escapes(raw, value):
    assert only(f"(;C[{raw}])").get("C") == value


def test_compressed_point_lists():
    game = only("(;SZ[9]AB[aa:bb][ee]AW[ci:ag])")
    black, white = game.setup
    assert black == {(8, 0), (8, 1), (7, 0), (7, 1), (4, 4)}
    assert white == {(row, col) for row in range(0, 3) for col in range(0, 3)}  # corners in any order


def test_repeated_property_values_merge_and_unknown_properties_are_kept():
    game = only("(;AB[aa]XX[1][2]MULTIGOGM[1]AB[bb];B[cc]YY[deep])")
    assert game.properties["AB"] == ["aa", "bb"] and game.properties["XX"] == ["1", "2"]
    assert game.properties["MULTIGOGM"] == ["1"]
    assert game.root.children[0].properties == {"B": ["cc"], "YY": ["deep"]}
    assert game == only(dumps(game))


@pytest.mark.parametrize("result, winner", [
    ("B+R", "B"), ("W+3.5", "W"), ("B+T", "B"), ("w+resign", "W"), (" B+ ", "B"), ("W+F", "W"),
    ("0", None), ("Jigo", None), ("Draw", None), ("Void", None), ("?", None), ("", None),
])
def test_winner(result, winner):
    assert only(f"(;RE[{result}])").winner == winner


# ---------------------------------------------------------------------------------------------------- structure

def test_collection_with_junk_around_games():
    games = loads("header junk\n(;SZ[9];B[ee]) between (;SZ[13]\n;W[aa]) (;GM[1]) trailer")
    assert [(g.size, g.moves) for g in games] == [(9, [("B", (4, 4))]), (13, [("W", (12, 0))]), (19, [])]


VARIATIONS = "(;SZ[9];B[aa](;W[bb];B[cc](;W[dd])(;W[ee]))(;W[ff])(;W[gg];AB[hh]C[setup];B[ii]))"


def test_main_line_follows_first_children():
    game = only(VARIATIONS)
    assert game.moves == [("B", (8, 0)), ("W", (7, 1)), ("B", (6, 2)), ("W", (5, 3))]
    assert game.moves_of(game.main_line()) == game.moves


def test_every_variation_is_reachable():
    game = only(VARIATIONS)
    lines = [[f"{c}{'' if m is None else m}" for c, m in game.moves_of(line)] for line in game.variations()]
    assert lines == [
        ["B(8, 0)", "W(7, 1)", "B(6, 2)", "W(5, 3)"],
        ["B(8, 0)", "W(7, 1)", "B(6, 2)", "W(4, 4)"],
        ["B(8, 0)", "W(3, 5)"],
        ["B(8, 0)", "W(2, 6)", "B(0, 8)"],
    ]
    assert all(line[0] is game.root for line in game.variations())


def test_node_positions_are_line_and_column():
    game = only("(;SZ[9]\n;B[aa]\n  ;W[bb])")
    assert [(n.line, n.column) for n in game.main_line()] == [(1, 2), (2, 1), (3, 3)]


@pytest.mark.parametrize("text, message, line, column", [
    ("", "no SGF game found", 1, 1),
    ("just words", "no SGF game found", 1, 1),
    ("(;B[aa]", "not closed", 1, 8),
    ("(;B[aa];W[bb]\n", "not closed", 2, 1),
    ("(;C[unterminated\nvalue)", "value not closed", 1, 4),
    ("(;B[aa]W)", "property W has no value", 1, 8),
    ("(;B[aa]\n[bb]\n;[cc])", "value without a property name", 3, 2),
    ("(;B[aa]x[bb])", "invalid property name 'x'", 1, 8),
    ("(;B[aa]?)", "unexpected character '?'", 1, 8),
    ("(;B[aa]()", "empty game tree", 1, 9),
    ("(;B[aa]((;W[bb])))", "must start with a node", 1, 9),
    ("(;B[aa](;W[bb]);B[cc])", "node after a variation", 1, 16),
    ("(;SZ[9]\n;B[jj])", "invalid move B[jj]", 2, 1),
    ("(;B[aa][bb])", "B with 2 values", 1, 2),
    ("(;B[aa]AB[cc]AW[cc])", "point cc in both AB and AW", 1, 2),
    ("(;B[aa];AB[cc:cd]AE[cd])", "point cd in both AB and AE", 1, 8),
    ("(;KM[1e300])", "KM[1e300] out of range (at most 625 either way)", 1, 2),
    ("(;SZ[abc])", "unsupported board size SZ[abc]", 1, 2),
    ("(;SZ[19:13])", "unsupported board size", 1, 2),
    ("(;SZ[1])", "unsupported board size", 1, 2),
    ("(;SZ[26])", "unsupported board size", 1, 2),
    ("(;KM[six])", "invalid number KM[six]", 1, 2),
    ("(;KM[nan])", "invalid number KM[nan]", 1, 2),
    ("(;HA[2.5])", "invalid number HA[2.5]", 1, 2),
    ("(;HA[-1])", "invalid handicap", 1, 2),
    ("(;GM[2])", "not a game of Go", 1, 2),
    ("(;SZ[9]AB[aa:zz])", "invalid point AB[aa:zz]", 1, 2),
    ("(;AW[tt])", "invalid point AW[tt]", 1, 2),
    ("(;SZ[9];B[aa])(;SZ[9];B[zz])", "invalid move", 1, 22),
])
def test_malformed_input_raises_sgf_error_with_position(text, message, line, column):
    with pytest.raises(SGFError) as caught:
        loads(text, source="bad.sgf")
    error = caught.value
    assert message in error.message
    assert (error.source, error.line, error.column) == ("bad.sgf", line, column)
    assert str(error).startswith(f"bad.sgf:{line}:{column}: ")
    assert isinstance(error, ValueError)


def test_a_node_with_both_moves_is_read_as_two_in_their_order_with_a_warning():
    game = loads("(;SZ[9];W[cc]B[ee]\n;W[gg])", source="two.sgf")[0]
    assert game.moves == [("W", (6, 2)), ("B", (4, 4)), ("W", (2, 6))]
    assert game.warnings == ["two.sgf:1:8: a node with both B and W: read as W[cc] then B[ee]"]
    assert game.board_at(1).to_move == "B" and game.board_at().colour_at((4, 4)) == "B"
    assert only("(;SZ[9];B[ee];W[cc])").warnings == []


def test_move_properties_are_written_to_and_read_from_the_node_of_each_move():
    game = Game.from_moves([("B", (2, 2)), ("W", None), ("B", (0, 1))], size=9,
                               move_properties={0: {"BV": "0.5120"}, 2: {"BV": "0.7000", "C": "late"}})
    again = loads(dumps(game))[0]
    assert again.move_property("BV") == ["0.5120", None, "0.7000"]
    assert again.move_property("C") == [None, None, "late"]
    two = loads("(;SZ[9];B[aa]W[bb]BV[0.25];B[cc])")[0]  # both moves of a node share its properties
    assert two.move_property("BV") == ["0.25", "0.25", None]


def test_bad_move_in_a_side_variation_is_reported_when_read():
    game = only("(;SZ[9];B[aa](;W[bb])(;W[zz]))")
    with pytest.raises(SGFError, match="invalid move W"):
        list(map(game.moves_of, game.variations()))


def test_load_names_the_file(tmp_path):
    path = tmp_path / "broken.sgf"
    path.write_bytes(b"(;SZ[9]\n;B[aa]W)")
    with pytest.raises(SGFError, match=r"broken\.sgf:2:7: property W has no value"):
        load(path)
    path.write_bytes(b"(;SZ[9];B[aa])")
    assert load(path)[0].source == str(path)


# ---------------------------------------------------------------------------------------------------- encodings

@pytest.mark.parametrize("data, name", [
    ("(;CA[UTF-8]PB[趙治勲])".encode("utf-8"), "趙治勲"),
    ("(;PB[趙治勲])".encode("utf-8"), "趙治勲"),  # no CA: UTF-8
    ("(;CA[GB2312]PB[古力])".encode("gb2312"), "古力"),
    ("(;CA[Shift_JIS]PB[表ソ])".encode("shift_jis"), "表ソ"),  # both end in byte 0x5C, a backslash in ASCII
    ("(;CA[ISO-8859-1]PB[Müller])".encode("latin-1"), "Müller"),
    ("(;PB[Müller])".encode("latin-1"), "Müller"),  # odd bytes, no CA: UTF-8 fails, latin-1 follows
    ("(;CA[klingon]PB[Łukasz])".encode("utf-8"), "Łukasz"),  # unknown charset: UTF-8
    ("(;CA[UTF-16]PB[Łukasz])".encode("utf-8"), "Łukasz"),  # not ASCII-compatible: UTF-8
    (b"(;PB[\xff\xfe\x80 odd])", "\xff\xfe\x80 odd"),
])
def test_character_sets(data, name):
    game = only(data)
    assert game.get("PB") == name


def test_undecodable_bytes_fail_only_the_value_they_are_in():
    game = only("(;CA[UTF-8]PB[Łukasz]PW[".encode("utf-8") + b"M\xfcller" + b"];B[aa])")
    assert (game.get("PB"), game.get("PW"), game.moves) == ("Łukasz", "Müller", [("B", (18, 0))])


def test_str_input_is_not_decoded_again():
    assert only("(;CA[GB2312]PB[古力])").get("PB") == "古力"


# ---------------------------------------------------------------------------------------------------- scale

def test_100k_deep_nesting_neither_recurses_nor_fails():
    depth = 100_000
    game = only("(;" * depth + ")" * depth)
    assert len(game.main_line()) == depth and len(list(game.variations())) == 1
    assert game == only(dumps(game))
    with pytest.raises(SGFError, match="not closed"):
        loads("(;" * depth)
    moves = only("(;SZ[9]" + "(;B[aa];W[bb]" * depth + ")" * depth + ")").moves
    assert len(moves) == 2 * depth


MULTI_MEGABYTE = r"""
import pytest
from gogame.sgf import SGFError, loads

nodes, comment = ";B[dd];W[pp]" * 100_000, "x\\]" * 500_000  # 1.2 MB of nodes, 1.5 MB of comment
game, = loads(f"(;SZ[19]{nodes};C[{comment}])")
assert len(game.moves) == 200_000 and len(game.main_line()[-1].get("C")) == 1_000_000
for text, message in [(f"(;C[{comment})", "value not closed"), ("(" * 3_000_000, "no SGF game")]:
    with pytest.raises(SGFError, match=message):
        loads(text)
"""


def test_multi_megabyte_input_parses_in_linear_time():
    """Seconds for a linear parser; a quadratic one would take hours, so the limit is a hang guard, not a speed
    measurement (which belongs in a benchmark)."""
    subprocess.run([sys.executable, "-c", MULTI_MEGABYTE], check=True, timeout=600)


# ---------------------------------------------------------------------------------------------------- writing

ROUND_TRIP = r"""(;FF[4]GM[1]SZ[13]KM[6.5]HA[2]PB[Back\\slash]PW[Bracket\] name]RE[B+2.5]XX[kept]
AB[dd][jj]AW[aa:ab]C[multi
line];W[gg];B[];W[tt](;B[ab]C[one])(;B[ba]LB[cc:text])(;AE[dd]PL[W];W[dd]))"""


def test_dumps_round_trip_is_equal():
    game = only(ROUND_TRIP)
    text = dumps(game)
    assert text.startswith("(;FF[4]GM[1]CA[UTF-8]SZ[13]")
    assert r"PB[Back\\slash]" in text and r"PW[Bracket\] name]" in text
    again = only(text)
    assert again == game and again.moves == game.moves and again.setup == game.setup
    assert [again.moves_of(line) for line in again.variations()] == [game.moves_of(line) for line in game.variations()]
    assert dumps(again) == text


def test_sgfmill_reads_our_output():
    game = only(ROUND_TRIP)
    assert via_sgfmill(dumps(game)) == (game.size, game.moves, game.setup)


def test_equality_ignores_file_properties_only():
    a = only("(;FF[3]CA[latin-1]GM[1]KM[5.5];B[aa])")
    assert a == only("(;SZ[19]KM[5.5];B[aa])")
    assert a != only("(;SZ[9]KM[5.5];B[aa])")
    assert a != only("(;KM[6.5];B[aa])")
    assert a != only("(;KM[5.5];B[aa];W[bb])")
    assert a != only("(;KM[5.5];B[aa](;W[bb])(;W[cc]))")
    assert Node({"B": ["aa"]}) == Node({"B": ["aa"]}) != Node({"B": ["aa"]}, [Node()])


def test_from_moves_builds_a_writable_game():
    moves = [("B", (2, 2)), ("W", None), ("B", (0, 8))]
    game = Game.from_moves(moves, size=9, komi=7, handicap=2, setup=({(4, 4), (6, 6)}, ()), result="B+R",
                           properties={"PB": "net-1]", "PW": ["gnugo"]})
    assert (game.size, game.komi, game.handicap, game.moves, game.winner) == (9, 7.0, 2, moves, "B")
    assert game.setup == (frozenset({(4, 4), (6, 6)}), frozenset())
    text = dumps(game)
    assert only(text) == game and via_sgfmill(text) == (9, moves, game.setup)
    with pytest.raises(ValueError):
        Game.from_moves([("X", None)])
    with pytest.raises(ValueError):
        Game.from_moves([("B", (9, 0))], size=9)


def test_dumps_of_several_games_is_a_collection():
    games = loads("(;SZ[9];B[ee])(;SZ[13];W[aa])")
    assert loads(dumps(games)) == games


# ---------------------------------------------------------------------------------------------------- replay

def test_board_at_replays_handicap_with_white_first_and_captures():
    game = only("(;SZ[9]HA[2]KM[0.5]AB[cc][gg];W[ba];B[aa];W[ab];B[bb];W[ca])")
    empty = game.board_at(0)
    assert empty.colour_at((6, 2)) == "B" and empty.colour_at((2, 6)) == "B"
    assert empty.to_move == "W" and empty.komi == 0.5 and empty.size == 9
    board = game.board_at()
    assert board.colour_at((8, 0)) is None  # B[aa] was captured by W[ab]
    assert board.colour_at((7, 0)) == "W" and board.to_move == "B"
    assert game.board_at(2).colour_at((8, 0)) == "B"


def test_board_at_honours_setup_in_later_nodes_and_pl():
    game = only("(;SZ[9]AB[aa];W[ee];AE[aa]AW[bb:cc]PL[B];B[ii];AB[hh])")
    assert game.board_at(1).colour_at((8, 0)) is None and game.board_at(1).colour_at((6, 2)) == "W"
    assert game.board_at(1).to_move == "B"
    assert game.board_at(2).colour_at((1, 7)) == "B"  # trailing setup applies after the last move
    assert only("(;SZ[9]AB[aa]PL[W])").board_at().to_move == "W"
    with pytest.raises(ValueError, match="cannot replay 3 moves"):
        game.board_at(3)


def test_board_at_of_a_side_variation_and_replay():
    game = only(VARIATIONS)
    *_, last = game.variations()
    assert game.board_at(line=last).colour_at((0, 8)) == "B"
    seen = [(colour, move, board.to_move, board.move_number) for board, colour, move in game.replay()]
    assert seen == [("B", (8, 0), "B", 0), ("W", (7, 1), "W", 1), ("B", (6, 2), "B", 2), ("W", (5, 3), "W", 3)]


def test_illegal_recorded_move_raises_illegal_move():
    game = only("(;SZ[9];B[aa];W[aa])")
    assert game.board_at(1).colour_at((8, 0)) == "B"
    with pytest.raises(IllegalMove):
        game.board_at()


def test_package_exports():
    import gogame

    assert gogame.SGFError is SGFError and issubclass(SGFError, ValueError)
    assert gogame.sgf.loads("(;SZ[9];B[ee])")[0].moves == [("B", (4, 4))]
