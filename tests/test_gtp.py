"""Tests of the GTP engine: the pure core (gtp.engine + gtp.session with a fake player), time budgets, a fuzz
test, and end-to-end runs of ``python -m gtp`` over pipes with the shipped 9x9 nets."""

from __future__ import annotations

import contextlib
import io
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sgfmill import boards as sgfmill_boards
from sgfmill import sgf as sgfmill_sgf

import gogame
from gogame import coords, nets, sgf
from gogame.board import Board
from gtp.engine import GtpEngine, Stream, clean_line, format_response, parse_command, serve
from gtp.session import MIN_SECONDS, SAFETY_SECONDS, Info, Session, TimeControl

REPO = Path(__file__).resolve().parents[1]


class FakePlayer:
    """Plays the first legal non-pass move (in ``board.legal_moves()`` order); its ownership gives every
    stone to its own colour except those listed in ``dead``, which it gives to the opponent."""

    resign_threshold = 0.0

    def __init__(self, sizes=(9, 19), dead=()):
        self.sizes = set(sizes)
        self.dead = set(dead)
        self.calls: list[tuple[str, float | None]] = []

    def supports(self, size):
        return size in self.sizes

    def prepare(self, size):
        self.calls.append(("prepare", size))

    def genmove(self, board, seconds, cleanup=False, report=None, report_seconds=1.0):
        self.calls.append(("genmove", seconds))
        if report is not None:
            report(self.analyze(board, report_seconds))
        moves = [m for m in board.legal_moves() if m != "pass"]
        return moves[0] if moves else "pass"

    def analyze(self, board, seconds):
        self.calls.append(("analyze", board.to_move))
        time.sleep(min(seconds, 0.02))
        moves = [m for m in board.legal_moves() if m != "pass"][:3]
        # a score for the first candidate only: the others stand for a search without rollouts
        return [Info(m, 10 - k, 0.5 + 0.1 * k, 0.2, 0.4, [m, "pass"], *((2.5, 4.0) if k == 0 else ()))
                for k, m in enumerate(moves)]

    def policy(self, board):
        """Half on the first legal point, the rest spread over the others; 1% on pass."""
        moves = [m for m in board.legal_moves() if m != "pass"]
        p = np.zeros(board.size * board.size + 1)
        for k, m in enumerate(moves):
            r, c = coords.from_gtp(m, board.size)
            p[r * board.size + c] = 0.5 if k == 0 else 0.49 / max(1, len(moves) - 1)
        p[-1] = 0.01
        return p

    def ownership(self, board):
        own = board.stones().astype(np.float64)
        for v in self.dead:
            r, c = coords.from_gtp(v, board.size)
            own[r, c] = -own[r, c]
        return own


_DEFAULT = object()


def make(size=9, player=_DEFAULT, **kw):
    player = FakePlayer() if player is _DEFAULT else player
    session = Session(player, size=size, **kw)
    engine = GtpEngine("gogame", "0.1.0")
    engine.add_commands(session.handlers())
    return engine, session


def ask(engine, line):
    return engine.handle_line(line).text




# -- protocol core -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line, expected", [
    ("protocol_version", "= 2\n\n"),
    ("12 protocol_version", "=12 2\n\n"),
    ("name", "= gogame\n\n"),
    ("version", "= 0.1.0\n\n"),
    ("known_command play", "= true\n\n"),
    ("known_command frobnicate", "= false\n\n"),
    ("frobnicate", "? unknown command\n\n"),
    ("5 frobnicate 3", "?5 unknown command\n\n"),
    ("boardsize 13", "? unacceptable size\n\n"),  # the fake player has no 13x13 nets
    ("boardsize 30", "? unacceptable size\n\n"),
    ("boardsize x", "? syntax error\n\n"),
    ("boardsize 19", "=\n\n"),
    ("komi 6.5", "=\n\n"),
    ("komi abc", "? syntax error\n\n"),
    ("komi nan", "? syntax error\n\n"),
    ("play b e5", "=\n\n"),
    ("play black E5", "=\n\n"),
    ("play x e5", "? invalid color\n\n"),
    ("play b z99", "? invalid vertex\n\n"),
    ("play b", "? syntax error\n\n"),
    ("play w pass", "=\n\n"),
    ("undo", "? cannot undo\n\n"),
    ("captures b", "= 0\n\n"),
    ("list_stones w", "=\n\n"),
    ("fixed_handicap 1", "? invalid number of stones\n\n"),
    ("fixed_handicap 3", "= C3 G7 C7\n\n"),
    ("set_free_handicap a1", "? bad vertex list\n\n"),
    ("set_free_handicap a1 a1", "? bad vertex list\n\n"),
    ("set_free_handicap a1 zz", "? invalid vertex\n\n"),
    ("time_settings 300 30 5", "=\n\n"),
    ("time_settings 300 x 5", "? syntax error\n\n"),
    ("kgs-time_settings byoyomi 60 10 3", "=\n\n"),
    ("kgs-time_settings canadian 60 300 25", "=\n\n"),
    ("kgs-time_settings none", "=\n\n"),
    ("kgs-time_settings fischer 60 5", "? syntax error\n\n"),
    ("time_left b 100 0", "=\n\n"),
    ("final_status_list alive", "=\n\n"),
    ("final_status_list foo", "? syntax error\n\n"),
    ("loadsgf /nonexistent/x.sgf", "? cannot load file\n\n"),
    ("clear_board", "=\n\n"),
    ("genmove b", "= A1\n\n"),
    ("reg_genmove w", "= A1\n\n"),
    ("kgs-genmove_cleanup w", "= A1\n\n"),
])
def test_single_commands(line, expected):
    engine, _ = make()
    assert ask(engine, line) == expected


def test_quit_ends_the_session_and_list_commands_reads_the_table():
    engine, _ = make()
    reply = engine.handle_line("3 quit")
    assert reply.text == "=3\n\n" and reply.end
    listed = ask(engine, "list_commands")[2:-2].split("\n")
    assert listed == sorted(engine.handlers)
    for name in ("play", "genmove", "lz-analyze", "kata-analyze", "loadsgf", "kgs-genmove_cleanup", "quit"):
        assert name in listed and ask(engine, f"known_command {name}") == "= true\n\n"


def test_line_cleaning():
    assert clean_line("  play\tb e5 # a comment\r\n") == "play b e5"
    assert clean_line("pl\x01ay b\x7f e5") == "play b e5"
    assert clean_line("# only a comment") == ""
    assert parse_command("") is None
    assert parse_command("7 name") == ("7", "name", [])
    engine, _ = make()
    assert engine.handle_line("\n").text == ""
    assert engine.handle_line("   # comment\n").text == ""
    assert ask(engine, "3 name # hi\r\n") == "=3 gogame\n\n"
    assert ask(engine, "4\tknown_command\tname\r\n") == "=4 true\n\n"


def test_no_blank_line_inside_a_response():
    assert format_response(True, "1", "a\n\nb\n") == "=1 a\nb\n\n"
    assert format_response(True, None, "\nboard") == "=\nboard\n\n"


