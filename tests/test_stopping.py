"""Training that survives being stopped: signals, time limits, timed checkpoints, fixed run settings, manifests.

Run as a script (``python tests/test_stopping.py OUT_DIR [--resume]``) this file is the worker the signal test
sends SIGTERM and SIGKILL to: the tiny regression run of tests/test_trainer.py, slowed to about 10 ms a step
so that the signals land mid-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gogame.checkpoint import CheckpointError, load_checkpoint
from tests.test_trainer import assert_same_weights, config, mlp, mse_loss, regression_data
from training.cli import main as train_main
from training.data import shards
from training.metrics import read_metrics
from training.stages.selfplay import GameSpec, generate
from training.stopping import EXIT_STOPPED, RunStopped, StopRequest
from training.trainer import Trainer, manifest_difference, stored_config

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "data"
WORKER_STEPS = 300


def slow_mse_loss(model, batch):
    if model.training:
        time.sleep(0.01)
    return mse_loss(model, batch)


def worker(out_dir: Path, resume: bool) -> int:
    cfg = replace(config(out_dir, steps=WORKER_STEPS), out_dir=str(out_dir), ckpt_every=20, ckpt_every_minutes=0,
                  log_every=5, val_every=50, resume=resume)
    try:
        Trainer(mlp(), slow_mse_loss, regression_data(200, 1), regression_data(40, 2), config=cfg).fit()
    except RunStopped as stop:
        print(stop, file=sys.stderr)
        return EXIT_STOPPED
    return 0


# -- signals and kill -9, in a real process ------------------------------------------------------------------


def start_worker(out_dir: Path, resume: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, str(out_dir)] + ["--resume"] * resume
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(proc: subprocess.Popen, out_dir: Path, step: int, timeout: float = 120) -> None:
    """Wait until the worker has logged a train row at ``step`` or later (it is then inside its loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the worker ended early: {proc.communicate()}"
        try:
            if any(r["split"] == "train" and r["step"] >= step for r in read_metrics(out_dir)):
                return
        except (ValueError, KeyError):  # caught while the file was being rewritten
            pass
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"the worker did not reach step {step} in {timeout} s")


def checkpoint_step(out_dir: Path) -> int:
    path = out_dir / "last.pt"
    return load_checkpoint(path, expect_kind="trainer")["step"] if path.exists() else 0


def test_sigterm_three_times_and_kill_9_once_end_with_the_weights_of_an_unbroken_run(tmp_path):
    full, parts = tmp_path / "full", tmp_path / "parts"
    assert start_worker(full, resume=False).wait(timeout=300) == 0

    for i, sig in enumerate([signal.SIGTERM, signal.SIGTERM, signal.SIGTERM, signal.SIGKILL]):
        before = checkpoint_step(parts)
        proc = start_worker(parts, resume=i > 0)
        wait_for_step(proc, parts, before + 25)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        if sig == signal.SIGTERM:
            assert proc.returncode == EXIT_STOPPED, err
            assert "SIGTERM" in err and "stopped at step" in err
            assert checkpoint_step(parts) >= before + 25  # the stop wrote the step it reached
        else:
            assert proc.returncode == -signal.SIGKILL
            after = checkpoint_step(parts)
            assert after > before and after % 20 == 0  # the periodic checkpoint survives; later steps are lost
    last = start_worker(parts, resume=True)
    assert last.wait(timeout=300) == 0, last.communicate()

    a = load_checkpoint(full / "last.pt", expect_kind="trainer")
    b = load_checkpoint(parts / "last.pt", expect_kind="trainer")
    assert a["step"] == b["step"] == WORKER_STEPS
    assert_same_weights(a["model"], b["model"])  # bitwise: same data order, same RNG stream (dropout)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert_same_weights(sa, sb)
    assert a["best_metric"] == b["best_metric"]
    assert [(r["step"], r["split"]) for r in read_metrics(full)] == [(r["step"], r["split"]) for r in read_metrics(parts)]


# -- in-process: the time limit, timed checkpoints, fixed settings --------------------------------------------


def test_the_time_limit_stops_with_a_checkpoint_and_resume_finishes_the_same_run(tmp_path):
    data_, val = regression_data(100, 1), regression_data(40, 2)
    full = Trainer(mlp(), mse_loss, data_, val, config=config(tmp_path / "full", steps=20))
    full.fit()
    cfg = config(tmp_path / "parts", steps=20, ckpt_every=1000)
    stopped = Trainer(mlp(), slow_mse_loss, data_, val, config=replace(cfg, stop_after_minutes=1e-4))
    with pytest.raises(RunStopped, match="time limit") as stop:
        stopped.fit()
    assert stopped.stopped == "time limit" and "of 20" in stop.value.where
    step = load_checkpoint(tmp_path / "parts" / "run" / "last.pt")["step"]
    assert 1 <= step < 20
    resumed = Trainer(mlp(), mse_loss, data_, val, config=replace(cfg, resume=True))
    assert resumed.step == step
    resumed.fit()
    assert_same_weights(full.model.state_dict(), resumed.model.state_dict())


