"""The supervised stages end to end on a tiny dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gogame import nets
from gogame.sgf import load
from tests.torchrun import run_two_ranks
from training.cli import main as train_main
from training.data import shards
from training.eval.value import stage_of
from training.stages.sl import value_loss

FIXTURES = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sl9")
    shards.build_dataset([str(p) for p in sorted(FIXTURES.glob("pro9-*.sgf"))], out, feature_set="alphago49",
                         game_filter=shards.GameFilter(size=9, min_moves=10), workers=1, games_per_chunk=12,
                         val_fraction=0.25, test_fraction=0.0)
    return out


def test_sl_trains_a_policy_net_and_exports_it(dataset, tmp_path):
    out, export = tmp_path / "run", tmp_path / "policy9.pt"
    args = ["sl", str(dataset), "--out", str(out), "--preset", "tiny", "--steps", "60", "--batch-size", "32",
            "--lr", "0.05", "--warmup-steps", "5", "--val-every", "30", "--export", str(export), "--no-progress"]
    assert train_main(args) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    train_loss = [float(r["loss"]) for r in rows if r["split"] == "train"]
    assert train_loss[-1] < train_loss[0]  # it learns something
    net = nets.load(export)
    assert net.meta["kind"] == "policy" and net.meta["features"] == "alphago48" and net.meta["in_planes"] == 48
    assert net.meta["board_size"] == 9 and "command" in net.meta["provenance"]
    assert net(torch.zeros(1, 48, 9, 9)).shape == (1, 82)


def test_value_sl_trains_on_one_position_per_game(dataset, tmp_path):
    out, export = tmp_path / "value", tmp_path / "value9.pt"
    args = ["value-sl", str(dataset), "--out", str(out), "--preset", "tiny", "--steps", "20", "--batch-size", "4",
            "--lr", "0.01", "--warmup-steps", "2", "--val-every", "10", "--export", str(export), "--no-progress"]
    assert train_main(args) == 0
    net = nets.load(export)
    assert net.meta["kind"] == "value" and net.meta["features"] == "alphago49"
    rows = [r for r in csv.DictReader(open(out / "metrics.csv")) if r["split"] == "val"]
    assert rows and 0 <= float(rows[-1]["mse"]) <= 4


@pytest.mark.parametrize("all_positions", [False, True])
def test_value_sl_epoch_is_one_position_per_game_or_every_position(dataset, tmp_path, all_positions):
    loaded = [shards.load_shard(p) for p in shards.shard_paths(dataset, "train")]
    decided = [s["outcome"] != 0 for s in loaded]
    per_epoch = sum(int(d.sum()) if all_positions else np.unique(s["game"][d]).size for s, d in zip(loaded, decided))
    args = ["value-sl", str(dataset), "--out", str(tmp_path / "v"), "--preset", "tiny", "--epochs", "1",
            "--batch-size", "4", "--val-every", "1000", "--no-progress"] + ["--all-positions"] * all_positions
    assert train_main(args) == 0
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "v" / "metrics.csv")) if r["split"] == "train"]
    assert steps[-1] == per_epoch // 4


def test_sl_resume_continues_the_run(dataset, tmp_path):
    out = tmp_path / "run"
    base = ["sl", str(dataset), "--out", str(out), "--preset", "tiny", "--steps", "30", "--batch-size", "16",
            "--val-every", "100", "--ckpt-every", "10", "--no-progress"]
    assert train_main(base + ["--max-steps-this-run", "10"]) == 0
    assert train_main(base + ["--resume"]) == 0
    steps = [int(r["step"]) for r in csv.DictReader(open(out / "metrics.csv")) if r["split"] == "train"]
    assert steps[-1] == 30


def test_input_planes_nest():
    from training.stages.sl import input_planes

    assert input_planes("alphago49", "alphago48") == 48
    assert input_planes("zero17", "zero17") == 17
    with pytest.raises(ValueError):
        input_planes("alphago48", "alphago49")


def test_eval_policy_reports_accuracy_by_move_number(dataset, tmp_path, capsys):
    export = tmp_path / "policy9.pt"
    assert train_main(["sl", str(dataset), "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "40",
                       "--batch-size", "32", "--export", str(export), "--no-progress"]) == 0
    capsys.readouterr()
    assert train_main(["eval-policy", str(export), str(FIXTURES), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    games = [g for p in sorted(FIXTURES.glob("pro9-*.sgf")) for g in load(p)]
    assert report["positions"] == sum(len(g.moves) for g in games)
    assert 0 < report["top1"] <= report["top5"] <= 1 and report["loglik"] < 0
    assert report["skipped"] == {"wrong size": 4}  # the 19x19 fixtures
    assert sum(b["positions"] for b in report["by_move_number"].values()) == report["positions"]
    assert list(report["by_move_number"])[0] == "0-49"
    # --split test keeps only the held-out games of a dataset split with the same seed
    assert train_main(["eval-policy", str(export), str(FIXTURES), "--split", "test", "--test", "0.5", "--json"]) == 0
    held_out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < held_out["positions"] < report["positions"]


def test_eval_policy_scores_a_dual_nets_policy_head_on_any_size(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "dual.pt"
    nets.save(nets.DualNet(49, 1, 8, board_sizes=(19,)), path, features="alphago49")
    assert train_main(["eval-policy", str(path), str(FIXTURES), "--size", "9", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    games = [g for p in sorted(FIXTURES.glob("pro9-*.sgf")) for g in load(p)]
    assert report["positions"] == sum(len(g.moves) for g in games)
    assert 0 <= report["top1"] <= report["top5"] <= 1 and report["loglik"] < 0


def test_eval_policy_rejects_a_value_net(dataset, tmp_path, capsys):
    export = tmp_path / "value9.pt"
    assert train_main(["value-sl", str(dataset), "--out", str(tmp_path / "v"), "--preset", "tiny", "--steps", "2",
                       "--batch-size", "4", "--export", str(export), "--no-progress"]) == 0
    assert train_main(["eval-policy", str(export), str(FIXTURES)]) == 2
    assert "holds a value network" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert train_main(["eval-policy", str(tmp_path / "junk.pt"), str(FIXTURES)]) == 2


@pytest.mark.parametrize("which", ["default", "default-rollout"])
def test_eval_policy_of_no_position_is_an_error(which, tmp_path, capsys):
    for record in sorted(FIXTURES.glob("pro9-0*.sgf"))[:2]:
        (tmp_path / record.name).write_bytes(record.read_bytes())
    assert train_main(["eval-policy", which, str(tmp_path), "--json"]) == 2  # 19x19 nets, 9x9 records: once exit 0
    assert "no 19x19 positions to evaluate in the sources (games skipped: 2 " in capsys.readouterr().err


def test_minutes_picks_a_step_count_from_a_probe(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["sl", str(dataset), "--out", str(out), "--preset", "tiny", "--minutes", "0.05",
                       "--batch-size", "16", "--val-every", "1000", "--no-progress"]) == 0
    err = capsys.readouterr().err
    steps = int(err.split("--minutes 0.05: ")[1].split()[0])
    assert steps >= 1
    last = [int(r["step"]) for r in csv.DictReader(open(out / "metrics.csv")) if r["split"] == "train"][-1]
    assert last == steps


def test_sl_runs_data_parallel_under_torchrun(dataset, tmp_path):
    out = tmp_path / "ddp"
    run_two_ranks("-m", "training.cli", "sl", str(dataset), "--out", str(out), "--preset", "tiny", "--steps", "6",
                  "--batch-size", "8", "--val-every", "3", "--no-progress")
    steps = [int(r["step"]) for r in csv.DictReader(open(out / "metrics.csv")) if r["split"] == "train"]
    assert steps[-1] == 6
    assert nets.load(out / "last.pt").meta["kind"] == "policy"


@pytest.mark.parametrize("which", ["default-rollout", "default-tree"])
def test_eval_policy_scores_pattern_policies_with_their_speed(which, capsys):
    assert train_main(["eval-policy", which, str(FIXTURES), "--size", "19", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["policy"] == which.split("-")[1]
    assert report["positions"] > 500 and 0.05 < report["top1"] < 0.9 and report["us_per_move"] > 0


def _positions(size: int = 9, count: int = 6):
    from gogame import features

    game = load(sorted(FIXTURES.glob("pro9-*.sgf"))[0])[0]
    boards = [board.copy() for board, _, _ in list(game.replay())[10:10 + count]]
    planes = np.stack([features.planes(b, "alphago48") for b in boards])
    legal = torch.from_numpy(np.stack([np.append(features.legal_mask(b), True) for b in boards]))
    return planes, legal


def test_policy_log_probs_without_ensemble_is_the_masked_softmax_of_the_net():
    from training.eval.policy import policy_log_probs

    torch.manual_seed(0)
    net = nets.build("policy", 48, 9, "tiny").eval()
    planes, legal = _positions()
    expected = nets.masked_log_softmax(net(torch.from_numpy(planes).float()).detach(), legal)
    got = policy_log_probs(net, planes, legal, bf16=False)
    assert torch.allclose(got.exp(), expected.exp(), atol=1e-6)


def test_policy_ensemble_is_equivariant_under_the_board_symmetries():
    """The mean over all 8 views of a rotated position is the rotated mean: the inverse transforms are right."""
    from gogame import features
    from training.eval.policy import policy_log_probs

    torch.manual_seed(1)
    net = nets.build("policy", 48, 9, "tiny").eval()
    planes, legal = _positions()
    base = policy_log_probs(net, planes, legal, ensemble=True, bf16=False).exp().numpy()
    single = policy_log_probs(net, planes, legal, ensemble=False, bf16=False).exp().numpy()
    assert not np.allclose(base, single, atol=1e-4)  # the tiny untrained net is far from symmetric
    for k in range(8):
        moved = np.ascontiguousarray(features.transform_planes(planes, k))
        moved_legal = torch.from_numpy(np.stack([np.append(features.transform_planes(m[:81].reshape(9, 9), k).ravel(), m[81])
                                                 for m in legal.numpy()]))
        got = policy_log_probs(net, moved, moved_legal, ensemble=True, bf16=False).exp().numpy()
        expected = np.stack([np.append(features.transform_planes(p[:81].reshape(9, 9), k).ravel(), p[81]) for p in base])
        assert np.allclose(got, expected, atol=1e-5)


def test_value_sl_can_start_from_a_policy_trunk_and_keep_its_first_layers(dataset, tmp_path):
    policy_file, value_file = tmp_path / "policy9.pt", tmp_path / "value9.pt"
    assert train_main(["sl", str(dataset), "--out", str(tmp_path / "p"), "--preset", "tiny", "--steps", "4",
                       "--batch-size", "8", "--export", str(policy_file), "--no-progress"]) == 0
    assert train_main(["value-sl", str(dataset), "--out", str(tmp_path / "v"), "--init-from", str(policy_file),
                       "--frozen-layers", "1", "--steps", "6", "--batch-size", "8", "--optimizer", "adamw", "--lr", "1e-2",
                       "--warmup-steps", "0",
                       "--export", str(value_file), "--no-progress"]) == 0
    policy, value = nets.load(policy_file), nets.load(value_file)
    assert value.meta["provenance"]["trunk_from"] == str(policy_file)
    first, second = (torch.allclose(value.hidden[i].weight[:, :48] if i == 0 else value.hidden[i].weight,
                                    policy.hidden[i].weight, atol=1e-3) for i in (0, 2))
    assert first and not second  # the frozen layer kept the policy's weights (to fp16), the next one trained
    assert train_main(["sl", str(dataset), "--out", str(tmp_path / "bad"), "--init-from", str(policy_file),
                       "--steps", "1"]) == 2


@pytest.mark.parametrize("number, size, stage", [(0, 9, "0-19"), (19, 9, "0-19"), (20, 9, "20-39"), (79, 9, "60-79"),
                                                 (80, 9, "80+"), (120, 9, "80+"), (89, 19, "0-89"), (90, 19, "90-179")])
def test_eval_value_stages_are_quarters_of_the_board(number, size, stage):
    assert stage_of(number, size) == stage


def test_eval_value_scores_a_net_that_knows_nothing_at_mse_one(dataset, tmp_path, capsys):
    torch.manual_seed(0)
    net = nets.build("value", 49, 9, "tiny")
    torch.nn.init.zeros_(net.out.weight)
    torch.nn.init.zeros_(net.out.bias)  # v = tanh(0) = 0 everywhere: (z - v)^2 = 1, and v > 0 never
    nets.save(net, tmp_path / "zero.pt", features="alphago49")
    assert train_main(["eval-value", str(tmp_path / "zero.pt"), str(dataset), "--split", "val", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    loaded = [shards.load_shard(p) for p in shards.shard_paths(dataset, "val")]
    outcomes = np.concatenate([s["outcome"] for s in loaded])
    decided = outcomes[outcomes != 0]
    assert report["positions"] == decided.size
    assert report["mse"] == pytest.approx(1.0) and report["mse_alphago_scale"] == pytest.approx(0.5)
    assert report["sign_acc"] == pytest.approx(np.mean(decided < 0))
    assert sum(r["positions"] for r in report["by_move_number"].values()) == decided.size

    torch.manual_seed(1)
    nets.save(nets.build("value", 49, 9, "tiny"), tmp_path / "other.pt", features="alphago49")
    args = ["eval-value", str(tmp_path / "other.pt"), str(dataset), "--against", str(tmp_path / "zero.pt"), "--json"]
    assert train_main(args) == 0
    paired = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert paired["baseline"]["mse"] == pytest.approx(1.0)  # the zero net on the same positions
    assert paired["baseline"]["difference"] == pytest.approx(paired["mse"] - 1.0)
    lo, hi = paired["baseline"]["difference_95"]
    assert lo <= paired["baseline"]["difference"] <= hi

    games = sum(np.unique(s["game"][s["outcome"] != 0]).size for s in loaded)  # game ids count within a shard
    assert train_main(["eval-value", str(tmp_path / "zero.pt"), str(dataset), "--one-per-game", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["positions"] == games


def test_eval_value_refuses_a_net_of_another_size(dataset, tmp_path, capsys):
    nets.save(nets.build("value", 49, 7, "tiny"), tmp_path / "seven.pt", features="alphago49")
    assert train_main(["eval-value", str(tmp_path / "seven.pt"), str(dataset)]) == 2
    assert "7x7" in capsys.readouterr().err


def _area_batch(size: int, symmetry: int, transposed: bool) -> dict:
    """A batch whose final area is the mover's stones (plane 0), or their transpose, as a stored shard has it."""
    rng = np.random.default_rng(symmetry)
    planes = rng.integers(0, 2, size=(16, 49, size, size)).astype(np.uint8)
    stones = planes[:, 0].transpose(0, 2, 1) if transposed else planes[:, 0]
    batch = {"planes": torch.from_numpy(np.packbits(planes.reshape(16, -1), axis=1)),
             "move": torch.zeros(16, dtype=torch.int64), "outcome": torch.ones(16), "symmetry": symmetry,
             shards.OWNERSHIP: torch.from_numpy(2.0 * stones.reshape(16, -1) - 1)}
    return batch