def test_internal_errors_are_answered_and_logged(capsys):
    engine, _ = make()

    def boom(args):
        raise RuntimeError("kaboom")
    engine.add_commands({"boom": boom})
    assert ask(engine, "9 boom") == "?9 internal error: RuntimeError: kaboom\n\n"
    assert "kaboom" in capsys.readouterr().err
    assert ask(engine, "name") == "= gogame\n\n"  # still in sync


# -- game state --------------------------------------------------------------------------------------------------


def test_play_illegal_and_capture():
    engine, session = make()
    for line in ("play b a2", "play w a1", "play b b1"):
        assert ask(engine, line) == "=\n\n"
    assert ask(engine, "captures b") == "= 1\n\n"
    assert ask(engine, "play w a1") == "? illegal move\n\n"  # suicide
    assert ask(engine, "play b a2") == "? illegal move\n\n"  # occupied
    assert ask(engine, "list_stones b") == "= B1 A2\n\n"
    assert ask(engine, "list_stones white") == "=\n\n"


def test_ko_and_undo_by_replay():
    engine, session = make()
    # a ko at B1/C1... set up:  black A1? use the classic shape on the first line
    for line in ("play b b1", "play w c1", "play b a2", "play w d2", "play b b3", "play w c3",
                 "play b c2", "play w b2"):  # white B2 captures C2: ko
        assert ask(engine, line) == "=\n\n", line
    assert ask(engine, "play b c2") == "? illegal move\n\n"  # simple ko
    before = session.board.stones().copy()
    assert ask(engine, "play b j9") == "=\n\n"
    assert ask(engine, "undo") == "=\n\n"
    assert (session.board.stones() == before).all()
    assert ask(engine, "play b c2") == "? illegal move\n\n"  # the ko survives the undo
    for _ in range(8):
        assert ask(engine, "undo") == "=\n\n"
    assert ask(engine, "undo") == "? cannot undo\n\n"
    assert not session.board.stones().any()


def test_handicap():
    engine, session = make(size=19)
    assert set(ask(engine, "fixed_handicap 4")[2:-2].split()) == {"D4", "Q4", "D16", "Q16"}
    assert set(ask(engine, "list_stones b")[2:-2].split()) == {"D4", "Q4", "D16", "Q16"}
    assert session.board.to_move == "W"
    assert ask(engine, "fixed_handicap 2") == "? board not empty\n\n"
    assert ask(engine, "play w k10") == "=\n\n"
    assert ask(engine, "undo") == "=\n\n"  # the handicap stays
    assert len(ask(engine, "list_stones b")[2:-2].split()) == 4
    assert ask(engine, "clear_board") == "=\n\n"
    reply = ask(engine, "place_free_handicap 12")
    stones = reply[2:-2].split()
    assert len(stones) == 12 and len(set(stones)) == 12
    assert ask(engine, "clear_board") == "=\n\n"
    assert ask(engine, "set_free_handicap c3 g7 e5") == "=\n\n"
    assert ask(engine, "list_stones b") == "= C3 E5 G7\n\n"
    assert session.board.to_move == "W"


def test_place_free_handicap_small_board():
    engine2, _ = make(size=5, player=FakePlayer(sizes=(5,)))
    stones = ask(engine2, "place_free_handicap 3")[2:-2].split()
    assert len(set(stones)) == 3
    assert ask(engine2, "place_free_handicap 3") == "? board not empty\n\n"


def test_showboard_and_komi():
    engine, session = make()
    ask(engine, "komi 0.5")
    ask(engine, "play b e5")
    reply = ask(engine, "showboard")
    assert reply.startswith("=\n")
    lines = reply[2:-2].split("\n")
    assert lines[0].split() == list("ABCDEFGHJ")
    assert lines[5].split() == ["5", ".", ".", ".", ".", "X", ".", ".", ".", ".", "5"]
    assert "komi 0.5" in reply and "white to play" in reply
    assert session.board.komi == 0.5


def test_final_score_and_status_with_ownership():
    engine, session = make(player=FakePlayer(dead={"E5"}))
    for line in ("play b c3", "play w e5", "play b g7"):
        ask(engine, line)
    assert ask(engine, "final_status_list dead") == "= E5\n\n"
    assert set(ask(engine, "final_status_list alive")[2:-2].split()) == {"C3", "G7"}
    assert ask(engine, "final_status_list seki") == "=\n\n"
    assert ask(engine, "final_score") == "= B+73.5\n\n"  # E5 is dead: all 81 points black's
    assert ask(engine, "komi 81") == "=\n\n"
    assert ask(engine, "final_score") == "= 0\n\n"


def test_final_score_territory():
    engine, _ = make(rules="territory", player=FakePlayer())
    ask(engine, "komi 0")
    ask(engine, "play b e5")
    assert ask(engine, "final_score") == "= B+80\n\n"


def test_genmove_plays_and_colours():
    engine, session = make()
    assert ask(engine, "genmove b") == "= A1\n\n"
    assert ask(engine, "genmove b") == "= B1\n\n"  # the same colour twice is allowed
    assert session.moves == [("B", (0, 0)), ("B", (0, 1))]
    assert ask(engine, "genmove x") == "? invalid color\n\n"
    assert ask(engine, "reg_genmove w") == "= C1\n\n"
    assert len(session.moves) == 2  # reg_genmove does not play


def test_genmove_without_networks():
    engine, _ = make(player=None)
    assert ask(engine, "genmove b") == "? no move generator\n\n"
    assert ask(engine, "boardsize 13") == "=\n\n"  # no player: any board size the board supports


def test_genmove_gets_the_time_budget():
    player = FakePlayer()
    engine, _ = make(player=player, seconds=2.5)
    ask(engine, "genmove b")
    assert player.calls[-1] == ("genmove", 2.5)
    ask(engine, "time_settings 100 0 0")
    ask(engine, "time_left w 30 0")
    ask(engine, "genmove w")
    assert player.calls[-1][1] == pytest.approx(30 / 40)  # 80 empty points: 40 moves left
    ask(engine, "time_settings 0 1 0")  # no time limit: back to --time
    ask(engine, "genmove b")
    assert player.calls[-1] == ("genmove", 2.5)


