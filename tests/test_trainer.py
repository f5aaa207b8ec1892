"""Tests for training.trainer and training.metrics on a tiny synthetic regression task.

Run as a script (``torchrun ... tests/test_trainer.py OUT_DIR``) this file is also
the worker of the DDP test.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import threading
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from gogame.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.torchrun import run_two_ranks
from training.metrics import MetricsWriter, plot_run, read_metrics
from training.trainer import (
    DatasetBatches,
    Trainer,
    TrainConfig,
    batch_len,
    lr_at,
    pick_device,
    read_ahead,
    to_device,
)


def regression_data(n: int, seed: int) -> TensorDataset:
    """y = x . w + small noise, with a fixed w."""
    g = torch.Generator().manual_seed(seed)
    w = torch.linspace(-1.0, 1.0, 8)
    x = torch.randn(n, 8, generator=g)
    y = x @ w + 0.05 * torch.randn(n, generator=g)
    return TensorDataset(x, y)


def mlp(seed: int = 0, dropout: float = 0.1) -> nn.Module:
    torch.manual_seed(seed)
    # dropout makes the run depend on the torch RNG, which resume must restore
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 1))


def mse_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    x, y = batch
    pred = model(x).squeeze(1)  # (B,)
    return nn.functional.mse_loss(pred, y), {"mae": (pred - y).abs().mean().item()}


def config(tmp_path: Path, **overrides) -> TrainConfig:
    base = TrainConfig(out_dir=str(tmp_path / "run"), steps=20, batch_size=16, lr=1e-2, optimizer="adamw",
                       val_every=5, log_every=5, ckpt_every=1000, device="cpu", progress=False)
    return replace(base, **overrides)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# -- config and schedule -----------------------------------------------------


@pytest.mark.parametrize("name, cls, nesterov", [
    ("sgd", torch.optim.SGD, False), ("nesterov", torch.optim.SGD, True), ("adagrad", torch.optim.Adagrad, None),
    ("rmsprop", torch.optim.RMSprop, None), ("adam", torch.optim.Adam, None), ("adamw", torch.optim.AdamW, None)])
def test_each_optimizer_is_the_named_torch_one_and_descends(name, cls, nesterov):
    from training.trainer import _make_optimizer

    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0]]))  # output 1: far from the minimum for any lr below
    optimizer = _make_optimizer(model, TrainConfig(steps=1, optimizer=name, lr=0.01))
    assert type(optimizer) is cls
    if nesterov is not None:
        assert optimizer.param_groups[0]["nesterov"] is nesterov
    x = torch.tensor([[1.0, -2.0]])
    before = model(x).pow(2).item()
    optimizer.zero_grad()
    model(x).pow(2).sum().backward()
    optimizer.step()
    assert model(x).pow(2).item() < before


class NoBatches:
    """A batch source with data but not one full batch (shards smaller than one dropped-last batch)."""

    def num_batches(self, world_size):
        return 0

    def batches(self, epoch, start, rank, world_size):
        return iter(())


def test_too_little_data_for_one_batch_is_an_error_not_a_hang(tmp_path):
    data = NoBatches()
    config = TrainConfig(out_dir=str(tmp_path / "run"), steps=3, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="no batch of 8"):
        Trainer(nn.Linear(2, 1), lambda model, batch: (model(batch[0]).sum(), {}), data, config=config)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        TrainConfig()
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        TrainConfig(steps=10, epochs=2)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(steps=10, optimizer="lion")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(steps=10, schedule="linear")
    with pytest.raises(ValueError, match="val_mode"):
        TrainConfig(steps=10, val_mode="up")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(steps=10, batch_size=0)


def test_lr_schedules_pinned():
    const = TrainConfig(steps=100, lr=0.1, warmup_steps=4)
    assert [lr_at(s, const, 100) for s in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])

    cos = TrainConfig(steps=11, lr=1.0, min_lr=0.1, schedule="cosine")
    # half a cosine wave over steps 0..10: lr at the first step, min_lr at the last
    assert lr_at(0, cos, 11) == pytest.approx(1.0)
    assert lr_at(5, cos, 11) == pytest.approx(0.55)
    assert lr_at(10, cos, 11) == pytest.approx(0.1)
    warm_cos = replace(cos, warmup_steps=2)
    assert [lr_at(s, warm_cos, 12) for s in (0, 1, 2)] == pytest.approx([0.5, 1.0, 1.0])
    assert lr_at(11, warm_cos, 12) == pytest.approx(0.1)

    step = TrainConfig(steps=100, lr=0.003, schedule="step", lr_step_every=10, lr_gamma=0.5)
    assert [lr_at(s, step, 100) for s in (0, 9, 10, 25, 99)] == pytest.approx(
        [0.003, 0.003, 0.0015, 0.00075, 0.003 / 2**9])


def test_trainer_sets_the_scheduled_lr(tmp_path):
    cfg = config(tmp_path, steps=8, schedule="step", lr_step_every=4, lr_gamma=0.1, log_every=1)
    Trainer(mlp(), mse_loss, regression_data(64, 1), config=cfg).fit()
    lrs = [r["lr"] for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert lrs == pytest.approx([1e-2] * 4 + [1e-3] * 4)


# -- data --------------------------------------------------------------------


def test_dataset_batches_order_is_seeded_per_epoch():
    source = DatasetBatches(regression_data(10, 0), 4, seed=3)
    e0, e1 = source.indices(0), source.indices(1)
    assert sorted(e0) == sorted(e1) == list(range(10))
    assert e0 != e1
    assert DatasetBatches(regression_data(10, 0), 4, seed=3).indices(1) == e1
    assert DatasetBatches(regression_data(10, 0), 4, shuffle=False).indices(5) == list(range(10))


def test_dataset_batches_shards_and_skips():
    source = DatasetBatches(regression_data(11, 0), 2, seed=0)
    shards = [source.indices(2, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded with the order's first sample
    assert sorted(set(sum(shards, []))) == list(range(11))
    assert source.num_batches(3) == 2
    unpadded = DatasetBatches(regression_data(11, 0), 2, even_shards=False)
    assert sorted(sum((unpadded.indices(0, r, 3) for r in range(3)), [])) == list(range(11))

    all_batches = [x for x, _ in source.batches(4)]
    later = [x for x, _ in source.batches(4, start=3)]
    assert len(all_batches) == source.num_batches() == 6
    assert all(torch.equal(a, b) for a, b in zip(all_batches[3:], later, strict=True))


def test_to_device_and_batch_len():
    x = torch.zeros(5, 2)
    batch = {"a": (x, [x, 3]), "b": "text"}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["a"][1][1] == 3 and moved["b"] == "text" and isinstance(moved["a"], tuple)
    assert batch_len(batch) == 5 and batch_len(("no", "tensors")) == 0
    assert pick_device().type in ("cuda", "mps", "cpu")


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "read_ahead"]


def test_read_ahead_keeps_the_order_raises_the_readers_error_and_stops_when_closed():
    assert list(read_ahead(iter(range(50)), 3)) == list(range(50)) == list(read_ahead(range(50), 0))

    def failing():
        yield 1
        raise OSError("shard 7 is truncated")

    stream = read_ahead(failing(), 2)
    assert next(stream) == 1
    with pytest.raises(OSError, match="shard 7"):
        next(stream)

    read = []
    endless = read_ahead((read.append(i) or i for i in range(10**9)), 4)
    assert [next(endless) for _ in range(3)] == [0, 1, 2]
    endless.close()
    assert not readers() and len(read) <= 3 + 4 + 1  # what was taken, the queue, one waiting to go in


def test_read_ahead_trains_the_same_weights_and_leaves_no_thread(tmp_path):
    data, val = regression_data(100, 1), regression_data(40, 2)
    plain = Trainer(mlp(), mse_loss, data, val, config=config(tmp_path / "plain", steps=20))
    plain.fit()
    ahead = Trainer(mlp(), mse_loss, data, val, config=config(tmp_path / "ahead", steps=20, prefetch=3,
                                                               max_steps_this_run=9))
    ahead.fit()  # stops mid-epoch with batches still queued
    assert not readers()
    ahead = Trainer(mlp(seed=99), mse_loss, data, val, config=config(tmp_path / "ahead", steps=20, prefetch=3,
                                                                      resume=True))
    ahead.fit()
    assert_same_weights(weights(plain.model), weights(ahead.model))
    assert not readers()


# -- training ----------------------------------------------------------------


def test_loss_falls(tmp_path):
    cfg = config(tmp_path, steps=150, val_every=50, log_every=50, grad_clip=1.0)
    trainer = Trainer(mlp(dropout=0.0), mse_loss, regression_data(512, 1), regression_data(128, 2), config=cfg)
    before = trainer.evaluate()["loss"]
    summary = trainer.fit()
    assert summary["step"] == 150
    assert summary["val"]["loss"] < 0.1 * before
    assert summary["best_metric"] == pytest.approx(min(
        r["loss"] for r in read_metrics(tmp_path / "run") if r["split"] == "val"))
    assert "grad_norm" in summary["train"]


def test_epochs_set_the_length(tmp_path):
    cfg = config(tmp_path, steps=0, epochs=3, val_every=100)
    summary = Trainer(mlp(), mse_loss, regression_data(50, 1), config=cfg).fit()
    assert summary["step"] == 3 * math.ceil(50 / 16)


def test_checkpoint_contents(tmp_path):
    cfg = config(tmp_path, steps=10)
    meta = {"arch": "mlp", "sizes": [8, 32, 1], "provenance": {"data": "synthetic"}}
    trainer = Trainer(mlp(), mse_loss, regression_data(64, 1), regression_data(32, 2), config=cfg,
                      extra_meta=meta)
    trainer.fit()
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(tmp_path / "run" / name, expect_kind="trainer")
        assert ckpt["meta"] == meta
        assert ckpt["config"] == asdict(cfg)
        assert set(ckpt["rng"][0]) == {"torch", "numpy", "python"}
        assert ckpt["model"].keys() == trainer.model.state_dict().keys()
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (last["step"], last["epoch"], last["batch_in_epoch"]) == (10, 2, 2)  # 4 batches an epoch
    assert last["optimizer"]["state"]


def test_extra_meta_must_be_plain_data(tmp_path):
    with pytest.raises(TypeError, match="extra_meta"):
        Trainer(mlp(), mse_loss, regression_data(8, 1), config=config(tmp_path), extra_meta={"p": Path(".")})


def test_resume_equals_uninterrupted(tmp_path):
    data, val = regression_data(100, 1), regression_data(40, 2)  # 7 batches an epoch
    full_cfg = config(tmp_path / "full", steps=20)
    full = Trainer(mlp(), mse_loss, data, val, config=full_cfg)
    full.fit()

    cfg = config(tmp_path / "parts", steps=20)
    first = Trainer(mlp(), mse_loss, data, val, config=replace(cfg, max_steps_this_run=9))
    assert first.fit()["step"] == 9  # stopped mid-epoch 1
    second = Trainer(mlp(seed=99), mse_loss, data, val, config=replace(cfg, resume=True))
    assert (second.step, second.epoch, second.batch_in_epoch) == (9, 1, 2)
    second.fit()

    assert_same_weights(weights(full.model), weights(second.model))
    assert full.best_metric == second.best_metric


class Killed(Exception):
    pass


def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    data, val = regression_data(100, 1), regression_data(40, 2)
    full = Trainer(mlp(), mse_loss, data, val, config=config(tmp_path / "full", steps=20, ckpt_every=6))
    full.fit()

    calls = 0

    def dies_in_step_15(model, batch):
        nonlocal calls
        calls += model.training  # count training steps, not validation batches
        if calls == 15:
            raise Killed
        return mse_loss(model, batch)

    cfg = config(tmp_path / "parts", steps=20, ckpt_every=6)
    with pytest.raises(Killed):
        Trainer(mlp(), dies_in_step_15, data, val, config=cfg).fit()
    assert load_checkpoint(tmp_path / "parts" / "run" / "last.pt")["step"] == 12
    resumed = Trainer(mlp(), mse_loss, data, val, config=replace(cfg, resume=True))
    resumed.fit()

    assert_same_weights(weights(full.model), weights(resumed.model))
    # rows logged after step 12 by the killed run were dropped and logged again once
    full_rows = [(r["step"], r["split"]) for r in read_metrics(tmp_path / "full" / "run")]
    resumed_rows = [(r["step"], r["split"]) for r in read_metrics(tmp_path / "parts" / "run")]
    assert resumed_rows == full_rows


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    trainer = Trainer(mlp(), mse_loss, regression_data(32, 1), config=config(tmp_path, resume=True))
    assert trainer.step == 0


def test_resume_rejects_a_checkpoint_of_another_model(tmp_path):
    cfg = config(tmp_path, steps=2)
    Trainer(mlp(), mse_loss, regression_data(32, 1), config=cfg).fit()
    other = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Dropout(0.0), nn.Linear(4, 1))
    with pytest.raises(CheckpointError, match="does not fit"):
        Trainer(other, mse_loss, regression_data(32, 1), config=replace(cfg, resume=True))
    save_checkpoint(tmp_path / "run" / "last.pt", {"kind": "policy"})
    with pytest.raises(CheckpointError, match="expected 'trainer'"):
        Trainer(mlp(), mse_loss, regression_data(32, 1), config=replace(cfg, resume=True))


def test_early_stopping(tmp_path):
    def flat_metric(model, batch):
        loss, metrics = mse_loss(model, batch)
        return loss, {**metrics, "score": 1.0}  # never improves after the first validation

    cfg = config(tmp_path, steps=1000, val_every=5, early_stop_patience=2, val_metric="score", val_mode="max")
    summary = Trainer(mlp(), flat_metric, regression_data(64, 1), regression_data(16, 2), config=cfg).fit()
    assert summary["early_stopped"] and summary["step"] == 15  # best at 5, no better at 10, 15
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 15
    assert load_checkpoint(tmp_path / "run" / "best.pt")["step"] == 5
    # resuming a run that ran out of patience does nothing
    again = Trainer(mlp(), flat_metric, regression_data(64, 1), regression_data(16, 2),
                    config=replace(cfg, resume=True))
    assert again.fit()["step"] == 15


def test_unknown_val_metric(tmp_path):
    cfg = config(tmp_path, val_metric="accuracy")
    with pytest.raises(KeyError, match="accuracy"):
        Trainer(mlp(), mse_loss, regression_data(32, 1), regression_data(8, 2), config=cfg).fit()


class WindowSource:
    """A hand-written BatchSource (as a char-LSTM demo would use): windows of a sequence."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.data = regression_data(n, 5).tensors
        self.batch_size = batch_size

    def num_batches(self, world_size: int) -> int:
        return len(self.data[0]) // self.batch_size // world_size

    def batches(self, epoch, start, rank, world_size):
        for i in range(start, self.num_batches(world_size)):
            j = (i * world_size + rank) * self.batch_size
            yield self.data[0][j:j + self.batch_size], self.data[1][j:j + self.batch_size]


