"""The RL stage: the REINFORCE loss, the opponent pool, and the command end to end with resume."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from gogame import nets
from gogame.checkpoint import CheckpointError
from tests.torchrun import run_two_ranks
from training.cli import main as train_main
from training.stages import rl

SIZE = 5


def tiny_policy(seed: int = 0) -> nets.PolicyNet:
    torch.manual_seed(seed)
    return nets.build("policy", 48, SIZE, "tiny")


def one_move_batch(z: float, move: int, games: int = 1) -> dict[str, torch.Tensor]:
    """``games`` games of one learner position each (the empty board), all with outcome ``z``."""
    planes = torch.zeros(games, 48, SIZE, SIZE, dtype=torch.uint8)
    planes[:, 2] = planes[:, 3] = planes[:, 46] = 1  # empty, ones, sensible everywhere
    legal = torch.ones(games, SIZE * SIZE + 1, dtype=torch.bool)
    legal[:, -1] = False
    return {"z": torch.full((games,), z), "planes": planes, "move": torch.full((games,), move),
            "legal": legal, "game": torch.arange(games), "length": torch.ones(games)}


@pytest.mark.parametrize("z, sign", [(1.0, 1), (-1.0, -1)])
def test_reinforce_raises_the_probability_of_winning_moves_and_lowers_losing_ones(z, sign):
    net = tiny_policy()
    batch = one_move_batch(z, move=7)
    loss_fn = rl.reinforce_loss("none")

    def prob() -> float:
        with torch.no_grad():
            return float(nets.masked_log_softmax(net(batch["planes"]), batch["legal"])[0, 7].exp())

    before = prob()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss, metrics = loss_fn(net, batch)
    loss.backward()
    optimizer.step()
    assert np.sign(prob() - before) == sign
    assert metrics["win_rate"] == (z > 0)


def test_the_mean_baseline_cancels_when_every_game_has_the_same_outcome():
    net = tiny_policy()
    loss, _ = rl.reinforce_loss("mean")(net, one_move_batch(1.0, move=3, games=4))
    assert float(loss.detach()) == 0.0
    with pytest.raises(ValueError, match="baseline"):
        rl.reinforce_loss("critic")


def test_the_value_baseline_credits_a_move_with_the_outcome_beyond_the_positions_value():
    net = tiny_policy()
    batch = one_move_batch(1.0, move=3, games=4)
    plain, _ = rl.reinforce_loss("none")(net, batch)
    foreseen, _ = rl.reinforce_loss("value")(net, {**batch, "baseline": torch.ones(4)})
    half, _ = rl.reinforce_loss("value")(net, {**batch, "baseline": torch.full((4,), 0.5)})
    assert float(foreseen.detach()) == 0.0  # a win the value net foresaw teaches nothing
    assert float(half.detach()) == pytest.approx(float(plain.detach()) / 2)


def test_the_entropy_bonus_flattens_the_move_distribution_and_is_logged():
    net = tiny_policy()
    batch = one_move_batch(1.0, move=3, games=4)  # same outcomes: the mean baseline leaves the bonus alone

    def entropy() -> float:
        with torch.no_grad():
            logp = nets.masked_log_softmax(net(batch["planes"]), batch["legal"])[0, :-1]
            return float(-(logp.exp() * logp).sum())

    before = entropy()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    loss, metrics = rl.reinforce_loss("mean", entropy_bonus=1.0)(net, batch)
    assert metrics["entropy"] == pytest.approx(before, rel=1e-4)
    loss.backward()
    optimizer.step()
    assert entropy() > before
    with pytest.raises(ValueError, match="entropy"):
        rl.reinforce_loss("mean", entropy_bonus=-0.1)


def test_the_kl_penalty_draws_the_policy_towards_the_reference_and_is_logged():
    net = tiny_policy()
    batch = one_move_batch(1.0, move=3, games=4)  # same outcomes: the mean baseline leaves the penalty alone
    reference_logp = torch.full((4, SIZE * SIZE + 1), -10.0)
    reference_logp[:, 11] = 0.0  # the reference plays point 11
    batch["reference_logp"] = reference_logp

    def kl_and_p11() -> tuple[float, float]:
        with torch.no_grad():
            logp = nets.masked_log_softmax(net(batch["planes"]), batch["legal"])[0, :-1]
            ref = reference_logp[0, :-1].log_softmax(0)
            return float((logp.exp() * (logp - ref)).sum()), float(logp[11].exp())

    (kl_before, p_before) = kl_and_p11()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    loss, metrics = rl.reinforce_loss("mean", kl_penalty=1.0)(net, batch)
    assert metrics["kl"] == pytest.approx(kl_before, rel=1e-4) and kl_before > 1.0
    loss.backward()
    optimizer.step()
    kl_after, p_after = kl_and_p11()
    assert kl_after < kl_before and p_after > p_before
    assert "kl" not in rl.reinforce_loss("mean")(net, batch)[1]
    with pytest.raises(ValueError, match="KL"):
        rl.reinforce_loss("mean", kl_penalty=-1.0)


def test_a_match_batch_holds_the_learners_choices_only():
    learner, opponent = tiny_policy(0), tiny_policy(1)
    batch = rl.play_match(learner, opponent, 4, size=SIZE, komi=7.5, max_moves=20, rng=np.random.default_rng(0))
    assert batch["z"].shape == (4,) and set(batch["z"].tolist()) <= {-1.0, 1.0}
    assert batch["planes"].shape[1:] == (48, SIZE, SIZE) and batch["planes"].shape[0] == batch["move"].shape[0]
    assert bool(batch["legal"].gather(1, batch["move"][:, None]).all())  # every kept move was a legal choice
    assert batch["game"].bincount(minlength=4).tolist() == [10, 10, 10, 10]  # 20 moves, half the learner's


def test_a_match_batch_carries_the_value_nets_values_of_the_learners_positions():
    learner, opponent = tiny_policy(0), tiny_policy(1)
    torch.manual_seed(2)
    value_net = nets.build("value", 49, SIZE, "tiny").eval()
    batch = rl.play_match(learner, opponent, 4, size=SIZE, komi=7.5, max_moves=20, rng=np.random.default_rng(0),
                          value_net=value_net)
    learner_black = (batch["game"] % 2 == 0).to(torch.uint8)  # the learner is black in the even games
    colour = learner_black[:, None, None, None].expand(-1, 1, SIZE, SIZE)  # alphago49's plane 48
    with torch.no_grad(), nets.autocast("cpu"):  # as the baseline is computed: bf16 where native
        expected = value_net(torch.cat([batch["planes"], colour], dim=1)).float()
    assert batch["baseline"].shape == batch["move"].shape
    torch.testing.assert_close(batch["baseline"], expected)


def test_a_match_batch_carries_the_references_log_probabilities_of_the_learners_positions():
    learner, opponent, reference = tiny_policy(0), tiny_policy(1), tiny_policy(2).eval()
    batch = rl.play_match(learner, opponent, 4, size=SIZE, komi=7.5, max_moves=20, rng=np.random.default_rng(0),
                          reference_net=reference)
    with torch.no_grad(), nets.autocast("cpu"):
        expected = reference(batch["planes"]).float().log_softmax(1)
    assert batch["reference_logp"].shape == (batch["move"].shape[0], SIZE * SIZE + 1)
    torch.testing.assert_close(batch["reference_logp"], expected, atol=1e-4, rtol=1e-4)


def test_pool_snapshots_and_draws(tmp_path):
    pool = rl.Pool(tmp_path / "pool")
    with pytest.raises(CheckpointError, match="empty"):
        pool.draw(np.random.default_rng(0))
    pool.add(tiny_policy(0), 0)
    pool.add(tiny_policy(1), 20)
    assert [p.name for p in pool.members()] == ["iter-000000.pt", "iter-000020.pt"]
    assert [p.name for p in pool.members(before=20)] == ["iter-000000.pt"]
    drawn = {id(pool.draw(np.random.default_rng(s))) for s in range(12)}
    assert len(drawn) == 2


def test_pool_ancestors_are_members_from_the_first_iteration(tmp_path):
    ancestor = tmp_path / "sl.pt"
    nets.save(tiny_policy(5), ancestor, features="alphago48")
    pool = rl.Pool(tmp_path / "pool", ancestors=[ancestor])
    assert pool.snapshots() == [] and pool.members(before=1) == [ancestor]
    pool.add(tiny_policy(0), 0)
    assert pool.members(before=1) == [ancestor, pool.path(0)] and pool.snapshots() == [pool.path(0)]
    drawn = {id(pool.draw(np.random.default_rng(s), before=1)) for s in range(12)}
    assert len(drawn) == 2


def test_rl_command_logs_the_win_rate_and_resumes(tmp_path):
    start, out, export = tmp_path / "sl.pt", tmp_path / "rl", tmp_path / "rl.pt"
    nets.save(tiny_policy(), start, features="alphago48")
    args = ["rl", "--size", str(SIZE), "--weights", str(start), "--out", str(out), "--iterations", "4",
            "--games", "4", "--pool-every", "2", "--eval-every", "2", "--eval-games", "4", "--max-moves", "16",
            "--ckpt-every", "1", "--lr", "0.05", "--no-progress", "--export", str(export)]
    assert train_main(args + ["--max-steps-this-run", "3"]) == 0
    assert train_main(args + ["--resume"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["step"]) for r in rows if r["split"] == "train"] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in rows if r["split"] == "val"] == [2, 4]
    assert all(0 <= float(r["win_rate"]) <= 1 for r in rows)
    assert sorted(p.name for p in (out / "pool").iterdir()) == ["iter-000000.pt", "iter-000002.pt"]
    net = nets.load(export, kind="policy")
    assert net.meta["provenance"]["iterations"] == 4 and "win_rate_vs_reference" in net.meta["provenance"]
    assert net.meta["provenance"]["pool_ancestors"] == []  # the reference is the start, already iter-000000


def test_rl_measures_against_a_given_reference_on_a_cosine_schedule(tmp_path):
    start, reference, out, export = (tmp_path / n for n in ("rl0.pt", "sl.pt", "rl", "rl.pt"))
    nets.save(tiny_policy(), start, features="alphago48")
    nets.save(tiny_policy(seed=3), reference, features="alphago48")
    args = ["rl", "--size", str(SIZE), "--weights", str(start), "--out", str(out), "--iterations", "3",
            "--games", "2", "--eval-every", "3", "--eval-games", "2", "--max-moves", "12", "--lr", "0.05",
            "--schedule", "cosine", "--min-lr", "0.01", "--no-progress", "--export", str(export)]
    assert train_main(args + ["--reference", str(reference)]) == 0
    lrs = [float(r["lr"]) for r in csv.DictReader(open(out / "metrics.csv")) if r["split"] == "train"]
    assert lrs[0] > lrs[1] > lrs[2] >= 0.01
    provenance = nets.load(export, kind="policy").meta["provenance"]
    assert provenance["reference"] == str(reference) and provenance["pool_ancestors"] == [str(reference)]
    assert sorted(p.name for p in (out / "pool").iterdir()) == ["iter-000000.pt"]  # the reference is not copied
    wrong = tmp_path / "nine.pt"
    torch.manual_seed(0)
    nets.save(nets.build("policy", 48, 9, "tiny"), wrong, features="alphago48")
    with pytest.raises(SystemExit, match="reference"):
        train_main(args + ["--reference", str(wrong), "--out", str(tmp_path / "rl2")])


def test_rl_with_a_value_net_baseline(tmp_path):
    start, value, out = tmp_path / "sl.pt", tmp_path / "value.pt", tmp_path / "rl"
    nets.save(tiny_policy(), start, features="alphago48")
    torch.manual_seed(4)
    nets.save(nets.build("value", 49, SIZE, "tiny"), value, features="alphago49")
    args = ["rl", "--size", str(SIZE), "--weights", str(start), "--out", str(out), "--iterations", "2",
            "--games", "2", "--eval-every", "2", "--eval-games", "2", "--max-moves", "12", "--no-progress"]
    assert train_main(args + ["--baseline", "value", "--value-net", str(value)]) == 0
    assert [r["step"] for r in csv.DictReader(open(out / "metrics.csv"))] == ["1", "2", "2"]
    with pytest.raises(SystemExit, match="go together"):
        train_main(args + ["--baseline", "value", "--out", str(tmp_path / "rl2")])
    with pytest.raises(SystemExit, match="go together"):
        train_main(args + ["--value-net", str(value), "--out", str(tmp_path / "rl3")])


def test_rl_with_a_kl_penalty_logs_the_divergence_from_the_reference(tmp_path):
    start, reference, out = tmp_path / "rl0.pt", tmp_path / "sl.pt", tmp_path / "rl"
    nets.save(tiny_policy(), start, features="alphago48")
    nets.save(tiny_policy(seed=3), reference, features="alphago48")
    assert train_main(["rl", "--size", str(SIZE), "--weights", str(start), "--reference", str(reference),
                       "--out", str(out), "--iterations", "2", "--games", "2", "--eval-every", "2",
                       "--eval-games", "2", "--max-moves", "12", "--kl-penalty", "0.1", "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["split"] for r in rows] == ["train", "train", "val"]
    assert all(float(r["kl"]) > 0 for r in rows)  # two different random nets diverge


def test_rl_runs_data_parallel_under_torchrun(tmp_path):
    start, out = tmp_path / "sl.pt", tmp_path / "ddp"
    nets.save(tiny_policy(), start, features="alphago48")
    run_two_ranks("-m", "training.cli", "rl", "--size", str(SIZE), "--weights", str(start), "--out", str(out),
                  "--iterations", "2", "--games", "2", "--eval-every", "2", "--eval-games", "4", "--max-moves", "12",
                  "--lr", "0.05", "--no-progress")
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["step"]) for r in rows if r["split"] == "train"] == [1, 2]
    assert [r for r in rows if r["split"] == "val"] and all(0 <= float(r["win_rate"]) <= 1 for r in rows)
