"""Tests of the demos convolution, classifier and gradients: their pieces, and their --quick runs via the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training import cli
from training.demos import classifier, convolution, gradients
from training.metrics import read_metrics


def run_quick(name: str, out: Path) -> dict:
    assert cli.main(["demo", name, "--quick", "--out", str(out), "--no-progress"]) == 0
    return json.loads((out / "metrics.json").read_text())


def train_losses(run_dir: Path) -> list[float]:
    return [float(r["loss"]) for r in read_metrics(run_dir) if r["split"] == "train"]


def assert_loss_falls(run_dir: Path, factor: float = 0.7) -> None:
    losses = train_losses(run_dir)
    assert len(losses) >= 3, run_dir
    assert losses[-1] < factor * losses[0], (run_dir, losses[0], losses[-1])


# -- convolution ----------------------------------------------------------------


def test_convolution_by_hand_is_the_sum_of_window_times_kernel():
    rng = np.random.default_rng(0)
    image, kernel = rng.normal(size=(6, 7)), rng.normal(size=(3, 2))
    expected = np.array([[np.sum(image[i:i + 3, j:j + 2] * kernel) for j in range(6)] for i in range(4)])
    np.testing.assert_allclose(convolution.convolve_by_hand(image, kernel), expected, rtol=1e-12)


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (2, 4)])
def test_convolution_by_hand_equals_conv2d(shape):
    rng = np.random.default_rng(1)
    image = rng.random((40, 33), dtype=np.float32)
    kernel = rng.normal(size=shape).astype(np.float32)
    by_hand = convolution.convolve_by_hand(image, kernel)
    assert by_hand.shape == (40 - shape[0] + 1, 33 - shape[1] + 1)
    np.testing.assert_allclose(by_hand, convolution.convolve_with_torch(image, kernel), atol=1e-5)


def test_padded_kernels_keep_the_size_blur_keeps_flat_images_and_sobel_finds_a_step():
    step = np.zeros((10, 12), dtype=np.float32)
    step[:, 6:] = 1.0  # a vertical edge between columns 5 and 6
    sobel = convolution.kernel("Sobel (vertical edges)")
    edges = convolution.convolve_by_hand(convolution.pad_reflect(step, sobel.shape), sobel)
    assert edges.shape == step.shape
    assert set(np.flatnonzero(edges.any(axis=0))) == {5, 6}
    flat = np.full((9, 9), 0.3, dtype=np.float32)
    for name in ("box blur 5x5", "Gaussian blur 5x5", "sharpen"):
        k = convolution.kernel(name)
        np.testing.assert_allclose(convolution.convolve_by_hand(convolution.pad_reflect(flat, k.shape), k),
                                   flat, atol=1e-6)


def test_convolution_quick_run(tmp_path):
    results = run_quick("convolution", tmp_path)
    assert set(results["kernels"]) == set(convolution.KERNELS)
    for figures in results["kernels"].values():
        assert figures["max_abs_difference"] < 1e-5
        assert {"by_hand_ms", "conv2d_ms"} <= set(figures)  # timings: reported, not judged
    for picture in results["pictures"]:
        assert (tmp_path / picture).stat().st_size > 10_000


# -- classifier ------------------------------------------------------------------


def test_dense_equivalents_count_a_dense_layer_of_the_same_sizes():
    net = classifier.ConvNet(8, (16, 32))
    rows = classifier.dense_equivalents(net, 8)
    assert [r["conv_params"] for r in rows] == [1 * 16 * 9, 16 * 32 * 9]
    assert rows[0]["dense_params"] == 64 * (16 * 64) + 16 * 64  # 1x8x8 in, 16x8x8 out
    assert rows[1]["dense_params"] == (16 * 16) * (32 * 16) + 32 * 16  # 16x4x4 in, 32x4x4 out
    assert net.training


def test_confusion_matrix_counts_true_rows_predicted_columns():
    counts = classifier.confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_classifier_quick_run(tmp_path):
    results = run_quick("classifier", tmp_path)
    cnn, linear = results["cnn"], results["logistic_regression"]
    assert cnn["test_accuracy"] > 0.8 and results["chance_accuracy"] == 0.1
    assert cnn["test_accuracy"] > linear["test_accuracy"] > 0.5
    assert linear["parameters"] == 8 * 8 * 10 + 10
    assert results["dense_equivalent_parameters"] > 10 * cnn["parameters"]
    for run in ("cnn", "logistic"):
        assert_loss_falls(tmp_path / run)
    for picture in results["pictures"]:
        assert (tmp_path / picture).stat().st_size > 10_000


# -- gradients -------------------------------------------------------------------


def test_layer_gradient_norms_are_those_of_backward_and_leave_the_model_alone():
    torch.manual_seed(0)
    model = gradients.DeepMLP("relu_he_bn_residual", 16, 8, 4)
    x, y = torch.randn(32, 16), torch.randint(0, 10, (32,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms = gradients.layer_gradient_norms(model, (x, y))
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # batchnorm statistics untouched
    F.cross_entropy(model.train()(x), y).backward()
    np.testing.assert_allclose(norms, [float(layer.weight.grad.norm()) for layer in model.layers()], rtol=1e-5)
    assert len(norms) == 5


def test_gradients_quick_run(tmp_path):
    results = run_quick("gradients", tmp_path)

    def spread(variant: str) -> float:  # orders of magnitude between output and input layer
        return abs(math.log10(results["ratio_last_to_first_at_init"][variant]))

    assert spread("sigmoid") > 5
    for healthy in ("relu_he_bn", "relu_he_bn_residual"):
        assert spread(healthy) < 1.5
        assert spread("sigmoid") > spread(healthy) + 4
        assert results["test_accuracy"][healthy] > 0.8
        assert_loss_falls(tmp_path / healthy, factor=0.3)
    assert len(results["layer_gradient_norms_at_init"]["sigmoid"]) == results["depth"] + 1
    steps = results["steps"]
    probed = {round(f * steps) for f in gradients.QUICK_STAGES}
    assert set(results["ratio_last_to_first_by_step"]["sigmoid"]) == {"0", *map(str, probed)}
    assert max(r["step"] for r in read_metrics(tmp_path / "sigmoid")) == steps  # the stages add up to one run
    assert (tmp_path / "gradient_norms.png").stat().st_size > 10_000