def test_loadsgf_printsgf_round_trip(tmp_path):
    moves = [("B", (2, 2)), ("W", (6, 6)), ("B", (2, 6)), ("W", None), ("B", (4, 4))]
    game = sgf.Game.from_moves(moves, size=9, komi=5.5)
    path = tmp_path / "game.sgf"
    path.write_text(sgf.dumps(game))
    engine, session = make(size=19)
    assert ask(engine, f"loadsgf {path}") == "=\n\n"
    assert session.size == 9 and session.komi == 5.5 and session.moves == moves
    assert ask(engine, "list_stones b") == "= C3 G3 E5\n\n"
    printed = ask(engine, "printsgf")
    assert printed.startswith("= (;")
    again = sgf.loads(printed[2:-2])[0]
    assert again.moves == moves and again.size == 9 and again.komi == 5.5
    out = tmp_path / "out.sgf"
    assert ask(engine, f"printsgf {out}") == "=\n\n"
    assert sgf.load(out)[0].moves == moves
    assert ask(engine, f"loadsgf {path} 3") == "=\n\n"  # up to, not including, move 3
    assert session.moves == moves[:2] and session.board.to_move == "B"
    empty = tmp_path / "empty.sgf"
    empty.write_text("(;GM[1]SZ[9])")
    for upto in ("0", "-1"):  # found by the process fuzz: once an IndexError on a record without moves
        assert ask(engine, f"loadsgf {empty} {upto}") == "? syntax error\n\n"
    assert ask(engine, f"loadsgf {empty} 1") == "=\n\n" and session.moves == []
    bad = tmp_path / "bad.sgf"
    bad.write_text("(;GM[1]SZ[13];B[aa])")
    assert ask(engine, f"loadsgf {bad}") == "? unacceptable size\n\n"
    assert session.size == 9  # unchanged
    junk = tmp_path / "junk.sgf"
    junk.write_text("this is not sgf")
    assert ask(engine, f"loadsgf {junk}").startswith("? cannot load file")


def sgfmill_position(text: str) -> np.ndarray:
    """The stones after a record's main line as sgfmill places them: each node's AB/AW/AE, then its move."""
    game = sgfmill_sgf.Sgf_game.from_bytes(text.encode("utf-8"))
    board = sgfmill_boards.Board(game.get_size())
    for node in game.get_main_sequence():
        if node.has_setup_stones():
            board.apply_setup(*node.get_setup_stones())
        colour, move = node.get_move()
        if colour is not None and move is not None:
            board.play(*move, colour)
    grid = np.zeros((board.side, board.side), np.int8)
    for colour, (row, col) in board.list_occupied_points():
        grid[row, col] = 1 if colour == "b" else -1
    return grid


SETUP_IN_LATER_NODES = [
    "(;SZ[9]KM[7];B[ee];AB[cc][cd]AW[gg];W[gc])",  # the repro: once E5 and G7 only
    "(;SZ[9];B[aa];AW[ba];W[ab])",  # setup, then a move that captures a recorded stone
    "(;SZ[9];B[ee];W[ed];AE[ee]AW[ef];B[aa];AB[ba]AW[bb];W[ab])",  # AE removes a played stone
    "(;GM[1]SZ[19]HA[2];AB[pd][dp]W[dd];B[pp];W[qc];AB[cc:ce])",  # handicap in the first move node, trailing setup
]


@pytest.mark.parametrize("text", SETUP_IN_LATER_NODES)
def test_loadsgf_applies_setup_in_every_node_like_sgfmill(tmp_path, text):
    path = tmp_path / "setup.sgf"
    path.write_text(text)
    engine, session = make(size=9)
    assert ask(engine, f"loadsgf {path}") == "=\n\n"
    assert (session.board.stones() == sgfmill_position(text)).all()
    game = sgf.loads(text)[0]
    assert session.board.to_move == coords.opponent(game.moves[-1][0])
    ask(engine, "undo")  # back into the record: the position before its last move
    shorter = text[:text.rindex(";" + game.moves[-1][0] + "[")] + ")"
    assert (session.board.stones() == sgfmill_position(shorter)).all()
    assert session.board.to_move == game.moves[-1][0]
    printed = sgf.loads(ask(engine, "printsgf")[2:-2])[0]  # printsgf writes the setup where it stood
    assert (printed.board_at().stones() == session.board.stones()).all()


def test_loadsgf_upto_applies_the_setup_before_that_move(tmp_path):
    path = tmp_path / "setup.sgf"
    path.write_text(SETUP_IN_LATER_NODES[0])
    engine, session = make(size=9)
    assert ask(engine, f"loadsgf {path} 2") == "=\n\n"  # before W[gc]: its node's setup is on the board
    assert ask(engine, "list_stones b") == "= E5 C6 C7\n\n" and ask(engine, "list_stones w") == "= G3\n\n"
    assert session.board.to_move == "W"


@pytest.mark.parametrize("text,message", [
    ("(;SZ[9];B[ee];AB[cc]AW[cc])", "point cc in both AB and AW"),
    ("(;SZ[9]AW[ee]AE[ee])", "point ee in both AW and AE"),
    ("(;SZ[9]KM[1e300];B[ee])", "KM[1e300] out of range"),
    ("(;SZ[9]KM[nan];B[ee])", "invalid number KM[nan]"),
    ("(;SZ[9];B[ee];W[ee])", "illegal move in the record"),
])
def test_loadsgf_refuses_contradictions_and_leaves_the_game(tmp_path, text, message):
    path = tmp_path / "bad.sgf"
    path.write_text(text)
    engine, session = make(size=9)
    ask(engine, "play b c3")
    reply = ask(engine, f"loadsgf {path}")
    assert reply.startswith("? cannot load file") and message in reply and reply.count("\n") == 2
    assert session.moves == [("B", (2, 2))] and ask(engine, "list_stones b") == "= C3\n\n"


def test_komi_out_of_range_is_a_syntax_error():
    engine, session = make(size=9)
    for value in ("1e300", "-700", "nan", "inf"):
        assert ask(engine, f"komi {value}") == "? syntax error\n\n"
    assert session.komi == 7.5 and ask(engine, "komi 625") == "=\n\n"


KO = {"B": [(0, 1), (1, 0), (2, 1)], "W": [(0, 2), (1, 3), (2, 2)]}  # (down, right) from a frame's top left
BLACK_TAKES, WHITE_TAKES = (1, 2), (1, 1)  # a black stone there is state "B"; a white one at (1, 1) state "A"


def triple_ko_record(cycles: int) -> str:
    """A 13x13 Japanese-rules record: three kos (rows 0-2, 4-6 and 8-10 from the top), black and white taking them
    in turn; every 6 moves the whole position repeats (legal under Japanese rules, not under superko)."""
    def point(frame: int, at: tuple[int, int]) -> str:
        return "abcdefghijklm"[at[1]] + "abcdefghijklm"[4 * frame + at[0]]

    setup = {"B": [], "W": []}
    for frame, state in enumerate("ABA"):
        for colour in "BW":
            setup[colour] += [point(frame, p) for p in KO[colour]]
        setup["W" if state == "A" else "B"].append(point(frame, WHITE_TAKES if state == "A" else BLACK_TAKES))
    cycle = [("B", 0), ("W", 1), ("B", 2), ("W", 0), ("B", 1), ("W", 2)]
    moves = "".join(f";{c}[{point(f, BLACK_TAKES if c == 'B' else WHITE_TAKES)}]" for c, f in cycle * cycles)
    return (f"(;GM[1]SZ[13]RU[Japanese]KM[6.5]AB[{']['.join(setup['B'])}]AW[{']['.join(setup['W'])}]PL[B]"
            f"{moves})")