def test_batch_source(tmp_path):
    summary = Trainer(mlp(), mse_loss, WindowSource(64, 8), WindowSource(16, 8),
                      config=config(tmp_path, steps=0, epochs=2)).fit()
    assert summary["step"] == 16 and summary["epoch"] == 1


# -- metrics -----------------------------------------------------------------


def test_metrics_csv_and_plot(tmp_path):
    cfg = config(tmp_path, steps=20, log_every=5, val_every=10)
    Trainer(mlp(), mse_loss, regression_data(64, 1), regression_data(16, 2), config=cfg).fit()
    run = tmp_path / "run"
    with open(run / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["step", "split", "loss", "mae", "lr", "samples_per_s", "elapsed_s"]
    rows = read_metrics(run)
    assert [(r["step"], r["split"]) for r in rows] == [
        (5, "train"), (10, "train"), (10, "val"), (15, "train"), (20, "train"), (20, "val")]
    assert all(r["samples_per_s"] > 0 and r["lr"] == 1e-2 for r in rows if r["split"] == "train")
    assert all("lr" not in r and r["loss"] >= 0 for r in rows if r["split"] == "val")

    png = plot_run(run)
    assert png == run / "metrics.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_run(run, tmp_path / "other.png").is_file()


def test_metrics_writer_widens_and_resumes(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(1, "train", {"loss": 0.5})
    writer.write(2, "val", {"loss": 0.25, "acc": 0.75})  # a new column rewrites the header
    writer.write(3, "train", {"loss": 0.125})
    writer.close()
    assert read_metrics(tmp_path) == [{"step": 1, "split": "train", "loss": 0.5},
                                      {"step": 2, "split": "val", "loss": 0.25, "acc": 0.75},
                                      {"step": 3, "split": "train", "loss": 0.125}]
    MetricsWriter(tmp_path, resume_step=2, tensorboard=False).close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    MetricsWriter(tmp_path, tensorboard=False).close()  # a fresh run starts a fresh file
    assert read_metrics(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        plot_run(tmp_path)


# -- DDP ---------------------------------------------------------------------


def ddp_worker(out_dir: Path) -> None:
    """One rank of the DDP test: train, then write this rank's final weights."""
    cfg = TrainConfig(out_dir=str(out_dir), steps=12, batch_size=8, lr=1e-2, val_every=6, log_every=3,
                      ckpt_every=5, device="cpu", progress=False)
    trainer = Trainer(mlp(seed=int(os.environ["RANK"])), mse_loss, regression_data(100, 1),
                      regression_data(21, 2), config=cfg)  # 21: the ranks get 11 and 10 val samples
    summary = trainer.fit()
    torch.save({"weights": weights(trainer.model), "val": summary["val"], "world": trainer.world_size,
                "released": trainer.train_model is trainer.model}, out_dir / f"rank{trainer.rank}.pt")


def test_ddp_two_gloo_processes(tmp_path):
    run_two_ranks(__file__, str(tmp_path), timeout=120)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert all(r["released"] for r in ranks)  # the DDP wrapper goes with the process group, before exit
    # different initial weights (seeded by rank), yet DDP keeps the ranks identical
    assert_same_weights(ranks[0]["weights"], ranks[1]["weights"])
    assert ranks[0]["val"] == ranks[1]["val"]  # validation means are combined over ranks
    last = load_checkpoint(tmp_path / "last.pt", expect_kind="trainer")
    assert last["step"] == 12 and len(last["rng"]) == 2
    assert_same_weights(last["model"], ranks[0]["weights"])
    rows = read_metrics(tmp_path)
    assert [(r["step"], r["split"]) for r in rows if r["split"] == "val"] == [(6, "val"), (12, "val")]


if __name__ == "__main__":
    ddp_worker(Path(sys.argv[1]))
