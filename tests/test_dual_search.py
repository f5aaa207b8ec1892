"""The search with a dual net: one forward per new leaf for priors and value, any board size, the API's views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gogame import features, nets
from gogame.api import Engine, NetEvaluator
from gogame.board import Board
from gogame.mcts import MCTS, Rollouts, SearchConfig


def dual_net(size: int = 9) -> nets.DualNet:
    torch.manual_seed(0)
    net = nets.build("dual", 49, size, "b2c16")
    with torch.no_grad():
        for block in net.trunk:
            block.scale.fill_(0.5)  # a trained net's residual branches are in use
    return net.eval()


class CountingDual:
    """A dual evaluator that counts its calls and the rows of each; the separate methods must not be used."""

    has_value = True
    area = 12.0  # every position's expected area margin for the side to move, komi not counted

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: list[int] = []
        self.policy_value = self._policy_value

    def _policy_value(self, planes):
        self.rows.append(len(planes))
        rng = np.random.default_rng(len(self.rows))
        return (rng.normal(size=(len(planes), self.size * self.size + 1)), rng.uniform(-0.5, 0.5, len(planes)),
                np.full(len(planes), self.area))

    def policy(self, planes):
        raise AssertionError("policy() called beside policy_value")

    def value(self, planes):
        raise AssertionError("value() called beside policy_value")


def expanded_nodes(search: MCTS) -> int:
    return int(np.count_nonzero(search.tree.first[:search.nodes] >= 0))


@pytest.mark.parametrize("lambda_", [0.0, 0.5])
def test_each_new_leaf_costs_one_evaluation_for_its_priors_and_value(lambda_):
    evaluator = CountingDual(9)
    search = MCTS(evaluator, SearchConfig(lambda_=lambda_, expand_threshold=0, batch_size=8, seed=1, threads=1))
    search.set_root(Board(9, 7.5))
    stats = search.search(visits=120)
    assert len(evaluator.rows) == stats.batches  # the root's own first evaluation included
    assert max(evaluator.rows) <= 8
    assert sum(evaluator.rows) == expanded_nodes(search)  # every evaluated leaf was expanded there and then
    assert not np.isnan(search.tree.value[:search.nodes][search.tree.first[:search.nodes] >= 0]).any()


def test_without_rollouts_the_score_is_the_nets_area_margin_with_komi():
    """CountingDual gives every position 12 points of area for the side to move: to black, a leaf with white to
    move is worth -(12 + 7.5) = -19.5 and one with black to move 12 - 7.5 = 4.5; the root's children (white to
    move) average between the two."""
    search = MCTS(CountingDual(9), SearchConfig(lambda_=0.0, expand_threshold=0, batch_size=8, seed=1, threads=1))
    search.set_root(Board(9, 7.5))
    search.search(visits=200)
    children = [c for c in search.children() if c.visits > 0]
    assert children and all(-19.5 - 1e-9 <= c.score <= 4.5 + 1e-9 for c in children)
    assert all(c.score == pytest.approx(-19.5) for c in children if c.visits == 1)  # the child's own leaf
    assert any(c.score_stdev > 0 for c in children if c.visits > 2)


def test_the_net_evaluator_runs_one_forward_per_batch(monkeypatch):
    net = dual_net()
    calls = []
    net.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    # torch's forwards, which the hook sees (a CPU without native bf16 would run ONNX Runtime by default)
    evaluator = NetEvaluator(net, None, size=9, symmetries="random", seed=0, backend="torch")
    search = MCTS(evaluator, SearchConfig(lambda_=0.5, expand_threshold=0, batch_size=8, seed=0, threads=1))
    search.set_root(Board(9, 7.5))
    stats = search.search(visits=60)
    assert len(calls) == stats.batches and sum(calls) == expanded_nodes(search)


def test_separate_nets_are_asked_separately():
    evaluator = NetEvaluator(nets.build("policy", 48, 9, "tiny"), nets.build("value", 49, 9, "tiny"), seed=0)
    assert evaluator.policy_value is None


def test_dual_evaluator_outputs_on_several_sizes():
    net = dual_net()
    for size in (9, 13):
        board = Board(size, 7.5)
        for move in ("C3", "D4", "E5"):
            board.play(move)
        planes = features.planes(board, "alphago49")[None]
        evaluator = NetEvaluator(net, None, size=size, symmetries="none")
        logp, value, area = evaluator.policy_value(planes)
        assert logp.shape == (1, size * size + 1) and value.shape == (1,)
        assert np.allclose(np.exp(logp).sum(), 1) and np.array_equal(logp, evaluator.policy(planes))
        assert np.array_equal(value, evaluator.value(planes))
        owner = evaluator.ownership(planes)
        assert owner.shape == (1, size * size) and np.abs(owner).max() <= 1
        assert np.allclose(area, owner.sum(axis=1))


def test_all_eight_symmetries_make_the_ownership_equivariant():
    board = Board(9, 7.5)
    for move in ("C3", "D7", "G4", "E5"):
        board.play(move)
    turned = Board(9, 7.5)
    for colour, (row, col) in board.history:
        turned.play((col, row), colour)  # the transposed position
    evaluator = NetEvaluator(dual_net(), None, size=9, symmetries="all")
    owner = evaluator.ownership(features.planes(board, "alphago49")[None])[0].reshape(9, 9)
    owner_t = evaluator.ownership(features.planes(turned, "alphago49")[None])[0].reshape(9, 9)
    assert np.allclose(owner.T, owner_t, atol=1e-5)


def test_bad_dual_evaluators():
    with pytest.raises(ValueError, match="plays any size"):
        NetEvaluator(dual_net(), None)
    with pytest.raises(ValueError, match="its own value head"):
        NetEvaluator(dual_net(), nets.build("value", 49, 9, "tiny"), size=9)


def test_engine_with_a_dual_net_plays_evaluates_and_gives_its_ownership(monkeypatch):
    monkeypatch.setattr(Rollouts, "ownership", lambda *a, **k: pytest.fail("rollout ownership with a dual net"))
    for size in (9, 13):  # the net was built for 9x9
        engine = Engine(dual_net(), size=size, visits=24, batch_size=8, seed=0, threads=1, symmetries="none")
        assert engine.config.expand_threshold == 0 and engine.config.lambda_ == 0.5
        board = Board(size, 7.5)
        board.play("D4")
        move = engine.genmove(board)
        assert move == "pass" or board.is_legal(move)
        evaluation = engine.evaluate(board)
        v = engine.evaluator.value(features.planes(board, "alphago49")[None])[0]
        assert evaluation.winrate_black == pytest.approx((1 - v) / 2)  # white to move
        owner = engine.ownership(board)
        mover = engine.evaluator.ownership(features.planes(board, "alphago49")[None])[0].reshape(size, size)
        assert owner.shape == (size, size) and np.array_equal(owner, -mover)
    assert Engine(dual_net(), lambda_=1.0, expand_threshold=2).config.expand_threshold == 2


def test_engine_load_picks_up_dual_nets(tmp_path):
    net = dual_net()
    nets.save(net, tmp_path / "dual9.pt", features="alphago49")
    engine = Engine.load(tmp_path, size=9, visits=8)
    assert engine.evaluator.dual_net is not None and engine.size == 9
    assert Engine.load(tmp_path / "dual9.pt", size=13).size == 13
    assert Engine.load(tmp_path / "dual9.pt").size == 9  # the size it was trained on


def test_gtp_plays_every_size_on_a_dual_net_file_and_only_its_own_on_a_policy_file(tmp_path):
    from gtp.session import EnginePlayer

    nets.save(dual_net(), tmp_path / "dual9.pt", features="alphago49")
    nets.save(nets.build("policy", 48, 9, "tiny"), tmp_path / "policy9.pt", features="alphago48")
    dual = EnginePlayer(str(tmp_path / "dual9.pt"), visits=8, threads=1)
    assert all(dual.supports(size) for size in range(7, 20))
    assert dual.engine(13).size == 13
    policy = EnginePlayer(str(tmp_path / "policy9.pt"), visits=8, threads=1)
    assert policy.supports(9) and not policy.supports(13)
    folder = tmp_path / "only-dual"
    folder.mkdir()
    nets.save(dual_net(), folder / "dual9.pt", features="alphago49")
    assert EnginePlayer(str(folder)).supports(13)