def test_loadsgf_replays_a_triple_ko_record_then_applies_superko(tmp_path):
    path = tmp_path / "triple-ko.sgf"
    path.write_text(triple_ko_record(2))
    engine, session = make(size=13, player=FakePlayer(sizes=(9, 13, 19)))
    start = sgf.loads(triple_ko_record(0))[0].board_at().stones()
    assert ask(engine, f"loadsgf {path}") == "=\n\n"  # once "illegal move in the record" (superko)
    assert len(session.moves) == 12 and (session.board.stones() == start).all()
    assert (session.board.stones() == sgfmill_position(triple_ko_record(2))).all()
    cycle = [("B", 0), ("W", 1), ("B", 2), ("W", 0), ("B", 1), ("W", 2)]
    vertices = [(c, coords.to_gtp((12 - 4 * f - 1, (BLACK_TAKES if c == "B" else WHITE_TAKES)[1]))) for c, f in cycle]
    assert vertices[:2] == [("B", "C12"), ("W", "B8")]
    for colour, vertex in vertices[:5]:
        assert ask(engine, f"play {colour} {vertex}") == "=\n\n"
    assert ask(engine, f"play w {vertices[5][1]}") == "? illegal move\n\n"  # it would repeat the loaded position
    ask(engine, "undo")
    assert ask(engine, f"play b {vertices[4][1]}") == "=\n\n"


def test_loadsgf_reads_a_node_with_two_moves_as_two_and_warns(tmp_path, capsys):
    path = tmp_path / "two.sgf"
    path.write_text("(;SZ[9];B[ee]W[cc];B[gg])")
    engine, session = make(size=9)
    assert ask(engine, f"loadsgf {path}") == "=\n\n"
    assert session.moves == [("B", (4, 4)), ("W", (6, 2)), ("B", (2, 6))]
    err = capsys.readouterr().err
    assert "two.sgf:1:8: a node with both B and W: read as B[ee] then W[cc]" in err