@pytest.mark.parametrize("symmetry", range(8))
def test_value_loss_turns_the_final_area_with_the_position(symmetry):
    def sure_of_its_stones(planes, ownership):  # ownership logits: +20 on the mover's stones, -20 elsewhere
        assert ownership
        return torch.zeros(planes.shape[0]), 20 * (2 * planes[:, 0].flatten(1) - 1)

    loss_fn = value_loss(49, 49, 5, ownership_weight=2.0)
    loss, metrics = loss_fn(sure_of_its_stones, _area_batch(5, symmetry, transposed=False))
    assert metrics["ownership"] < 1e-6 and metrics["mse"] == 1.0 and loss.item() == pytest.approx(1.0)
    _, metrics = loss_fn(sure_of_its_stones, _area_batch(5, symmetry, transposed=True))
    assert metrics["ownership"] > 1  # a target that does not follow the stones is caught


def test_ownership_weight_needs_shards_with_the_final_area(dataset, tmp_path, capsys):
    assert not shards.PositionBatches(shards.shard_paths(dataset, "train"), 4).ownership  # expert records: no area
    args = ["value-sl", str(dataset), "--out", str(tmp_path / "v"), "--preset", "tiny", "--steps", "2",
            "--ownership-weight", "1", "--no-progress"]
    with pytest.raises(SystemExit, match="final area"):
        train_main(args)