def test_a_checkpoint_is_written_whenever_the_minutes_have_passed(tmp_path):
    written = []
    cfg = config(tmp_path, steps=12, ckpt_every=1000, ckpt_every_minutes=1e-9)  # due after every step
    Trainer(mlp(), mse_loss, regression_data(100, 1), config=cfg, on_checkpoint=written.append).fit()
    assert len(written) == 12 and written[0] == tmp_path / "run" / "last.pt"
    written.clear()
    Trainer(mlp(), mse_loss, regression_data(100, 1), config=replace(cfg, ckpt_every_minutes=0),
            on_checkpoint=written.append).fit()
    assert len(written) == 1  # by steps only: the final one


@pytest.mark.parametrize("field, value", [("steps", 30), ("lr", 0.5), ("batch_size", 8), ("seed", 3),
                                          ("schedule", "cosine"), ("warmup_steps", 4)])
def test_resuming_with_other_run_settings_is_an_error_naming_the_setting(tmp_path, field, value):
    cfg = config(tmp_path, steps=20)
    Trainer(mlp(), mse_loss, regression_data(100, 1), config=replace(cfg, max_steps_this_run=5)).fit()
    with pytest.raises(CheckpointError, match=f"{field}="):
        Trainer(mlp(), mse_loss, regression_data(100, 1), config=replace(cfg, resume=True, **{field: value}))
    # settings of this invocation only may change
    Trainer(mlp(), mse_loss, regression_data(100, 1),
            config=replace(cfg, resume=True, val_every=3, log_every=2, stop_after_minutes=5, progress=False))


def test_epochs_over_other_data_are_another_run(tmp_path):
    cfg = config(tmp_path, steps=0, epochs=2)
    Trainer(mlp(), mse_loss, regression_data(100, 1), config=replace(cfg, max_steps_this_run=3)).fit()
    with pytest.raises(CheckpointError, match="data changed"):
        Trainer(mlp(), mse_loss, regression_data(300, 1), config=replace(cfg, resume=True))


def test_extend_lengthens_the_run_and_says_so(tmp_path, capsys):
    cfg = config(tmp_path, steps=10, schedule="cosine", lr=0.1, min_lr=0.0)
    Trainer(mlp(), mse_loss, regression_data(100, 1), config=cfg).fit()
    with pytest.raises(CheckpointError, match="more than"):
        Trainer(mlp(), mse_loss, regression_data(100, 1), config=replace(cfg, resume=True, extend_steps=10))
    longer = Trainer(mlp(), mse_loss, regression_data(100, 1), config=replace(cfg, resume=True, extend_steps=30))
    assert "extending the run from 10 to 30 steps" in capsys.readouterr().err
    assert longer.total_steps == 30 and longer.lr_at(10) > 0.05  # the cosine restarts its descent from here
    assert longer.fit()["step"] == 30
    again = Trainer(mlp(), mse_loss, regression_data(100, 1), config=replace(cfg, resume=True, steps=30))
    assert again.step == 30  # the lengthened run is a 30-step run from now on


def test_stop_request_reasons():
    with StopRequest(0) as request:
        assert request.reason() is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.reason() == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    with StopRequest(1e-9) as request:
        assert request.reason() == "time limit"
    with pytest.raises(ValueError):
        StopRequest(-1)


# -- manifests ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def shard_dir(tmp_path) -> Path:
    out = tmp_path / "shards"
    shards.build_dataset([str(p) for p in sorted(FIXTURES.glob("pro9-*.sgf"))], out, feature_set="alphago49",
                         game_filter=shards.GameFilter(size=9, min_moves=10), workers=1, games_per_chunk=2,
                         val_fraction=0.0, test_fraction=0.0)
    return out