def test_loadsgf_refuses_a_record_past_the_limit_before_replaying_it(tmp_path, monkeypatch):
    from gtp.session import MAX_RECORD_MOVES

    plays = []
    play = Board.play
    monkeypatch.setattr(Board, "play", lambda self, *a, **k: plays.append(1) or play(self, *a, **k))
    path = tmp_path / "long.sgf"
    path.write_text("(;SZ[9]" + ";B[];W[]" * 100_000 + ")")
    engine, session = make(size=9)
    reply = ask(engine, f"loadsgf {path}")
    assert reply == f"? cannot load file: 200000 moves, more than the {MAX_RECORD_MOVES} this engine replays\n\n"
    assert plays == [] and session.moves == []
    path.write_text("(;SZ[9]" + ";B[];W[]" * (MAX_RECORD_MOVES // 2) + ")")
    assert ask(engine, f"loadsgf {path}") == "=\n\n" and len(plays) == MAX_RECORD_MOVES


def test_printsgf_with_handicap():
    engine, _ = make()
    ask(engine, "fixed_handicap 2")
    ask(engine, "play w e5")
    game = sgf.loads(ask(engine, "printsgf")[2:-2])[0]
    assert game.handicap == 2 and len(game.setup[0]) == 2 and game.moves == [("W", (4, 4))]


# -- analysis streams ----------------------------------------------------------------------------------------------


def run_stream(stream: Stream, seconds: float) -> list[str]:
    lines: list[str] = []
    stop = threading.Event()
    t = threading.Thread(target=stream.run, args=(lines.append, stop))
    t.start()
    time.sleep(seconds)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    return lines


def test_lz_analyze_stream_core():
    engine, _ = make()
    reply = engine.handle_line("5 lz-analyze b 2")
    assert reply.text == "=5\n" and reply.stream is not None
    lines = run_stream(reply.stream, 0.2)
    assert lines
    for line in lines:
        infos = ["info " + part for part in line.split("info ")[1:]]
        assert infos
        for order, info in enumerate(infos):
            words = info.split()
            pv_at = words.index("pv")
            fields = dict(zip(words[1:pv_at:2], words[2:pv_at:2]))
            assert set(fields) == {"move", "visits", "winrate", "prior", "lcb", "order"}
            for key in ("visits", "winrate", "prior", "lcb", "order"):
                assert fields[key].lstrip("-").isdigit()
            assert int(fields["order"]) == order
            assert len(words) > pv_at + 1


def test_kata_analyze_floats_and_genmove_analyze():
    engine, session = make(seconds=0.1)
    reply = engine.handle_line("kata-analyze interval 2")
    line = run_stream(reply.stream, 0.1)[0]
    first, second = line.split("info ")[1:3]
    assert "winrate 0.500000" in first and "scoreMean 2.500 scoreStdev 4.000 scoreLead 2.500 " in first
    assert "winrate 0.600000" in second and "score" not in second  # no estimate: no score fields
    assert "ownership" not in line
    ask(engine, "play b a9")
    line = run_stream(engine.handle_line("kata-analyze w 2 ownership true").stream, 0.1)[0]
    values = [float(v) for v in line.split(" ownership ")[1].split()]
    assert len(values) == 81 and values[0] == -1.0 and not any(values[1:])  # A9 first, for white to move
    line = run_stream(engine.handle_line("lz-analyze b 2 ownership true").stream, 0.1)[0]
    assert "ownership" not in line  # Leela Zero's commands have no ownership
    reply = engine.handle_line("lz-genmove_analyze w 2")
    assert not reply.stream.interruptible
    lines = run_stream(reply.stream, 0.0)
    assert lines[-1] == "play A1" and lines[0].startswith("info move")
    assert session.moves == [("B", (8, 0)), ("W", (0, 0))]
    assert ask(engine, "lz-genmove_analyze 2") == "? syntax error\n\n"


def decisions(setup: str, **options) -> dict[str, str]:
    """The move of ``genmove b``, ``lz-genmove_analyze b`` and ``kata-genmove_analyze b`` on the position after
    the GTP commands ``setup``, each from a fresh engine (shipped 9x9 nets) on the same seed, with its info lines
    checked."""
    from gtp.session import EnginePlayer

    moves = {}
    for command in ("genmove", "lz-genmove_analyze", "kata-genmove_analyze"):
        player = EnginePlayer(None, **({"seed": 3, "threads": 1, "batch_size": 8, "rollout": "uniform"} | options))
        engine, session = make(size=9, player=player)
        for line in setup.split(";") if setup else ():
            assert ask(engine, line) == "=\n\n"
        if command == "genmove":
            moves[command] = ask(engine, "genmove b")[2:-2]
            continue
        reply = engine.handle_line(f"{command} b 1")
        lines: list[str] = []
        reply.stream.run(lines.append, threading.Event())
        assert lines[-1].startswith("play ")
        assert all(line.startswith("info move ") for line in lines[:-1])
        moves[command] = lines[-1][len("play "):]
    return moves


@pytest.mark.parametrize("setup,options,expected", [
    ("play b e5;play w c3", {"visits": 64}, None),  # an ordinary move
    # a threshold no win rate reaches: resign after RESIGN_MIN_VISITS (100) visits, never before
    ("play b e5;play w c3", {"visits": 100, "resign_threshold": 1.0, "resign_consecutive": 1, "early_stop": False},
     "resign"),
    ("play b e5;play w c3", {"visits": 99, "resign_threshold": 1.0, "resign_consecutive": 1, "early_stop": False},
     None),
    ("play b e5;play w c3", {"visits": 100, "resign_threshold": 1.0, "early_stop": False}, None),  # one of 3
    ("komi -10;play b e5;play w pass", {"visits": 64}, "pass"),  # the opponent passed and passing wins
])
def test_genmove_and_both_genmove_analyze_forms_decide_alike(setup, options, expected):
    moves = decisions(setup, **options)
    assert len(set(moves.values())) == 1, moves
    move = moves["genmove"]
    assert move == expected if expected else move not in ("pass", "resign")


def gfx(reply: str) -> dict[str, list[str]]:
    """A gfx reply's lines by keyword (INFLUENCE, LABEL, VAR, TEXT) -> their words."""
    assert reply.startswith("= ") and reply.endswith("\n\n")
    return {line.split()[0]: line.split()[1:] for line in reply[2:-2].split("\n")}


def test_gogui_views_are_listed_and_answer_gfx():
    engine, session = make()
    listed = ask(engine, "gogui-analyze_commands")[2:-2].split("\n")
    assert len(listed) == 3
    for entry in listed:
        kind, label, command = entry.split("/")
        assert kind == "gfx" and label and ask(engine, f"known_command {command}") == "= true\n\n"
    ask(engine, "play b a1")  # white to move: the first legal point is B1
    policy = gfx(ask(engine, "gogame-policy"))
    shading = dict(zip(policy["INFLUENCE"][::2], map(float, policy["INFLUENCE"][1::2])))
    assert shading["B1"] == -1.0 and len(shading) == 80  # white's view: negative; 0.49 / 79 >= 0.5% each
    assert dict(zip(policy["LABEL"][::2], policy["LABEL"][1::2]))["B1"] == "50"
    assert policy["TEXT"][:3] == ["white:", "B1", "50.0%,"] and policy["TEXT"][-2:] == ["(pass", "1.0%)"]
    winrates = gfx(ask(engine, "gogame-winrates"))
    assert winrates["LABEL"][:2] == ["B1", "50"] and winrates["VAR"] == ["w", "B1", "b", "pass"]
    assert winrates["TEXT"][:3] == ["white:", "B1", "50.0%"]
    ownership = gfx(ask(engine, "gogame-ownership"))
    values = dict(zip(ownership["INFLUENCE"][::2], map(float, ownership["INFLUENCE"][1::2])))
    assert len(values) == 81 and values["A1"] == 1.0 and sum(values.values()) == 1.0
    assert ownership["TEXT"] == ["area", "estimate:", "W+6.5"]  # 1 point for black, komi 7.5


def test_ponder_job_only_after_our_own_move():
    engine, session = make(ponder=True)
    assert session.ponder_job() is None  # nothing played yet
    ask(engine, "genmove b")
    job = session.ponder_job()
    assert job is not None
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    job(stop)  # searches white's position until stopped
    assert ("analyze", "W") in session.player.calls
    ask(engine, "play w e5")
    assert session.ponder_job() is None  # the opponent moved: our turn, no pondering
    engine, session = make()
    ask(engine, "genmove b")
    assert session.ponder_job() is None  # pondering is off by default


def test_serve_ponders_silently_between_commands():
    engine, session = make(ponder=True)
    engine.idle = session.ponder_job
    out = drive(engine, "1 genmove b\n2 name\n3 quit\n", pause=0.2)
    assert out == "=1 A1\n\n=2 gogame\n\n=3\n\n"
    assert ("analyze", "W") in session.player.calls  # pondered while waiting for "2 name"


def drive(engine: GtpEngine, script: str, pause: float = 0.0) -> str:
    """Run :func:`serve` over a scripted stdin (optionally pausing between lines); return stdout."""
    import io

    class SlowIn:
        def __iter__(self):
            for line in script.splitlines(keepends=True):
                time.sleep(pause)
                yield line

    out = io.StringIO()
    serve(engine, SlowIn(), out)
    return out.getvalue()


def test_serve_stops_analysis_on_the_next_command():
    engine, _ = make()
    out = drive(engine, "1 lz-analyze 1\n2 name\n3 quit\nname\n", pause=0.15)
    head, rest = out.split("=1\n", 1)
    assert head == ""
    analysis, after = rest.split("\n\n", 1)
    assert all(line.startswith("info move ") for line in analysis.split("\n"))
    assert after == "=2 gogame\n\n=3\n\n"  # nothing after quit


# -- fuzz ------------------------------------------------------------------------------------------------------------

WORDS = ["play", "genmove", "undo", "boardsize", "komi", "b", "w", "white", "pass", "e5", "a1", "j9", "z0", "t19",
         "-1", "0", "1", "7", "19", "25", "26", "9", "1e400", "nan", "inf", "fixed_handicap", "place_free_handicap",
         "set_free_handicap", "final_score", "final_status_list", "dead", "alive", "time_settings", "time_left",
         "kgs-time_settings", "byoyomi", "canadian", "absolute", "none", "list_stones", "captures", "showboard",
         "clear_board", "known_command", "reg_genmove", "printsgf", "loadsgf", "/dev/null", "#", "\t", "\x00",
         "\x1b[0m", "é", "∞", "", "12", "kgs-genmove_cleanup", "name", "protocol_version", "list_commands",
         "analyze", "genmove_analyze", "gogui-analyze_commands", "gogame-policy", "gogame-winrates",
         "gogame-ownership", "ownership", "true"]


class ClosedPipe(io.StringIO):
    """A stdout whose reader goes away after the first ``accept`` writes."""

    def __init__(self, accept: int) -> None:
        super().__init__()
        self.accept = accept

    def write(self, text: str) -> int:
        if self.accept <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.accept -= 1
        return super().write(text)


def test_a_controller_gone_during_analysis_ends_quietly(capsys):
    engine, _ = make()

    def lines():
        yield "lz-analyze 1\n"
        time.sleep(0.3)  # the stream keeps writing into the closed pipe meanwhile
        yield "genmove b\n"

    out = ClosedPipe(accept=2)  # the header and one info line
    serve(engine, lines(), out)
    assert out.getvalue().startswith("=\ninfo move ")
    err = capsys.readouterr().err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert err.count("the controller closed the output pipe") == 1


def test_fuzz_core_never_raises_and_stays_well_formed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "printsgf WORD" writes a file named WORD
    rng = random.Random(1)
    engine, _ = make()
    for _ in range(10_000):
        if rng.random() < 0.1:
            line = "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randrange(0, 20)))
        else:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 5)))
        if rng.random() < 0.3:
            line = f"{rng.randrange(100)} {line}"
        line += rng.choice(["", "\n", "\r\n", "\r"])
        reply = engine.handle_line(line)
        if reply.stream is not None:  # an analysis: only its header now (the process fuzz runs streams)
            assert re.fullmatch(r"=\d*\n", reply.text), reply.text
            continue
        if reply.end:
            engine, _ = make()
        if not reply.text:
            assert clean_line(line) == "" or not clean_line(line).split()
            continue
        text = reply.text
        assert text.endswith("\n\n") and text[0] in "=?", repr(text)
        assert "\n\n" not in text[:-2], repr(text)
        assert "internal error" not in text, (line, text)


