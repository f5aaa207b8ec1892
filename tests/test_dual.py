"""Tests for training.stages.dual: the dual loss, build_job, the stage end to end on a tiny archive."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gogame import nets, sgf
from gogame.checkpoint import CheckpointError
from training import cli
from training.data import shards
from training.stages.dual import DualConfig, build_job, dual_loss
from training.trainer import Trainer

from tests.test_stream import DATA, make_archive

SIZE = 9


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    return make_archive(folder / "pro9.tar.xz", {p.name: p.read_bytes() for p in sorted(DATA.glob("pro9-*.sgf"))})


def config(archive: Path, tmp_path: Path, **changes) -> DualConfig:
    base = DualConfig(sources=(str(archive),), size=SIZE, preset="b2c16", out=str(tmp_path / "run"), steps=6,
                      batch_size=16, warmup_steps=0, val_every=3, val_batches=2, ckpt_every=3, log_every=3,
                      ownership_playouts=4, games_per_chunk=4, val_fraction=0.2, test_fraction=0.2,
                      index_dir=str(tmp_path / "index"), prefetch=0, progress=False, device="cpu")
    return dataclasses.replace(base, **changes)


class Fixed(torch.nn.Module):
    """A stand-in net: the outputs it is given, whatever the planes."""

    def __init__(self, logits, value, ownership):
        super().__init__()
        self.out = (logits, value, ownership)

    def forward(self, planes):
        return self.out


def test_value_mse_counts_only_positions_with_an_outcome():
    b = 4
    batch = {"planes": torch.zeros(b, -(-49 * SIZE * SIZE // 8), dtype=torch.uint8),
             "move": torch.tensor([0, 1, 2, SIZE * SIZE]), "outcome": torch.tensor([1.0, 0.0, -1.0, 0.0]),
             "ownership": torch.zeros(b, SIZE * SIZE), "symmetry": 0}
    logits, ownership = torch.zeros(b, SIZE * SIZE + 1), torch.zeros(b, SIZE * SIZE)
    loss_fn = dual_loss(SIZE)
    right = loss_fn(Fixed(logits, torch.tensor([1.0, 0.9, -1.0, -0.9]), ownership), batch)
    other = loss_fn(Fixed(logits, torch.tensor([1.0, -0.5, -1.0, 0.7]), ownership), batch)
    wrong = loss_fn(Fixed(logits, torch.tensor([-1.0, 0.9, -1.0, -0.9]), ownership), batch)
    assert right[1]["mse"] == other[1]["mse"] == 0.0 and torch.equal(right[0], other[0])
    assert wrong[1]["mse"] == pytest.approx(2.0)  # (1 - -1)^2 over the two positions with an outcome
    none = {**batch, "outcome": torch.zeros(b)}
    assert loss_fn(Fixed(logits, torch.tensor([1.0, 0.9, -1.0, -0.9]), ownership), none)[1]["mse"] == 0.0


def test_the_value_target_mixes_in_the_search_value_where_a_record_has_one():
    b = 3
    batch = {"planes": torch.zeros(b, -(-49 * SIZE * SIZE // 8), dtype=torch.uint8),
             "move": torch.tensor([0, 1, 2]), "outcome": torch.tensor([1.0, -1.0, 0.0]),
             "search_value": torch.tensor([0.2, float("nan"), 0.6]),
             "ownership": torch.zeros(b, SIZE * SIZE), "symmetry": 0}
    logits, ownership = torch.zeros(b, SIZE * SIZE + 1), torch.zeros(b, SIZE * SIZE)
    value = torch.tensor([0.0, 0.0, 0.0])
    mixed = dual_loss(SIZE, search_value_weight=0.75)(Fixed(logits, value, ownership), batch)[1]["mse"]
    # targets 0.25 * 1 + 0.75 * 0.2 = 0.4 and -1 (no search value); the third has no outcome: not counted
    assert mixed == pytest.approx((0.4 ** 2 + 1.0) / 2)
    assert dual_loss(SIZE)(Fixed(logits, value, ownership), batch)[1]["mse"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="search_value_weight"):
        dual_loss(SIZE, search_value_weight=1.5)


def test_the_policy_target_mixes_in_the_searchs_visits_where_a_record_has_them():
    b, points = 3, SIZE * SIZE + 1
    centre, pass_ = SIZE * SIZE // 2, points - 1  # no symmetry moves these (each row gets its own symmetry)
    searched = torch.zeros(b, points)
    searched[0, [centre, pass_]] = torch.tensor([0.75, 0.25])  # row 1 has no visits: the move alone
    searched[2, pass_] = 1.0
    batch = {"planes": torch.zeros(b, -(-49 * SIZE * SIZE // 8), dtype=torch.uint8),
             "move": torch.full((b,), centre), "outcome": torch.zeros(b), "search_policy": searched,
             "ownership": torch.zeros(b, SIZE * SIZE), "symmetry": 0}
    logits = torch.randn(b, points, generator=torch.Generator().manual_seed(0))
    ownership, value = torch.zeros(b, SIZE * SIZE), torch.zeros(b)
    log_p = torch.log_softmax(logits, dim=1)
    played = -log_p[torch.arange(b), batch["move"]]
    against = -(searched * log_p).sum(dim=1)
    loss, metrics = dual_loss(SIZE, ownership_weight=0, search_policy_weight=0.5)(
        Fixed(logits, value, ownership), batch)
    expected = (0.5 * played[0] + 0.5 * against[0] + played[1] + 0.5 * played[2] + 0.5 * against[2]) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["policy"] == pytest.approx(played.mean().item(), rel=1e-5)
    assert metrics["policy_target"] == pytest.approx(expected.item(), rel=1e-5)
    plain = dual_loss(SIZE, ownership_weight=0)(Fixed(logits, value, ownership), batch)
    assert plain[0].item() == pytest.approx(played.mean().item(), rel=1e-5) and "policy_target" not in plain[1]
    with pytest.raises(ValueError, match="search_policy_weight"):
        dual_loss(SIZE, search_policy_weight=1.5)


@pytest.mark.parametrize("symmetry", range(8))
def test_the_searchs_visits_turn_with_the_position(symmetry):
    b, points = 4, SIZE * SIZE + 1
    moves = torch.tensor([0, 10, 40, points - 1])
    batch = {"planes": torch.zeros(b, -(-49 * SIZE * SIZE // 8), dtype=torch.uint8), "move": moves,
             "outcome": torch.zeros(b), "search_policy": torch.nn.functional.one_hot(moves, points).float(),
             "ownership": torch.zeros(b, SIZE * SIZE), "symmetry": symmetry}
    logits = torch.randn(b, points, generator=torch.Generator().manual_seed(symmetry))
    model = Fixed(logits, torch.zeros(b), torch.zeros(b, SIZE * SIZE))
    # visits all on the move played: the same target however the position is turned
    mixed = dual_loss(SIZE, search_policy_weight=1.0)(model, batch)
    assert mixed[1]["policy_target"] == pytest.approx(mixed[1]["policy"], rel=1e-5)


def test_the_value_target_mixes_in_the_rollout_value_beside_the_search_value():
    b = 3
    batch = {"planes": torch.zeros(b, -(-49 * SIZE * SIZE // 8), dtype=torch.uint8),
             "move": torch.tensor([0, 1, 2]), "outcome": torch.tensor([1.0, -1.0, 1.0]),
             "search_value": torch.tensor([0.2, float("nan"), float("nan")]),
             "rollout_value": torch.tensor([0.6, -0.2, float("nan")]),
             "ownership": torch.zeros(b, SIZE * SIZE), "symmetry": 0}
    logits, ownership = torch.zeros(b, SIZE * SIZE + 1), torch.zeros(b, SIZE * SIZE)
    value = torch.tensor([0.0, 0.0, 0.0])
    mixed = dual_loss(SIZE, search_value_weight=0.25, rollout_value_weight=0.5)(
        Fixed(logits, value, ownership), batch)[1]["mse"]
    # targets 0.25 * 1 + 0.25 * 0.2 + 0.5 * 0.6 = 0.6; 0.5 * -1 + 0.5 * -0.2 = -0.6 (no search value); 1 (neither)
    assert mixed == pytest.approx((0.6 ** 2 + 0.6 ** 2 + 1.0) / 3)
    assert dual_loss(SIZE)(Fixed(logits, value, ownership), batch)[1]["mse"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="add up to at most 1"):
        dual_loss(SIZE, search_value_weight=0.5, rollout_value_weight=0.75)
    with pytest.raises(ValueError, match="rollout_value_weight"):
        dual_loss(SIZE, rollout_value_weight=-0.1)


def test_ownership_loss_is_lower_for_the_right_owner():
    b = 1  # one row: symmetry 0 leaves it as it is (a second row would be turned, its target with it)
    owner = torch.ones(b, SIZE * SIZE)
    owner[:, : SIZE * 4] = -1
    batch = {"planes": torch.zeros(b, -(-49 * SIZE * SIZE // 8), dtype=torch.uint8), "move": torch.tensor([0]),
             "outcome": torch.zeros(b), "ownership": owner, "symmetry": 0}
    logits, value = torch.zeros(b, SIZE * SIZE + 1), torch.zeros(b)
    loss_fn = dual_loss(SIZE, ownership_weight=1.0)
    right = loss_fn(Fixed(logits, value, 4 * owner), batch)[1]
    wrong = loss_fn(Fixed(logits, value, -4 * owner), batch)[1]
    assert right["ownership"] < 0.05 < 4 < wrong["ownership"]
    assert right["own_acc"] == 1.0 and wrong["own_acc"] == 0.0


def test_build_job_trains_and_its_checkpoints_load_as_dual_nets(archive, tmp_path):
    job = build_job(config(archive, tmp_path))
    assert isinstance(job.model, nets.DualNet) and job.val is not None and job.val.split == "val"
    assert job.extra_meta["kind"] == "dual" and job.extra_meta["provenance"]["data"] == job.train.manifest()
    summary = Trainer(job.model, job.loss_fn, job.train, job.val, config=job.config,
                      extra_meta=job.extra_meta).fit()
    assert summary["step"] == 6
    assert set(summary["val"]) >= {"loss", "policy", "acc", "top5", "mse", "ownership", "own_acc"}
    loaded = nets.load(tmp_path / "run" / "last.pt", kind="dual")
    assert loaded.meta["board_sizes"] == [SIZE] and loaded.meta["features"] == "alphago49"


def test_self_play_games_teach_the_policy_head_their_searches_visits(archive, tmp_path):
    from training.stages import selfplay
    from gogame.api import Engine

    torch.manual_seed(0)
    engine = Engine(nets.build("policy", 48, SIZE, "tiny"), None, visits=8, threads=1, seed=0)
    games = selfplay.play_games([selfplay.SearchPlayer(engine, 8)], [selfplay.Plan()] * 4, size=SIZE,
                                max_moves=30, rng=np.random.default_rng(0))
    searched = make_archive(tmp_path / "selfplay.tar.xz", {f"sgf/s-{k}.sgf": sgf.dumps(g.to_sgf(f"s-{k}")).encode()
                                                           for k, g in enumerate(games)})
    job = build_job(config(archive, tmp_path, sources=(str(archive), str(searched)), search_policy_weight=0.5,
                           val_fraction=0.0, test_fraction=0.0))
    assert job.extra_meta["provenance"]["search_policy_weight"] == 0.5
    assert job.train.manifest()["settings"]["search_policy"]
    batches = list(job.train.batches(0))
    assert sum(int((b["search_policy"].sum(dim=1) > 0).sum()) for b in batches) > 0
    summary = Trainer(job.model, job.loss_fn, job.train, None, config=job.config, extra_meta=job.extra_meta).fit()
    assert summary["step"] == 6 and math.isfinite(summary["train"]["policy_target"])


def test_a_teacher_mixes_its_softmax_into_the_policy_term():
    teacher = nets.build("policy", 48, SIZE, "tiny")
    with torch.no_grad():
        teacher.to_pass.bias.fill_(50.0)  # the teacher passes, whatever the position
    b = 2
    batch = {"planes": torch.zeros(b, -(-49 * SIZE * SIZE // 8), dtype=torch.uint8), "move": torch.tensor([0, 1]),
             "outcome": torch.zeros(b), "ownership": torch.zeros(b, SIZE * SIZE), "symmetry": 0}
    student = Fixed(torch.zeros(b, SIZE * SIZE + 1), torch.zeros(b), torch.zeros(b, SIZE * SIZE))
    taught = dual_loss(SIZE, teacher=teacher, teacher_weight=0.25)
    metrics = taught(student, batch)[1]
    uniform = math.log(SIZE * SIZE + 1)  # a uniform student's cross-entropy against any target
    assert metrics["policy"] == pytest.approx(uniform) and metrics["teacher"] == pytest.approx(uniform)
    student.out = (torch.cat([torch.zeros(b, SIZE * SIZE), torch.full((b, 1), 8.0)], dim=1), *student.out[1:])
    loss, metrics = taught(student, batch)
    assert metrics["teacher"] < 0.1 < metrics["policy"]  # it passes as its teacher does, not as the moves say
    assert loss.item() == pytest.approx(0.75 * metrics["policy"] + 0.25 * metrics["teacher"] + metrics["ownership"],
                                        rel=1e-5)
    assert "teacher" not in dual_loss(SIZE)(student, batch)[1]
    with pytest.raises(ValueError, match="teacher_weight"):
        dual_loss(SIZE, teacher=teacher, teacher_weight=0.0)


def test_value_positions_sample_the_training_games_only_positions_per_game_every_split(archive, tmp_path):
    job = build_job(config(archive, tmp_path, value_positions=3, positions_per_game=5))
    assert job.train.value_positions == 3 and job.val.value_positions == 0  # held-out outcomes of every position
    assert job.train.positions_per_game == job.val.positions_per_game == 5  # validation over as many games


def test_init_starts_from_another_runs_weights_and_refuses_ones_that_do_not_fit(archive, tmp_path):
    first = build_job(config(archive, tmp_path / "a"))
    Trainer(first.model, first.loss_fn, first.train, None, config=first.config, extra_meta=first.extra_meta).fit()
    last = tmp_path / "a" / "run" / "last.pt"
    job = build_job(config(archive, tmp_path / "b", init=str(last)))
    trained = nets.load(last).state_dict()
    assert all(torch.equal(trained[k], v) for k, v in job.model.state_dict().items())
    assert job.extra_meta["provenance"]["init"] == {"path": str(last), "sha256": shards.file_sha256(last)}
    with pytest.raises(CheckpointError, match="do not fit"):
        build_job(config(archive, tmp_path / "c", init=str(last), preset="b4c64"))
    with pytest.raises(CheckpointError):
        build_job(config(archive, tmp_path / "d", init=str(archive)))


def test_a_resumed_run_ends_with_the_weights_of_an_unbroken_one(archive, tmp_path):
    whole = build_job(config(archive, tmp_path / "a"))
    Trainer(whole.model, whole.loss_fn, whole.train, None, config=whole.config,
            extra_meta=whole.extra_meta).fit()
    for _ in range(2):  # 3 steps, then the other 3 after a resume
        part = build_job(config(archive, tmp_path / "b", max_steps_this_run=3, resume=True))
        Trainer(part.model, part.loss_fn, part.train, None, config=part.config,
                extra_meta=part.extra_meta).fit()
    a = nets.load(tmp_path / "a" / "run" / "last.pt").state_dict()
    b = nets.load(tmp_path / "b" / "run" / "last.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_command_exports_fp16_weights_with_provenance(archive, tmp_path):
    export = tmp_path / "dual9.pt"
    argv = ["dual", str(archive), "--out", str(tmp_path / "run"), "--size", "9", "--preset", "b2c16",
            "--steps", "3", "--batch-size", "8", "--val-every", "3", "--val-batches", "1", "--ownership-playouts",
            "2", "--val-fraction", "0.2", "--test-fraction", "0.2", "--index-dir", str(tmp_path / "index"),
            "--warmup-steps", "0", "--no-progress", "--threads", "1", "--export", str(export)]
    assert cli.main(argv) == 0
    net = nets.load(export, kind="dual")
    provenance = net.meta["provenance"]
    assert provenance["steps"] == 3 and provenance["batch_size"] == 8 and "mse" in provenance["validation"]
    assert provenance["data"]["inputs"][0]["path"] == str(archive.resolve())
    assert cli.main(["dual", str(tmp_path / "missing.tar.xz"), "--out", str(tmp_path / "x"),
                     "--index-dir", str(tmp_path / "index")]) == 2


def test_build_job_takes_a_teacher_of_its_own_size_only(archive, tmp_path):
    job = build_job(config(archive, tmp_path, teacher=str(nets.WEIGHTS_DIR / "policy9.pt")))
    assert job.extra_meta["provenance"]["teacher"]["path"].endswith("policy9.pt")
    assert "teacher" in job.loss_fn(job.model, next(iter(job.train.batches(0))))[1]
    with pytest.raises(ValueError, match="cannot teach"):
        build_job(config(archive, tmp_path, teacher=str(nets.WEIGHTS_DIR / "policy19.pt")))