def test_position_batches_manifest_names_each_shard_with_its_size_and_hash(shard_dir):
    paths = shards.shard_paths(shard_dir, "train")
    assert len(paths) >= 2
    manifest = shards.PositionBatches(paths, 8, seed=3).manifest()
    assert [i["path"] for i in manifest["inputs"]] == [str(p) for p in paths]
    assert all(i["bytes"] == p.stat().st_size and len(i["sha256"]) == 64 for i, p in zip(manifest["inputs"], paths))
    assert manifest["settings"]["seed"] == 3
    other = shards.PositionBatches(paths, 8, seed=4).manifest()
    assert manifest_difference(manifest, other) == "settings: seed was 3, is 4"
    assert manifest_difference(manifest, shards.PositionBatches(paths[::-1], 8, seed=3).manifest()) == \
        "the inputs are listed in another order"
    assert manifest_difference(manifest, shards.PositionBatches(paths[1:], 8, seed=3).manifest()) == \
        f"input {paths[0]} is missing"


def sl_args(shard_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["sl", str(shard_dir), "--out", str(out), "--preset", "tiny", "--steps", "40", "--batch-size", "8",
            "--val-every", "1000", "--ckpt-every", "1000", "--no-progress", *extra]


def test_sl_refuses_to_resume_over_a_changed_shard_and_ignores_new_ones(shard_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(sl_args(shard_dir, out, "--max-steps-this-run", "5")) == 0
    paths = shards.shard_paths(shard_dir, "train")
    # a shard added to the folder is not part of this run: the resumed run reads the shards it started with
    extra = shard_dir / "train-99999.npz"
    extra.write_bytes(paths[0].read_bytes())
    assert train_main(sl_args(shard_dir, out, "--max-steps-this-run", "5", "--resume")) == 0
    assert stored_config(out)["manifest"]["train"]["inputs"][-1]["path"] == str(paths[-1])
    # a shard that changed is named
    arrays = shards.load_shard(paths[1])
    arrays["move"] = np.roll(arrays["move"], 1)
    shards.save_shard(paths[1], arrays)
    assert train_main(sl_args(shard_dir, out, "--resume")) == 2
    assert f"input {paths[1]} changed" in capsys.readouterr().err
    paths[1].unlink()
    assert train_main(sl_args(shard_dir, out, "--resume")) == 2
    assert f"shard {paths[1]} is missing" in capsys.readouterr().err


def test_the_command_line_stops_says_how_to_continue_and_continues(shard_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(sl_args(shard_dir, out, "--stop-after", "0.00001")) == EXIT_STOPPED
    err = capsys.readouterr().err
    assert "stopped at step" in err and "(time limit)" in err
    command = err.split("to continue: ")[1].strip()
    assert command.startswith("gogame-train sl ") and command.endswith("--resume")
    assert train_main(command.split()[1:-3] + ["--resume"]) == 0  # without --stop-after: to the end
    assert stored_config(out)["total_steps"] == 40 and checkpoint_step(out) == 40
    assert train_main(sl_args(shard_dir, out, "--resume", "--steps", "50")) == 2
    assert "steps=40, not 50" in capsys.readouterr().err


def test_ctrl_c_before_the_training_loop_is_one_line_and_status_130(shard_dir, tmp_path, capsys, monkeypatch):
    """Ctrl-C while a stage still reads its data (an archive's index, say), before its loop can stop cleanly."""
    from training.stages import sl

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sl, "run", interrupted)
    assert train_main(sl_args(shard_dir, tmp_path / "run")) == 130
    err = capsys.readouterr().err
    assert err.startswith("gogame-train sl: interrupted before training began") and "Traceback" not in err


def test_minutes_are_timed_once_when_the_run_starts(shard_dir, tmp_path, capsys):
    out = tmp_path / "run"
    base = [a for a in sl_args(shard_dir, out) if a not in ("--steps", "40")] + ["--minutes", "0.02"]
    assert train_main(base + ["--max-steps-this-run", "2"]) == 0
    steps = int(capsys.readouterr().err.split("--minutes 0.02: ")[1].split()[0])
    assert train_main(base + ["--resume", "--max-steps-this-run", "1"]) == 0
    assert f"fixed at its start: {steps} steps" in capsys.readouterr().err
    assert stored_config(out)["total_steps"] == steps


def test_selfplay_stops_between_shards_and_a_rerun_finishes(tmp_path):
    spec = GameSpec(9, (str(REPO / "gogame" / "weights" / "policy9.pt"),), "selfplay", 7.5, max_moves=30)
    with pytest.raises(RunStopped, match="time limit") as stop:
        generate(tmp_path / "games", spec, 6, games_per_shard=2, progress=False, stop_after_minutes=1e-9)
    assert "0 of 6 games" in stop.value.where
    summary = generate(tmp_path / "games", spec, 6, games_per_shard=2, progress=False)
    assert summary["games"] == 6


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1]), "--resume" in sys.argv[2:]))