# -- time budgets ----------------------------------------------------------------------------------------------------


def test_time_budget_absolute():
    tc = TimeControl.from_gtp(600, 0, 0)
    assert tc.system == "absolute"
    assert tc.budget("B", 361) == pytest.approx(600 / 180)
    tc.update("B", 30, 0)
    assert tc.budget("B", 10) == pytest.approx(30 / 10)  # at least MIN_MOVES_LEFT moves
    tc.update("B", 0.5, 0)
    assert tc.budget("B", 10) == MIN_SECONDS  # below the safety margin: the floor


def test_time_budget_canadian_and_byoyomi():
    tc = TimeControl.from_gtp(0, 300, 25)
    assert tc.system == "canadian" and tc.clocks["W"].stones == 25
    assert tc.budget("W", 200) == pytest.approx(300 / 25)
    tc.update("W", 20, 2)
    assert tc.budget("W", 200) == pytest.approx(10)
    tc.update("W", 1.5, 1)
    assert tc.budget("W", 200) == pytest.approx(1.5 - SAFETY_SECONDS)
    jp = TimeControl("byoyomi", 60, 10, periods=3)
    assert jp.budget("B", 81) == pytest.approx(60 / 40 + 8)
    jp.update("B", 10, 3)
    assert jp.budget("B", 81) == pytest.approx(10 - SAFETY_SECONDS)
    jp.spend("B", 4)
    assert jp.clocks["B"].seconds == 10  # a period restarts after a move


def test_time_budget_none_and_spend():
    assert TimeControl.from_gtp(0, 5, 0).budget("B", 81) is None  # GTP: byo-yomi without stones = no limit
    assert TimeControl.from_gtp(0, 0, 0).budget("B", 81) is None
    tc = TimeControl.from_gtp(10, 0, 0)
    tc.spend("B", 4)
    assert tc.clocks["B"].seconds == 6 and tc.clocks["W"].seconds == 10
    ca = TimeControl.from_gtp(1, 30, 3)
    ca.spend("B", 2)  # main time ran out: byo-yomi starts
    assert (ca.clocks["B"].seconds, ca.clocks["B"].stones) == (30, 3)
    with pytest.raises(ValueError):
        TimeControl.from_gtp(-1, 0, 0)


# -- end to end ------------------------------------------------------------------------------------------------------


def start_engine(*args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "gtp", "--size", "9", "--visits", "16", "--seed", "1", *args],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


@contextlib.contextmanager
def engine_process(*args):
    """``python -m gtp`` for the block, which must then answer ``quit`` and exit 0; killed if it does not."""
    proc = start_engine(*args)
    try:
        yield proc
        assert send(proc, "quit") == "=\n\n"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_response(proc, timeout=120.0) -> str:
    """Lines up to the blank line that ends a response (a reader thread keeps timeouts honest)."""
    q: queue.Queue = queue.Queue()

    def reader():
        lines = []
        while True:
            line = proc.stdout.readline()
            if line == "" or line == "\n":
                q.put("".join(lines) + line)
                return
            lines.append(line)
    threading.Thread(target=reader, daemon=True).start()
    return q.get(timeout=timeout)


def send(proc, line, timeout=120.0) -> str:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return read_response(proc, timeout)


