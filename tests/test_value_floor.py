"""The value-floor benchmark: its estimates on outcomes worked by hand, a decided position, and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gogame import nets
from gogame.board import Board
from training.bench import value_floor as floor

SIZE = 5


def tiny(kind: str, planes: int, seed: int = 0):
    torch.manual_seed(seed)
    return nets.build(kind, planes, SIZE, "tiny").eval()


def test_floor_is_the_mean_unbiased_outcome_variance_and_scores_a_value_net():
    outcomes = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, 1, -1]], np.int8)
    u = np.array([3, 10, 24])
    report = floor.floor_report(u, outcomes, {"v.pt": np.array([1.0, 0.0, 0.5])}, SIZE)
    # variances 0, 1 * 4/3 and 0.75 * 4/3
    assert report["floor"] == pytest.approx((0 + 4 / 3 + 1) / 3)
    assert [row["positions"] for row in report["by_u"]] == [1, 1, 1]
    assert report["by_u"][1]["floor"] == pytest.approx(4 / 3)
    # (v - z)^2 averaged: 0; 1; (3 * 0.25 + 2.25) / 4
    (net,) = report["value_nets"]
    assert net["net"] == "v.pt" and net["mse_vs_outcomes"] == pytest.approx((0 + 1 + 0.75) / 3)
    # (v - m)^2 less var / K: each v here equals its position's mean outcome
    assert net["mse_vs_expected"] == pytest.approx(-(4 / 3 / 4 + 1 / 4) / 3)
    assert [stage["mse_vs_outcomes"] for stage in net["by_u"]] == pytest.approx([0, 1, 0.75])
    assert net["by_u"][1]["mse_vs_expected"] == pytest.approx(-1 / 3)


def test_a_decided_position_has_no_outcome_variance():
    board = Board.from_diagram("""
        X X X X X
        X . X X X
        X X X X X
        X X X . X
        X X X X X
    """, to_move="W")  # white has no legal move, black no sensible one: black wins every game by area
    outcomes = floor.continuation_outcomes(tiny("policy", 48), [board, board], 3, komi=7.5,
                                           rng=np.random.default_rng(0), progress=False)
    assert (outcomes == -1).all()
    assert floor.floor_report(np.array([5, 6]), outcomes, {}, SIZE)["floor"] == 0.0


def test_the_command_reports_the_floor_and_the_value_net(tmp_path, capsys):
    paths = {}
    nets_made = (("sl", "policy", 48, 0), ("rl", "policy", 48, 1), ("v1", "value", 49, 2), ("v2", "value", 49, 3))
    for name, kind, planes, seed in nets_made:
        paths[name] = tmp_path / f"{name}.pt"
        nets.save(tiny(kind, planes, seed), paths[name], features=f"alphago{planes}")
    floor.main(["--rl", str(paths["rl"]), "--sl", str(paths["sl"]), "--value", str(paths["v1"]), str(paths["v2"]),
                "--positions", "6", "--continuations", "3", "--json", "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert 2 <= report["positions"] <= 6 and report["continuations"] == 3
    assert 0.0 <= report["floor"] <= 1.5 and sum(row["positions"] for row in report["by_u"]) == report["positions"]
    assert [row["net"] for row in report["value_nets"]] == [str(paths["v1"]), str(paths["v2"])]
    assert all(0.0 <= row["mse_vs_outcomes"] <= 4.0 for row in report["value_nets"])
