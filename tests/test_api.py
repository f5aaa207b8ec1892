"""The Engine API on tiny random networks: evaluate, analyze, genmove, ownership, render, loading and errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

import gogame
from gogame import Board, features, nets, rollout, sgf
from gogame.api import RESIGN_MIN_VISITS, VALUE_FPU_REDUCTION, Engine, position_from_sgf, render
from gogame.checkpoint import CheckpointError, save_checkpoint
from gogame.coords import from_gtp, to_flat

DATA = Path(__file__).parent / "data"

# Black's area is columns A-D (36 points), white's E-J (45): white leads by 9.5 as the board stands.
WALLS = "\n".join([". . . X O . . . ."] * 9)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    nets.save(nets.build("policy", 48, 9, "tiny"), folder / "policy9.pt", features="alphago48")
    nets.save(nets.build("value", 49, 9, "tiny"), folder / "value9.pt", features="alphago49")
    nets.save(nets.build("value", 49, 7, "tiny"), folder.parent / "value7.pt", features="alphago49")
    return folder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def engine(weights: Path, **options) -> Engine:
    options = {"rollout": "uniform", "visits": 48, "batch_size": 8, "seed": 0, "max_nodes": 200_000,
               "bf16": False} | options
    return Engine.load(weights, **options)


def test_package_exports_engine_and_render():
    assert gogame.Engine is Engine and gogame.render is render
    assert {"Engine", "render", "Board", "IllegalMove", "random_playouts"} <= set(gogame.__all__)


# -- evaluate -------------------------------------------------------------------------------------------------


def test_evaluate_gives_a_distribution_over_legal_moves_and_blacks_win_probability(weights):
    board = Board(9)
    for move in ("E5", "D5", "C3"):
        board.play(move)
    e = engine(weights, symmetries="none")
    ev = e.evaluate(board)
    assert ev.moves.shape == (82,) and ev.moves.sum() == pytest.approx(1.0)
    for vertex in ("E5", "D5", "C3"):
        assert ev.moves[to_flat(from_gtp(vertex, 9), 9)] == 0
    assert ev.moves[:-1][features.legal_mask(board)].min() > 0
    # The value net's v is for white (to move here): black's win probability is (1 - v) / 2.
    with torch.inference_mode():
        v = e.evaluator.value_net(torch.from_numpy(features.planes(board, "alphago49")[None])).item()
    assert 0 <= ev.winrate_black <= 1 and ev.winrate_black == pytest.approx((1 - v) / 2)
    assert ev.top(1)[0][1] == ev.moves.max()


def test_bf16_evaluation_stays_close_to_fp32(weights):
    board = Board(9)
    for move in ("E5", "D5", "C3", "F4"):
        board.play(move)
    exact = engine(weights, symmetries="none").evaluate(board)
    fast = engine(weights, symmetries="none", bf16=True).evaluate(board)
    assert np.abs(fast.moves - exact.moves).max() < 0.03
    assert abs(fast.winrate_black - exact.winrate_black) < 0.03


def test_evaluate_without_symmetries_is_the_masked_softmax_of_the_net(weights):
    board = Board(9)
    board.play("C3")
    e = engine(weights, symmetries="none")
    with torch.inference_mode():
        logits = e.evaluator.policy_net(torch.from_numpy(features.planes(board)[None]))
        legal = torch.from_numpy(np.append(features.legal_mask(board), True))
        expected = nets.masked_log_softmax(logits, legal).exp()[0].numpy()
    np.testing.assert_allclose(e.evaluate(board).moves, expected, atol=1e-6)


def test_evaluate_averaged_over_all_symmetries_is_equivariant(weights):
    stones = {"B": ["C3", "D7", "G5"], "W": ["E5", "F3"]}
    board = Board(9)
    board.setup(black=stones["B"], white=stones["W"])
    turned = Board(9)
    k = 5  # a rotation: rows and columns both move
    move = lambda v: features.transform_flat_move(to_flat(from_gtp(v, 9), 9), 9, k)  # noqa: E731
    turned.setup(black=[divmod(move(v), 9) for v in stones["B"]], white=[divmod(move(v), 9) for v in stones["W"]])
    e = engine(weights, symmetries="all")
    a, b = e.evaluate(board), e.evaluate(turned)
    np.testing.assert_allclose(b.moves[features.transform_flat_move(np.arange(82), 9, k)], a.moves, atol=1e-5)
    assert a.winrate_black == pytest.approx(b.winrate_black, abs=1e-5)


# -- errors ---------------------------------------------------------------------------------------------------


def test_bad_boards_raise_clear_errors(weights):
    e = engine(weights)
    with pytest.raises(ValueError, match="13x13.*9x9"):
        e.evaluate(Board(13))
    with pytest.raises(TypeError, match="Board"):
        e.analyze("not a board")
    over = Board(9)
    over.pass_move()
    over.pass_move()
    with pytest.raises(ValueError, match="game is over"):
        e.genmove(over)
    resigned = Board(9)
    resigned.resign()
    with pytest.raises(ValueError, match="B resigned"):
        e.analyze(resigned)
    captured = Board(9)
    captured.setup(black=["A1"], white=["A2", "B1"])  # setup does not capture: A1 has no liberties
    with pytest.raises(ValueError, match="illegal position.*A1"):
        e.evaluate(captured)


def test_load_errors(weights):
    with pytest.raises(ValueError, match="7x7"):
        Engine.load(policy=weights / "policy9.pt", value=weights.parent / "value7.pt")
    with pytest.raises(ValueError, match="give a path"):
        Engine.load()
    with pytest.raises(TypeError):
        Engine.load(weights, no_such_option=1)


def test_a_weights_folder_brings_its_own_rollout_policy(weights, tmp_path):
    folder = tmp_path / "engine"
    folder.mkdir()
    (folder / "policy9.pt").write_bytes((weights / "policy9.pt").read_bytes())
    shipped = rollout.RolloutPolicy.load()
    assert np.array_equal(Engine.load(folder, bf16=False).rollouts.policy.weights, shipped.weights)
    own = rollout.RolloutPolicy(shipped.keys[:10], shipped.weights[:rollout.N_FIXED + 10] * 2)
    own.save(folder / "rollout9.npz")
    assert np.array_equal(Engine.load(folder, bf16=False).rollouts.policy.weights, own.weights)
    assert Engine.load(folder, rollout="uniform", bf16=False).rollouts.policy is None


# -- search ---------------------------------------------------------------------------------------------------


def test_analyze_reports_sane_fields(weights):
    board = Board(9)
    board.play("E5")
    a = engine(weights).analyze(board, visits=64)
    assert a.visits == 64 and sum(c.visits for c in a.candidates) == 63  # the first visit evaluates the root
    assert a.to_move == "W" and a.move == a.candidates[0].move
    assert a.winrate_black == pytest.approx(1 - a.winrate)
    assert [c.visits for c in a.candidates] == sorted((c.visits for c in a.candidates), reverse=True)
    for c in a.candidates:
        assert 0 <= c.lcb <= c.winrate <= 1 and 0 <= c.prior <= 1
        assert c.pv[0] == c.move and board.is_legal(c.move)
        assert abs(c.score_lead) <= 81 + 7.5 and c.score_stdev >= 0  # rollouts (no value net): margins known
    assert a.stats.simulations == 64


def test_tree_is_reused_along_the_game(weights):
    e = engine(weights)
    board = Board(9)
    first = e.analyze(board, visits=64)
    board.play(first.move)
    second = e.analyze(board, visits=64)
    assert second.visits == 64 and second.stats.simulations < 64


def test_genmove_passes_to_win_and_resigns_when_lost(weights):
    board = Board.from_diagram(WALLS, komi=0.5, to_move="B")
    board.pass_move()  # white to move, 9.5 ahead: passing ends the game with a win
    assert engine(weights).genmove(board) == "pass"
    board.undo()
    move = engine(weights).genmove(board)  # black, behind on the board: must not pass
    assert move not in ("pass", "resign") and board.is_legal(move)
    lost = {"resign_threshold": 1.0, "resign_consecutive": 1}  # every search finds the game lost
    assert engine(weights, visits=RESIGN_MIN_VISITS, **lost).genmove(Board(9)) == "resign"
    # a win rate from a few visits is noise: never resign on it
    assert engine(weights, visits=RESIGN_MIN_VISITS - 1, **lost).genmove(Board(9)) != "resign"


def test_genmove_resigns_only_after_consecutive_lost_searches_of_one_game(weights):
    e = engine(weights, visits=RESIGN_MIN_VISITS, resign_threshold=1.0)  # every search lost; 3 in a row resign
    board = Board(9)
    for _ in range(2):  # black's first two searches, white answering each (white's own count stays apart)
        move = e.genmove(board)
        assert move != "resign"
        board.play(move)
        assert e.genmove(board) != "resign"
        board.play("A1" if board.is_legal("A1") else "J9")
    assert e.genmove(Board(9)) != "resign"  # another game: its count starts again
    assert e.genmove(board) != "resign"  # the first game, no longer two moves on from black's last search
    board.play("E5" if board.is_legal("E5") else "D4")
    board.play("A9" if board.is_legal("A9") else "J1")
    assert e.genmove(board) != "resign"
    board.play("C3" if board.is_legal("C3") else "G7")
    board.play("B9" if board.is_legal("B9") else "H1")
    assert e.genmove(board) == "resign"  # the third in a row
    with pytest.raises(ValueError, match="resign_consecutive"):
        engine(weights, resign_consecutive=0)


def test_genmove_stops_early_with_the_move_of_the_full_budget(weights):
    board = Board.from_diagram(WALLS, komi=0.5, to_move="B")
    full = engine(weights, visits=400, lambda_=1.0, early_stop=False)
    early = engine(weights, visits=400, lambda_=1.0)  # seeded alike: the same search, cut short once decided
    assert early.genmove(board) == full.genmove(board)
    assert early.mcts.root_visits < full.mcts.root_visits == 400


def test_ownership_marks_each_sides_area(weights):
    board = Board.from_diagram(WALLS, komi=0.5)
    own = engine(weights).ownership(board, rollouts=40)
    assert own.shape == (9, 9) and np.all(np.abs(own) <= 1)
    assert own[:, :3].mean() > 0.5 and own[:, 5:].mean() < -0.5


def test_a_position_from_sgf_can_be_analyzed(weights):
    path = DATA / "pro9-00.sgf"
    board = sgf.load(path)[0].board_at(20)
    a = engine(weights).analyze(board, visits=16)
    assert board.is_legal(a.move) or a.move == "pass"
    assert position_from_sgf(path, 20).zobrist_hash == board.zobrist_hash


def test_a_single_policy_file_plays_on_rollouts(weights):
    e = Engine.load(weights / "policy9.pt", rollout="uniform", visits=16, seed=0)
    assert not e.evaluator.has_value and e.config.lambda_ == 1.0
    assert e.evaluate(Board(9)).winrate_black is None
    assert Board(9).is_legal(e.genmove(Board(9)))


def test_the_shipped_9x9_engine_is_the_dual_net_with_its_measured_search_settings():
    e = Engine.load(size=9, visits=8, torch_threads=1)
    assert e.evaluator.dual_net is not None and Board(9).is_legal(e.genmove(Board(9)))
    c = e.config
    assert (c.lambda_, c.rollouts_from, c.c_puct, c.fpu_reduction) == (0.5, 0.3, 1.5, 0.25)  # as matched
    assert 0 <= e.evaluate(Board(9)).winrate_black <= 1


def test_the_shipped_19x19_engine_is_the_dual_net_with_rollouts_from_40_percent_of_the_points():
    e = Engine.load(size=19, visits=8, torch_threads=1)
    assert e.size == 19 and e.evaluator.dual_net is not None and Board(19).is_legal(e.genmove(Board(19)))
    assert (e.config.lambda_, e.config.rollouts_from) == (0.5, 0.4)  # as matched at equal time against policy19
    assert 0 <= e.evaluate(Board(19)).winrate_black <= 1


@pytest.mark.parametrize("size", [7, 13])
def test_the_general_dual_net_plays_the_sizes_no_specialised_net_ships_for(size):
    e = Engine.load(size=size, visits=8, torch_threads=1)
    assert e.size == size and e.evaluator.dual_net is not None and Board(size).is_legal(e.genmove(Board(size)))
    assert e.config.lambda_ == nets.load(nets.WEIGHTS_DIR / "dual.pt").meta["search"]["lambda_"]  # measured
    assert 0 <= e.evaluate(Board(size)).winrate_black <= 1


def test_engine_weights_prefer_a_nets_own_size_then_the_general_dual_net(tmp_path):
    with pytest.raises(FileNotFoundError, match="dual13.pt, policy13.pt or dual.pt"):
        nets.engine_weights(13, tmp_path)
    for name in ("policy13.pt", "value9.pt", "policy9.pt", "dual.pt"):
        (tmp_path / name).touch()
    assert nets.engine_weights(13, tmp_path) == {"policy": tmp_path / "policy13.pt"}
    assert nets.engine_weights(9, tmp_path) == {"policy": tmp_path / "policy9.pt", "value": tmp_path / "value9.pt"}
    assert nets.engine_weights(11, tmp_path) == {"dual": tmp_path / "dual.pt"}
    (tmp_path / "dual9.pt").touch()
    assert nets.engine_weights(9, tmp_path) == {"dual": tmp_path / "dual9.pt"}


def test_a_dual_nets_measured_search_settings_are_the_engines_defaults(tmp_path):
    net = nets.build("dual", 49, 9, "b2c16")
    nets.save(net, tmp_path / "plain.pt", features="alphago49")
    nets.save(net, tmp_path / "mixed.pt", features="alphago49", search={"lambda_": 0.8, "c_puct": 1.5})
    assert Engine.load(tmp_path / "plain.pt", visits=8).config.lambda_ == 0.5  # AlphaGo's, unmeasured
    mixed = Engine.load(tmp_path / "mixed.pt", visits=8).config
    assert (mixed.lambda_, mixed.c_puct, mixed.fpu_reduction) == (0.8, 1.5, VALUE_FPU_REDUCTION)
    told = Engine.load(tmp_path / "mixed.pt", visits=8, lambda_=0.3, c_puct=4.0).config
    assert (told.lambda_, told.c_puct) == (0.3, 4.0)
    nets.save(nets.load(tmp_path / "mixed.pt"), tmp_path / "again.pt")
    assert nets.load(tmp_path / "again.pt").meta["search"] == {"lambda_": 0.8, "c_puct": 1.5}  # a loaded net keeps it
    for bad, message in (({"lambda_": 2.0}, "lambda_ must be in"), ({"c_puct": -1}, "c_puct must be"),
                         ({"c_puct": float("nan")}, "c_puct must be"), ({"virtual_loss": 3}, "must map some of")):
        with pytest.raises(ValueError, match=message):
            nets.save(net, tmp_path / "bad.pt", search=bad)
    assert not (tmp_path / "bad.pt").exists()


def test_a_net_file_with_bad_search_settings_is_refused(tmp_path):
    net = nets.build("dual", 49, 9, "b2c16")
    save_checkpoint(tmp_path / "foreign.pt", {"kind": "dual", "meta": {**nets.describe(net), "search": {"c_puct": "x"}},
                                              "model": net.state_dict()})
    with pytest.raises(CheckpointError, match="search settings: c_puct must be"):
        nets.load(tmp_path / "foreign.pt")


def test_first_play_urgency_is_reduced_by_default_only_where_a_value_net_values_the_leaves(tmp_path):
    nets.save(nets.build("dual", 49, 9, "b2c16"), tmp_path / "dual9.pt", features="alphago49")
    config = Engine.load(tmp_path / "dual9.pt", visits=8).config
    assert (config.lambda_, config.fpu_reduction) == (0.5, VALUE_FPU_REDUCTION)
    assert Engine.load(tmp_path / "dual9.pt", visits=8, lambda_=1.0).config.fpu_reduction is None  # rollouts alone
    late = Engine.load(tmp_path / "dual9.pt", visits=8, lambda_=1.0, rollouts_from=0.3).config  # the value net first
    assert (late.rollouts_from, late.fpu_reduction) == (0.3, VALUE_FPU_REDUCTION)
    assert Engine.load(tmp_path / "dual9.pt", visits=8, fpu_reduction=None).config.fpu_reduction is None
    assert Engine.load(tmp_path / "dual9.pt", visits=8, fpu_reduction=0.1).config.fpu_reduction == 0.1


# -- pictures -------------------------------------------------------------------------------------------------


def test_render_writes_png_and_svg(weights, tmp_path):
    board = Board(9)
    for move in ("E5", "D5", "C3"):
        board.play(move)
    e = engine(weights)
    png = e.render(board, tmp_path / "policy.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = e.render(board, tmp_path / "winrate.svg", what="winrate", visits=24)
    root = ET.fromstring(svg.read_text())
    assert root.tag.endswith("svg")
    assert len([el for el in root.iter() if el.tag.endswith("circle") and el.get("r") != "3"]) == 3  # stones
    render(board, tmp_path / "plain.svg", labels={"G7": "50"})
    assert ">50<" in (tmp_path / "plain.svg").read_text()
    with pytest.raises(ValueError, match="png or .svg"):
        render(board, tmp_path / "board.jpg")
    with pytest.raises(ValueError, match="heatmap"):
        render(board, tmp_path / "x.svg", heatmap=np.zeros(10))


def test_a_seed_makes_the_search_reproducible(weights):
    board = Board(9)
    board.play("E5")
    a, b = (engine(weights, seed=11).analyze(board, visits=40) for _ in range(2))
    summary = lambda an: [(c.move, c.visits, c.winrate) for c in an.candidates]  # noqa: E731
    assert summary(a) == summary(b)