def test_end_to_end_subprocess():
    with engine_process() as proc:
        assert send(proc, "1 protocol_version") == "=1 2\n\n"
        assert send(proc, "boardsize 26") == "? unacceptable size\n\n"
        assert send(proc, "boardsize 7") == "=\n\n"  # the shipped general dual net plays every size
        assert send(proc, "boardsize 9") == "=\n\n"
        assert send(proc, "clear_board") == "=\n\n"
        assert send(proc, "play b e5") == "=\n\n"
        reply = send(proc, "2 genmove w")
        assert re.fullmatch(r"=2 ([A-HJ][1-9]|pass|resign)\n\n", reply), reply
        reply = send(proc, "3 genmove b")
        assert re.fullmatch(r"=3 ([A-HJ][1-9]|pass|resign)\n\n", reply), reply
        assert send(proc, "play b e5") == "? illegal move\n\n"
        assert send(proc, "undo") == "=\n\n"
        assert send(proc, "showboard").startswith("=\n   A B C D E F G H J\n")
        assert send(proc, "frob") == "? unknown command\n\n"
        # lz-analyze: "=" at once, info lines until the next command
        proc.stdin.write("4 lz-analyze 5\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "=4\n"
        info = proc.stdout.readline()
        time.sleep(0.3)
        proc.stdin.write("5 name\n")
        proc.stdin.flush()
        rest = read_response(proc)
        assert info.startswith("info move ")
        for line in [info] + rest.splitlines()[:-1]:
            if not line.strip():
                continue
            for part in line.split("info ")[1:]:
                words = part.split()
                assert words[0] == "move" and "pv" in words
                pv_at = words.index("pv")
                assert all(words[k].isdigit() for k in range(3, pv_at, 2))  # lz: integers
        assert read_response(proc) == "=5 gogame\n\n"  # the reply to name follows the analysis' blank line
    assert "ready" in proc.stderr.read()


def fuzz_session(rng: random.Random, lines: int) -> list[bytes]:
    """``lines`` random input lines for one engine process, then an analysis interrupted by ``quit``: random
    bytes (no lone CR: that would be a line break), random commands with random arguments (no time settings, so
    that each genmove stays at its few visits), huge lines, analyses interrupted by the next line, and CRLF."""
    out = []
    # the slow views (a second of search, 200 rollouts) are left to the core fuzz: here they would only burn CPU
    commands = [w for w in WORDS if (w.isidentifier() or "-" in w) and w not in ("gogame-winrates", "gogame-ownership")]
    for _ in range(lines):
        roll = rng.random()
        if roll < 0.15:
            line = bytes(rng.choice([b for b in range(256) if b not in (10, 13)]) for _ in range(rng.randrange(40)))
        elif roll < 0.17:
            line = (" ".join(rng.choice(WORDS) for _ in range(20_000))).encode()[:rng.randrange(1, 300_000)]
        elif roll < 0.25:
            line = f"{rng.choice(['lz-analyze', 'kata-analyze', 'analyze'])} {rng.choice(['b', 'w', ''])} 1".encode()
        else:
            words = [rng.choice(commands)] + [rng.choice(WORDS) for _ in range(rng.randrange(4))]
            line = " ".join(words).encode("utf-8")
        if rng.random() < 0.2:
            line = f"{rng.randrange(1000)} ".encode() + line
        out.append(line + rng.choice([b"\n", b"\r\n"]))
    return out + [b"kata-analyze 1 ownership true\n", b"quit\n", b"name\n"]


def expected_replies(lines: list[bytes]) -> int:
    """How many responses the lines call for: each non-empty command up to and including the first quit."""
    count = 0
    for raw in lines:
        parsed = parse_command(clean_line(raw.decode("utf-8", errors="replace").rstrip("\r\n")))
        if parsed is None:
            continue
        count += 1
        if parsed[1] == "quit":
            break
    return count


@pytest.mark.parametrize("seed", range(2))
def test_fuzz_engine_process_answers_every_line(seed, tmp_path):
    """2,500 random and malformed lines (5,000 over the two seeds; the core fuzz above takes 10,000) piped into ``python -m gtp``: the process
    exits cleanly at quit and its stdout is exactly one well-formed response per command."""
    lines = fuzz_session(random.Random(seed), 2500)
    proc = subprocess.run([sys.executable, "-m", "gtp", "--size", "9", "--visits", "4", "--time", "0.02",
                           "--seed", "1", "--ponder"],
                          cwd=tmp_path, input=b"".join(lines), capture_output=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"internal error" not in proc.stderr, proc.stderr.decode()[-2000:]
    out = proc.stdout.decode("utf-8")
    assert out.endswith("\n\n")
    replies = out[:-2].split("\n\n")
    assert len(replies) == expected_replies(lines)
    for reply in replies:
        head, *rest = reply.split("\n")
        assert re.fullmatch(r"[=?]\d*( .*)?", head), head[:200]
        assert all(ln.startswith(("info move ", "play ")) for ln in rest) or head[0] == "=", reply[:300]


def test_end_to_end_ponder_and_gogui_views():
    with engine_process("--ponder", "--time", "0.3") as proc:
        first = send(proc, "genmove b")
        assert re.fullmatch(r"= [A-HJ][1-9]\n\n", first), first
        time.sleep(1.0)  # pondering white's position
        reply = send(proc, "play w " + ("C3" if first != "= C3\n\n" else "G7"))
        assert reply == "=\n\n"
        assert re.fullmatch(r"= [A-HJ][1-9]\n\n", send(proc, "genmove b"))
        for command, keywords in [("gogame-policy", {"INFLUENCE", "LABEL", "TEXT"}),
                                  ("gogame-winrates", {"LABEL", "VAR", "TEXT"}),
                                  ("gogame-ownership", {"INFLUENCE", "TEXT"})]:
            assert set(gfx(send(proc, command))) == keywords, command
    assert "internal error" not in proc.stderr.read()


def test_cli_refuses_a_size_without_networks():
    policy9 = str(REPO / "gogame" / "weights" / "policy9.pt")  # a policy net plays the size it was trained on
    proc = subprocess.run([sys.executable, "-m", "gtp", "--weights", policy9, "--size", "7"], cwd=REPO,
                          capture_output=True, text=True, input="", timeout=60)
    assert proc.returncode != 0 and "no networks for 7x7" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("option,value", [
    ("--komi", "nan"), ("--komi", "1e300"), ("--visits", "0"), ("--visits", "-5"), ("--visits", "many"),
    ("--threads", "0"), ("--time", "-1"), ("--time", "0"), ("--time", "inf"), ("--resign-threshold", "2"),
    ("--resign-threshold", "-0.1"), ("--resign-consecutive", "0"), ("--batch", "0"), ("--lambda", "5"),
    ("--lambda", "nan"), ("--size", "1"),
    ("--size", "26"), ("--seed", "-1"), ("--c-puct", "-1"), ("--fpu-reduction", "-0.2"), ("--fpu-reduction", "nan"),
])
def test_every_bad_number_on_the_command_line_is_one_line_and_exit_2(option, value, capsys):
    from gtp.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main([option, value])  # exits before anything is loaded or GTP starts
    out, err = capsys.readouterr()
    assert stopped.value.code == 2 and out == ""
    assert err.startswith(f"gogame-gtp: error: argument {option}: ") and err.count("\n") == 1


def foreign_checkpoints(tmp_path: Path) -> dict[str, Path]:
    """Weights that cannot serve: a missing file, a corrupt one, a foreign torch file, a folder with a bad net."""
    import torch

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "policy9.pt").write_bytes((REPO / "gogame" / "weights" / "policy9.pt").read_bytes()[:5000])
    return {"missing": tmp_path / "TYPO.pt", "corrupt": corrupt, "foreign": foreign, "folder": folder}


@pytest.mark.parametrize("kind", ["missing", "corrupt", "foreign", "folder"])
def test_bad_weights_are_refused_at_start_in_one_line(kind, tmp_path, capsys):
    from gtp.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(["--weights", str(foreign_checkpoints(tmp_path)[kind]), "--size", "9"])
    message = str(stopped.value.code)
    assert message.startswith("gogame-gtp: ") and "\n" not in message and "Traceback" not in message
    assert capsys.readouterr().out == ""


def test_bad_weights_folder_exits_1_without_a_traceback_before_gtp(tmp_path):
    folder = foreign_checkpoints(tmp_path)["folder"]
    proc = subprocess.run([sys.executable, "-m", "gtp", "--weights", str(folder), "--size", "9"], cwd=REPO,
                          capture_output=True, text=True, input="protocol_version\n", timeout=120)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"gogame-gtp: cannot load networks for 9x9: {folder}")


def test_lambda_below_1_without_a_value_net_is_refused_at_start():
    from gtp.__main__ import main

    # policy19 alone has no value net; once the engine fell back to lambda 1 in a branch that never ran
    with pytest.raises(SystemExit, match="cannot load networks for 19x19: lambda_ < 1 mixes in a value network"):
        main(["--size", "19", "--weights", str(nets.WEIGHTS_DIR / "policy19.pt"), "--lambda", "0.5"])


def test_networks_are_loaded_and_warmed_before_the_first_command():
    from gtp.__main__ import build_engine, build_parser

    engine = build_engine(build_parser().parse_args(["--size", "9", "--visits", "16", "--seed", "1"]))
    player = engine.handlers["genmove"].__self__.player
    assert set(player._engines) == {9}  # loaded at start, not at the first genmove
    assert player._search_ready.wait(300) and player._policy_ready.is_set()  # the background warm-up ends
    reply = engine.handle_line("genmove b")
    assert reply.text.startswith("= ") and set(player._engines) == {9}


