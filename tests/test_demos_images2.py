"""Tests of the demos autoencoder, vae and gaze: their pieces, and their --quick runs through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training import cli
from training.demos import autoencoder, gaze, vae
from training.metrics import read_metrics


def run_quick(name: str, out: Path) -> dict:
    assert cli.main(["demo", name, "--quick", "--out", str(out), "--no-progress"]) == 0
    return json.loads((out / "metrics.json").read_text())


def assert_loss_falls(run_dir: Path, factor: float) -> None:
    losses = [float(r["loss"]) for r in read_metrics(run_dir) if r["split"] == "train"]
    assert len(losses) >= 3, run_dir
    assert losses[-1] < factor * losses[0], (run_dir, losses[0], losses[-1])


def assert_pictures(out: Path, results: dict) -> None:
    assert results["pictures"]
    for name in results["pictures"]:
        assert (out / name).stat().st_size > 10_000, name


# -- autoencoder ------------------------------------------------------------------


def test_pca_keeps_the_top_variance_and_reconstructs_exactly_with_every_component():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 7.0
    full = autoencoder.PCA.fit(x, 6)
    np.testing.assert_allclose(full.decode(full.encode(x)), x, atol=1e-10)
    np.testing.assert_allclose(full.components @ full.components.T, np.eye(6), atol=1e-10)
    two = autoencoder.PCA.fit(x, 2)
    # the error left is the variance of the four dropped directions (the data's axes here)
    dropped = ((x - x.mean(0)) ** 2).mean(0)[2:].sum() / 6
    assert math.isclose(autoencoder.mse(two.decode(two.encode(x)), x), dropped, rel_tol=0.05)


def test_autoencoder_quick_run_beats_pca_on_held_out_digits(tmp_path):
    results = run_quick("autoencoder", tmp_path)
    assert_loss_falls(tmp_path / "autoencoder", 0.7)
    assert_pictures(tmp_path, results)
    assert results["autoencoder_test_mse"] < results["pca_test_mse"]


# -- vae ----------------------------------------------------------------------------


def test_gaussian_kl_matches_the_closed_form_by_hand_and_torch_distributions():
    mu = torch.tensor([[1.0, -2.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])
    # 0.5 * (mu^2 + var - 1 - log var) per dimension: 0.5 * 1 and 0.5 * (4 + 4 - 1 - log 4); N(0, 1) costs 0
    expected = torch.tensor([0.5 + 0.5 * (7.0 - math.log(4.0)), 0.0])
    torch.testing.assert_close(vae.gaussian_kl(mu, logvar), expected)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    torch.testing.assert_close(vae.gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))


def test_vae_quick_run_beats_independent_pixels_and_its_elbo_adds_up(tmp_path):
    results = run_quick("vae", tmp_path)
    assert_loss_falls(tmp_path / "vae", 0.8)
    assert_pictures(tmp_path, results)
    assert results["test_elbo_nats"] > results["baseline_independent_pixels_test_elbo_nats"] + 1.0
    assert results["test_kl_nats"] > 0.5  # the latent carries information
    assert math.isclose(results["test_elbo_nats"], -(results["test_recon_nats"] + results["test_kl_nats"]),
                        rel_tol=1e-6)


# -- gaze ---------------------------------------------------------------------------


def test_zero_flow_and_zero_brightness_is_exactly_the_identity():
    faces = torch.from_numpy(gaze.load_faces()[:8]).unsqueeze(1)
    noise = torch.rand(3, 1, gaze.SIDE, gaze.SIDE, generator=torch.Generator().manual_seed(0))
    for images in (faces, noise):
        zero_flow = torch.zeros(len(images), 2, gaze.SIDE, gaze.SIDE)
        out = gaze.apply_correction(images, zero_flow, torch.zeros_like(images))
        assert torch.equal(out, images)
    assert torch.equal(gaze.WarpCNN(8)(faces), faces)  # the untrained warp CNN starts at the identity


def test_a_flow_of_one_pixel_reads_the_neighbouring_pixel():
    images = torch.rand(2, 1, gaze.SIDE, gaze.SIDE, generator=torch.Generator().manual_seed(1))
    right = torch.zeros(2, 2, gaze.SIDE, gaze.SIDE)
    right[:, 0] = 1.0  # dx = +1: each pixel reads its right-hand neighbour
    torch.testing.assert_close(gaze.warp(images, right)[..., :-1], images[..., 1:], rtol=0, atol=1e-6)
    down = torch.zeros(2, 2, gaze.SIDE, gaze.SIDE)
    down[:, 1] = -1.0  # dy = -1: each pixel reads the one above it
    torch.testing.assert_close(gaze.warp(images, down)[..., 1:, :], images[..., :-1, :], rtol=0, atol=1e-6)


def test_synthetic_pairs_are_reproducible_and_undone_by_their_reversed_warp():
    faces = gaze.load_faces()[:10]
    source = gaze.WarpedFacePairs(faces, batch_size=6, batches_per_epoch=3, seed=4)
    first, again = list(source.batches(1)), list(source.batches(1))
    assert len(first) == 3
    for (x1, y1), (x2, y2) in zip(first, again):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(list(source.batches(1, start=2))[0][0], first[2][0])  # resuming skips exactly
    inputs, targets, displacement = gaze.fixed_pairs(faces, per_face=4, seed=0)
    assert inputs.shape == targets.shape == (40, 1, gaze.SIDE, gaze.SIDE)
    assert (displacement[:, 1].amin(dim=(1, 2)) < -0.4).all()  # every input's eyes were moved down
    undone = gaze.warp(inputs, -displacement)
    assert F.mse_loss(undone, targets) < 0.6 * F.mse_loss(inputs, targets)


def test_gaze_quick_run_beats_the_identity_and_says_its_pairs_are_synthetic(tmp_path):
    results = run_quick("gaze", tmp_path)
    assert_loss_falls(tmp_path / "warp_cnn", 0.8)
    assert_loss_falls(tmp_path / "pixel_cnn", 0.7)
    assert_pictures(tmp_path, results)
    assert "synthetic" in results["note"]
    assert results["warp_cnn_test_mse"] < 0.7 * results["identity_test_mse"]
    assert results["warp_cnn_test_mse"] < results["pixel_cnn_test_mse"]
