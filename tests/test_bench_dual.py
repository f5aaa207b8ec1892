"""The dual net's value benchmark: held-out positions scored by the value head and by the ownership margin."""

from __future__ import annotations

import json

import numpy as np
import torch

from gogame import nets
from training.bench import dual
from training.data import shards
from training.data.stream import ExpertStream
from training.stages.dual import ownership_agreement

from tests.test_stream import DATA, finished_game, make_archive


def test_value_scores_every_held_out_position_with_an_outcome_once_overall_and_by_moves(tmp_path, capsys):
    archive = make_archive(tmp_path / "pro9.tar.xz", {p.name: p.read_bytes() for p in sorted(DATA.glob("pro9-*.sgf"))})
    net = nets.build("dual", 49, 9, "b2c16")
    with torch.no_grad():  # a value head that always says 0: its MSE is the mean square of the outcomes, 1
        net.value_out.weight.zero_()
        net.value_out.bias.zero_()
    nets.save(net, tmp_path / "dual9.pt", features="alphago49")
    assert dual.main(["value", str(tmp_path / "dual9.pt"), str(archive), "--size", "9", "--val-fraction", "0.5",
                      "--test-fraction", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["positions"] > 0 and abs(report["value_mse"] - 1.0) < 1e-6
    assert sum(part["positions"] for part in report["by_moves"]) >= report["positions"]
    assert set(report["ownership_value_mse"]) == {"0.05", "0.1", "0.2", "0.5"}


def test_ownership_agreement_counts_right_owners_among_the_sure_points():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0], [1.0, 1.0, 1.0, 1.0]])
    owner = torch.tensor([[1.0, -0.75, -0.5, 0.25], [0.0, -1.0, 0.5, 1.0]])  # |owner| < 1/2: not sure
    right, sure = ownership_agreement(logits, owner)
    assert right.tolist() == [2, 2] and sure.tolist() == [3, 3]


def test_the_ownership_heads_agreement_with_the_final_owners_overall_and_by_moves(tmp_path, capsys):
    archive = make_archive(tmp_path / "pro9.tar.xz", {p.name: p.read_bytes() for p in sorted(DATA.glob("pro9-*.sgf"))})
    reports = []
    for bias in (10.0, -10.0):  # an ownership head that gives every point to the mover, then to the opponent
        net = nets.build("dual", 49, 9, "b2c16")
        with torch.no_grad():
            net.to_ownership.weight.zero_()
            net.to_ownership.bias.fill_(bias)
        nets.save(net, tmp_path / "dual9.pt", features="alphago49")
        assert dual.main(["value", str(tmp_path / "dual9.pt"), str(archive), "--size", "9", "--val-fraction", "0.5",
                          "--test-fraction", "0"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    mover, opponent = reports
    assert mover["ownership_positions"] >= mover["positions"] > 0
    assert 0 < mover["ownership_sign_agrees"] < 1  # each side owns some of the sure points
    assert abs(mover["ownership_sign_agrees"] + opponent["ownership_sign_agrees"] - 1) < 1e-9
    for ours, theirs in zip(mover["by_moves"], opponent["by_moves"]):
        assert abs(ours["ownership_sign_agrees"] + theirs["ownership_sign_agrees"] - 1) < 1e-9


def test_value_reads_the_split_asked_for_and_scores_the_policy_head_on_every_position_read(tmp_path, capsys):
    files = {p.name: p.read_bytes() for p in sorted(DATA.glob("pro9-*.sgf"))}
    files.update({f"walls-{i}.sgf": finished_game() for i in range(6)})  # 20 moves, the last two passes
    archive = make_archive(tmp_path / "games.tar.xz", files)
    net = nets.build("dual", 49, 9, "b2c16")
    with torch.no_grad():  # a policy head that always passes
        net.to_points.weight.zero_()
        net.to_pass.weight.zero_()
        net.to_pass.bias.fill_(1.0)
    nets.save(net, tmp_path / "dual9.pt", features="alphago49")
    policy = nets.build("policy", 48, 9, "small")
    with torch.no_grad():  # a policy net that always passes too
        policy.to_points.weight.zero_()
        policy.to_pass.weight.zero_()
        policy.to_pass.bias.fill_(1.0)
    nets.save(policy, tmp_path / "policy9.pt", features="alphago48")
    assert dual.main(["value", str(tmp_path / "dual9.pt"), str(archive), "--size", "9", "--split", "test",
                      "--val-fraction", "0", "--test-fraction", "0.5", "--positions-per-game", "25",
                      "--policy", str(tmp_path / "policy9.pt")]) == 0
    report = json.loads(capsys.readouterr().out)
    held_out = ExpertStream([archive], 64, split="test", game_filter=shards.GameFilter(size=9), val_fraction=0,
                            test_fraction=0.5, positions_per_game=25, index_dir=tmp_path, progress=False)
    games = [held_out.game_arrays(i)["move"] for i in range(held_out.games)]
    moves = np.concatenate(games)
    assert report["games"] == held_out.games and report["policy_positions"] == moves.size
    assert all(len(g) <= 25 for g in games) and 0 < np.mean(moves == 81) < 1  # some passes among the moves
    assert report["policy_top1"] == np.mean(moves == 81)
    assert report["other_policy_top1"] == report["policy_top1"] and report["top_moves_agree"] == 1.0


def test_value_scores_the_same_positions_by_the_shipped_rollouts_when_asked(tmp_path, capsys):
    archive = make_archive(tmp_path / "pro9.tar.xz", {p.name: p.read_bytes() for p in sorted(DATA.glob("pro9-*.sgf"))})
    nets.save(nets.build("dual", 49, 9, "b2c16"), tmp_path / "dual9.pt", features="alphago49")
    assert dual.main(["value", str(tmp_path / "dual9.pt"), str(archive), "--size", "9", "--val-fraction", "0.5",
                      "--test-fraction", "0", "--positions-per-game", "4", "--rollouts", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["positions"] > 0 and report["rollouts"] == 6
    # each playout scores +-1 against an outcome of +-1: a squared error of 0 or 4; the mean of six is no worse
    assert 0 <= report["rollouts_mse"] <= report["rollout_mse"] <= 4
    assert all(part["rollouts_mse"] <= part["rollout_mse"] for part in report["by_moves"])