def test_what_runs_before_gtp_starts_calls_no_numba_kernel():
    """Loading the networks and the session, what the engine does before its first reply, runs no kernel: on an
    empty cache each would be compiled there (seconds, the first of them the longest), not in the warm-up."""
    script = """
import numba
from gogame import fastboard, features, mcts, rollout
from gtp.__main__ import build_parser, engine_options
from gtp.session import EnginePlayer, Session
player = EnginePlayer(None, **engine_options(build_parser().parse_args(["--size", "9"])))
player.engine(9)
Session(player, size=9, komi=7.5)
print([f"{module.__name__}.{name}" for module in (fastboard, features, mcts, rollout)
       for name, kernel in vars(module).items()
       if isinstance(kernel, numba.core.registry.CPUDispatcher) and kernel.signatures])
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_quit_during_the_warm_up_ends_the_process_cleanly():
    """A GUI that quits at once, while the background warm-up runs (numba, torch), gets ``=`` and exit status 0:
    the interpreter's shutdown under the running thread aborted the process once (SIGABRT, "terminate called
    without an active exception"), most of the time."""
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-m", "gtp", "--size", "9", "--visits", "16"], cwd=REPO, input="quit\n",
                              capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert (proc.returncode, proc.stdout) == (0, "=\n\n"), proc.stderr[-2000:]
        assert "terminate called" not in proc.stderr


def test_while_the_search_compiles_genmove_plays_the_policy_move(capsys):
    from gtp.session import WARMUP_PATIENCE_SECONDS, EnginePlayer

    player = EnginePlayer(None, visits=16, seed=1, symmetries="none")
    player.prepare(9)
    player._search_ready.clear()  # as while a background warm-up compiles the search
    player._warm_started = time.monotonic() - WARMUP_PATIENCE_SECONDS
    board = Board(9)
    board.play("e5")
    p = player.engine(9).evaluate(board).moves[:-1]
    assert player.genmove(board.copy(), None) == coords.to_gtp(coords.from_flat(int(np.argmax(p)), 9))
    assert "this move is the policy net's alone" in capsys.readouterr().err
    assert player.analyze(board.copy(), 0.01) == []  # no candidates until the search is ready


def test_gogame_wait_ready_answers_once_the_background_warm_up_has_ended():
    from gtp.session import EnginePlayer

    player = EnginePlayer(None, visits=16)
    engine, _ = make(size=9, player=player)
    assert ask(engine, "known_command gogame-wait_ready") == "= true\n\n"
    player._search_ready.clear()  # as while a background warm-up compiles the search
    ready = threading.Timer(0.3, player._search_ready.set)
    ready.start()
    started = time.monotonic()
    assert ask(engine, "gogame-wait_ready") == "=\n\n" and time.monotonic() - started >= 0.25
    assert ask(engine, "gogame-wait_ready 9").startswith("?")  # no arguments


def lizzie_accepts(version_reply: str) -> bool:
    """Lizzie 0.7.4's check (Leelaz.parseLine): the first word's number after the first dot is at least 15."""
    words = version_reply.strip().split(" ")
    try:
        return int(words[1].split(".")[1]) >= 15
    except (IndexError, ValueError):
        return False  # Lizzie's parseInt would throw


def test_lz_compatible_names_itself_so_and_answers_a_version_lizzie_accepts():
    from gtp.__main__ import LZ_VERSION, build_engine, build_parser

    plain = build_engine(build_parser().parse_args(["--size", "9"]))
    assert ask(plain, "version") == f"= {gogame.__version__}\n\n" and ask(plain, "name") == "= gogame\n\n"
    assert not lizzie_accepts(ask(plain, "version"))  # Lizzie: "requires version 0.15 or later" (found 0.1.0)
    lz = build_engine(build_parser().parse_args(["--size", "9", "--lz-compatible"]))
    assert ask(lz, "name") == f"= gogame (Leela Zero {LZ_VERSION} compatible)\n\n"
    version = ask(lz, "version")
    assert lizzie_accepts(version) and f"gogame {gogame.__version__}" in version


def test_game_against_gnugo_over_gtp_pipes():
    """A 9x9 game, gogame (black) against GNU Go level 1 (white), both over GTP pipes, capped at 40 moves;
    every move gogame makes must be accepted by GNU Go, and both must agree on the final position."""
    from tests.gnugo import GnuGo

    gnugo = GnuGo("--chinese-rules", "--level", "1")
    proc = start_engine()
    try:
        for cmd in ("boardsize 9", "clear_board", "komi 7.5"):
            gnugo.send(cmd)
            assert send(proc, cmd) == "=\n\n"
        passes = 0
        for n in range(40):
            colour = "b" if n % 2 == 0 else "w"
            if colour == "b":
                move = send(proc, "genmove b")[2:-2]
                if move == "resign":
                    break
                gnugo.send(f"play b {move}")
            else:
                move = gnugo.send("genmove w")
                if move.lower() == "resign":
                    break
                assert send(proc, f"play w {move}") == "=\n\n", move
            passes = passes + 1 if move.lower() == "pass" else 0
            if passes == 2:
                break
        ours = sorted(send(proc, "list_stones b")[2:-2].split() + send(proc, "list_stones w")[2:-2].split())
        theirs = sorted(gnugo.send("list_stones black").split() + gnugo.send("list_stones white").split())
        assert ours == theirs
        assert re.fullmatch(r"= (B\+|W\+)[0-9.]+\n\n|= 0\n\n", send(proc, "final_score"))
        assert send(proc, "quit") == "=\n\n"
    finally:
        gnugo.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_command_line_options_reach_the_engine():
    from gtp.__main__ import build_parser, engine_options
    from gtp.session import EnginePlayer

    args = build_parser().parse_args(["--size", "9", "--symmetries", "all", "--lambda", "1", "--batch", "4",
                                      "--no-early-stop", "--c-puct", "2.5", "--fpu-reduction", "0.2"])
    engine = EnginePlayer(None, **engine_options(args)).engine(9)
    assert engine.evaluator.symmetries == "all" and not engine.early_stop
    assert engine.config.lambda_ == 1.0 and engine.config.batch_size == 4
    assert engine.config.c_puct == 2.5 and engine.config.fpu_reduction == 0.2
    defaults = engine_options(build_parser().parse_args([]))
    assert defaults["symmetries"] == "random" and defaults["early_stop"]
    assert "c_puct" not in defaults and "fpu_reduction" not in defaults  # SearchConfig's own defaults
    assert "rollouts_from" not in defaults
    assert engine_options(build_parser().parse_args(["--rollouts-from", "0.3"]))["rollouts_from"] == 0.3
    assert defaults["backend"] == "auto" and "onnx_threads" not in defaults  # the Engine's rule (net_threads)
    args = build_parser().parse_args(["--size", "9", "--backend", "onnx", "--onnx-threads", "2"])
    engine = EnginePlayer(None, **engine_options(args)).engine(9)
    evaluator = engine.evaluator
    assert evaluator.backend == "onnx" and evaluator._runners[evaluator.policy_net.kind].threads == 2


def test_an_onnx_backend_that_is_not_installed_stops_the_engine_with_the_install_command(monkeypatch):
    from gtp.__main__ import build_engine, build_parser

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(SystemExit, match="pip install onnxruntime"):
        build_engine(build_parser().parse_args(["--size", "9", "--backend", "onnx"]))
