"""Tests for the sequence demos: charlstm, forecast and optimizers (quick runs through the CLI, and their parts)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from training.cli import main
from training.demos import charlstm, forecast, optimizers
from training.demos.common import DemoDataMissing, DemoRun
from training.metrics import read_metrics


def quick_run(name: str, out) -> dict:
    assert main(["demo", name, "--quick", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    for picture in results.get("pictures", []):
        assert (out / picture).stat().st_size > 10_000, picture
    return results


def assert_loss_falls(run_dir) -> None:
    losses = [r["loss"] for r in read_metrics(run_dir) if r["split"] == "train"]
    assert len(losses) >= 3 and losses[-1] < 0.9 * losses[0], losses


# -- charlstm ------------------------------------------------------------------


def test_charlstm_quick_run(tmp_path):
    results = quick_run("charlstm", tmp_path)
    lm = results["language_model"]["python"]
    assert_loss_falls(tmp_path / "lm-python")
    assert lm["held_out_bpc"] < lm["unigram_bpc"]
    assert set(lm["samples"]) == {str(t) for t in charlstm.TEMPERATURES}
    assert (tmp_path / "samples-python-T0.8.txt").read_text().startswith(charlstm.PRIMES["python"])
    classifier = results["classifier"]
    assert_loss_falls(tmp_path / "classifier")
    assert classifier["held_out_accuracy"] > classifier["majority_baseline"]
    assert np.sum(classifier["confusion"]) == classifier["held_out_snippets"]


def test_split_by_file_is_a_partition_of_whole_files():
    files = [(f"f{i}", "x" * n) for i, n in enumerate([500, 30, 40, 50, 60, 70, 80, 90, 100, 35])]
    train, held = charlstm.split_by_file(files, 0.1, seed=3)
    assert sorted(train + held) == sorted(files)
    assert "f0" not in {name for name, _ in held}  # larger than the whole held-out budget
    held_chars = sum(len(t) for _, t in held)
    assert 0.1 * 1055 <= held_chars <= 0.1 * 1055 + 100


def test_encode_keeps_ascii_and_marks_the_rest():
    codes = charlstm.encode("a\tb\n\u00e9\u03c0}")
    assert codes.tolist() == [97, 9, 98, 10, charlstm.OTHER, charlstm.OTHER, 125]
    assert charlstm.decode(charlstm.encode("int x = 1;\n")) == "int x = 1;\n"


def test_sampling_at_low_temperature_is_greedy():
    torch.manual_seed(0)
    model = charlstm.CharLSTM(hidden=16)
    drawn = charlstm.sample(model, "ab", 12, temperature=1e-4, seed=1)
    codes = torch.from_numpy(charlstm.encode("ab").astype(np.int64))[None]
    with torch.no_grad():
        for _ in range(12):
            codes = torch.cat([codes, model(codes)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert drawn == charlstm.decode(codes[0].tolist())


def test_surprise_averages_to_the_training_loss_in_bits():
    torch.manual_seed(0)
    model = charlstm.CharLSTM(hidden=16)
    codes = charlstm.encode("for i in range(10):\n    print(i)\n")
    x = torch.from_numpy(codes.astype(np.int64))[None]
    loss, metrics = charlstm.lm_loss(model, (x[:, :-1], x[:, 1:]))
    bits = charlstm.surprise(model, codes, context=1)
    assert len(bits) == len(codes) - 1
    assert bits.mean() == pytest.approx(float(metrics["bpc"]), rel=1e-5)
    assert float(loss.detach()) / math.log(2) == pytest.approx(float(metrics["bpc"]))


def test_many_to_one_head_reads_the_last_state():
    torch.manual_seed(0)
    many = charlstm.CharLSTM(outputs=3, hidden=8)
    one = charlstm.CharLSTM(outputs=3, hidden=8, many_to_one=True)
    one.load_state_dict(many.state_dict())
    x = torch.randint(0, charlstm.VOCAB, (2, 10))
    assert one(x)[0].shape == (2, 3)
    torch.testing.assert_close(one(x)[0], many(x)[0][:, -1])


# -- forecast ------------------------------------------------------------------


def test_forecast_quick_run(tmp_path):
    results = quick_run("forecast", tmp_path)
    digits = results["digits"]
    assert_loss_falls(tmp_path / "digits")
    assert (tmp_path / digits["picture"]).is_file()
    errors = digits["held_out_rmse"]
    assert errors["ConvLSTM"] < errors["persistence"] and digits["beats_persistence"]


def test_convlstm_cell_with_1x1_kernel_is_an_lstm_cell():
    torch.manual_seed(0)
    cell = forecast.ConvLSTMCell(3, 5, kernel=1)
    lstm = nn.LSTMCell(3, 5)
    weight = cell.gates.weight[:, :, 0, 0]  # (4 * hidden, in + hidden), gates i, f, g, o as in torch
    with torch.no_grad():
        lstm.weight_ih.copy_(weight[:, :3])
        lstm.weight_hh.copy_(weight[:, 3:])
        lstm.bias_ih.copy_(cell.gates.bias)
        lstm.bias_hh.zero_()
    x, h, c = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)
    h_conv, c_conv = cell(x[:, :, None, None], (h[:, :, None, None], c[:, :, None, None]))
    h_ref, c_ref = lstm(x, (h, c))
    torch.testing.assert_close(h_conv[:, :, 0, 0], h_ref)
    torch.testing.assert_close(c_conv[:, :, 0, 0], c_ref)


def test_untrained_forecaster_is_persistence():
    frames = torch.rand(2, 3, 2, 8, 8)
    torch.testing.assert_close(forecast.ConvLSTMForecaster(2, (4,))(frames), frames[:, -1])


def test_bouncing_digits_stay_whole_inside_the_frame():
    digit = np.ones((1, 4, 3), dtype=np.float32)
    frames = forecast.bouncing(digit, 20, 30, 10, np.random.default_rng(0))
    assert np.all(frames.sum(axis=(2, 3, 4)) == 12)  # never clipped by a wall
    moved = np.abs(np.diff(frames, axis=1)).sum(axis=(2, 3, 4))
    assert np.all(moved > 0)  # speeds are never zero


def test_radar_names_the_install_commands_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("GOGAME_STARS_DIR", str(tmp_path))
    with pytest.raises(DemoDataMissing) as caught:
        forecast.radar(0)
    assert "apt-get download r-cran-stars" in caught.value.install
    assert f"dpkg-deb -x r-cran-stars_*.deb {tmp_path}" in caught.value.install


# -- optimizers ----------------------------------------------------------------


def test_optimizers_quick_run(tmp_path):
    results = quick_run("optimizers", tmp_path)
    final = results["final_loss_above_minimum"]
    assert set(final) == {"rosenbrock", "beale", "saddle", "quadratic", "diabetes"}
    for surface, by_optimizer in final.items():
        assert set(by_optimizer) == set(optimizers.OPTIMIZERS)
        assert all(math.isfinite(v) and v >= -1e-9 for v in by_optimizer.values()), surface
    assert_loss_falls(tmp_path / "paths" / "quadratic-Adam")
    assert "| rosenbrock | lr 0.001: " in (tmp_path / results["table"]).read_text()
    assert min(results["diabetes_held_out_mse_half"].values()) < results["diabetes_held_out_baseline_predict_mean"]


def test_surface_minima_are_where_the_table_says():
    shown, _ = optimizers.surfaces(0)
    argmins = {"rosenbrock": (1.0, 1.0), "beale": (3.0, 0.5), "saddle": (0.0, 1.0), "quadratic": (0.0, 0.0)}
    for surface in shown:
        if surface.name in argmins:
            xy = torch.tensor(argmins[surface.name], dtype=torch.float64, requires_grad=True)
            value = surface.height(xy[0], xy[1])
            (grad,) = torch.autograd.grad(value, xy)
            assert float(value.detach()) == pytest.approx(surface.minimum, abs=1e-12), surface.name
            assert grad.abs().max() < 1e-9, surface.name
    diabetes = shown[-1]
    x, y = (t.numpy() for t in diabetes.train_data.tensors)
    slope, intercept = np.polyfit(x, y, 1)
    assert diabetes.height(slope, intercept) == pytest.approx(diabetes.minimum)
    assert diabetes.height(slope, intercept) == pytest.approx(0.5 * np.mean((slope * x + intercept - y) ** 2))


def test_recorded_path_is_gradient_descent(tmp_path):
    surface = optimizers.surfaces(0)[0][3]  # the quadratic
    demo = DemoRun(name="optimizers", out=tmp_path, progress=False)
    path, final = optimizers.train_path(demo, surface, "SGD", 0.1, 5, "sgd", log_every=1)
    expected = [np.array(surface.start)]
    for _ in range(5):
        xy = torch.tensor(expected[-1], requires_grad=True)
        (grad,) = torch.autograd.grad(surface.height(xy[0], xy[1]), xy)
        expected.append(expected[-1] - 0.1 * grad.numpy())
    np.testing.assert_allclose(path, np.array(expected), rtol=1e-6)
    assert final == pytest.approx(surface.height(*expected[-1]))
