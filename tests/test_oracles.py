"""The board against independent oracles: sgfmill on real games, GNU Go on scores and handicap."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sgfmill import boards

from gogame import Board, coords
from gogame import fastboard as fb
from gogame.sgf import loads
from tests.gnugo import GnuGo
from tests.shared import shared_archive
from training.data.corpus import iter_sgf



def sgfmill_stones(board: boards.Board) -> np.ndarray:
    grid = np.zeros((board.side, board.side), np.int8)
    for colour, (row, col) in board.list_occupied_points():
        grid[row, col] = 1 if colour == "b" else -1
    return grid


@pytest.mark.parametrize("archive,games", [("pro9.tar.xz", 517), ("pro19.tar.xz", 150), ("kgs6d19.tar.xz", 150)])
def test_real_games_replay_like_sgfmill(archive, games):
    """Every recorded move is legal and the stones after every move equal sgfmill's board."""
    path = shared_archive(archive)
    checked = 0
    for name, data in itertools.islice(iter_sgf([path]), games):
        game = loads(data, name)[0]
        oracle = boards.Board(game.size)
        black, white = game.setup
        oracle.apply_setup(black, white, ())
        for board, colour, move in game.replay():  # the board before each move
            assert (board.stones() == sgfmill_stones(oracle)).all(), (name, len(board.history))
            if move is not None:
                oracle.play(move[0], move[1], colour.lower())
        assert (board.stones() == sgfmill_stones(oracle)).all(), name
        checked += 1
    assert checked == games


def final_position(size: int, seed: int) -> fb.FastBoard:
    """A finished random game: both sides passed with only eyes left to fill."""
    fb.seed(seed)
    b = fb.new_board(size)
    fb.playout(b, 3 * size * size)
    return b


@pytest.mark.parametrize("size,games", [(9, 12), (13, 4), (19, 3)])
def test_area_score_of_finished_games_equals_gnugo(size, games):
    gnugo = GnuGo("--chinese-rules", "--level", "1")
    try:
        for seed in range(games):
            b = final_position(size, seed)
            board = Board(size, komi=7.5)
            grid = coords.unpad(b.colour, size)
            black = [tuple(p) for p in np.argwhere(grid == fb.BLACK)]
            white = [tuple(p) for p in np.argwhere(grid == fb.WHITE)]
            board.setup(black, white)
            gnugo.send(f"boardsize {size}")
            gnugo.send("clear_board")
            gnugo.send("komi 7.5")
            for colour, points in (("b", black), ("w", white)):
                for point in points:
                    gnugo.send(f"play {colour} {coords.to_gtp(point)}")
            assert board.result() == gnugo.send("final_score"), f"seed {seed}\n{board}"
    finally:
        gnugo.close()


@pytest.mark.parametrize("size,n", [(9, 2), (9, 5), (9, 9), (13, 4), (13, 7), (19, 3), (19, 6), (19, 8), (19, 9)])
def test_fixed_handicap_equals_gnugo(size, n):
    gnugo = GnuGo()
    try:
        gnugo.send(f"boardsize {size}")
        expected = gnugo.send(f"fixed_handicap {n}").split()
    finally:
        gnugo.close()
    assert sorted(Board(size).fixed_handicap(n)) == sorted(expected)


def test_real_game_stones_equal_gnugo_list_stones():
    path = shared_archive("pro19.tar.xz")
    gnugo = GnuGo("--chinese-rules")
    try:
        for name, data in itertools.islice(iter_sgf([path]), 2):
            game = loads(data, name)[0]
            gnugo.send(f"boardsize {game.size}")
            gnugo.send("clear_board")
            for board, colour, move in game.replay():
                gnugo.send(f"play {colour} {coords.to_gtp(move)}")
            for colour, code in (("black", 1), ("white", -1)):
                listed = {coords.from_gtp(v, game.size) for v in gnugo.send(f"list_stones {colour}").split()}
                assert listed == {tuple(p) for p in np.argwhere(board.stones() == code)}, name
    finally:
        gnugo.close()
