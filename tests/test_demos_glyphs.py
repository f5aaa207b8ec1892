"""Tests for the glyph demos (fonts, pix2pix, handwriting) and their shared font code."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from training.cli import main
from training.demos import glyphs
from training.demos.handwriting import Mixture, mixture_log_likelihood
from training.demos.pix2pix import Pix2Pix, pix2pix_loss
from training.metrics import read_metrics
from training.trainer import Trainer, TrainConfig


@pytest.fixture(scope="module")
def quick_fonts() -> None:
    """The font packages of the glyph demos' quick runs (.ci/run installs them): a missing one fails the test
    with its name, since the quick runs' figures depend on the faces they find."""
    paths = [f.path for f in glyphs.installed_faces()]
    missing = [package for package, folder in zip(glyphs.QUICK_PACKAGES, glyphs.QUICK_FOLDERS)
               if not any(folder in path for path in paths)]
    if missing:
        pytest.fail(f"the glyph demos' quick runs need the fonts of {', '.join(missing)}: "
                    f"apt-get install {' '.join(missing)} (.ci/run installs them)")


@pytest.fixture(scope="module")
def dejavu_sans(quick_fonts) -> glyphs.FontFace:
    return next(f for f in glyphs.installed_faces() if f.path.endswith("/DejaVuSans.ttf"))


# -- glyphs.py ---------------------------------------------------------------


def test_a_face_renders_36_distinct_centred_glyphs_inside_the_margin(dejavu_sans):
    sheet = glyphs.render_face(dejavu_sans, size=32, margin=2)
    assert sheet.shape == (36, 32, 32) and sheet.dtype == np.float32
    assert 0.0 <= sheet.min() and sheet.max() <= 1.0
    assert (sheet.reshape(36, -1).max(1) > 0.9).all()  # every glyph has ink
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert sheet[:, border].max() < 0.05
    assert np.abs(sheet[0] - sheet[1]).mean() > 0.05  # A is not B
    rows = np.nonzero(sheet[glyphs.CHARS.index("I")].max(1) > 0.5)[0]
    assert abs((rows.min() + rows.max()) / 2 - 15.5) <= 1.0  # centred vertically
    assert glyphs.render_face(replace(dejavu_sans, path="/nonexistent.ttf")) is None


def test_distinct_faces_drops_identical_and_near_identical_faces():
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 36, 8, 8)).astype(np.float32)
    sheets = np.stack([a, b, a, a + 0.01, b])
    assert glyphs.distinct_faces(sheets).tolist() == [0, 1]


def test_load_faces_caches_its_render(quick_fonts, tmp_path):
    first = glyphs.load_faces(quick=True, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("glyphs-quick-32px-*.npz"))) == 1
    again = glyphs.load_faces(quick=True, cache_dir=tmp_path)
    assert 8 <= len(first) <= glyphs.QUICK_MAX_FACES and first.faces == again.faces
    np.testing.assert_allclose(first.sheets, again.sheets, atol=1 / 255)
    train, held = glyphs.split_faces(len(first), 0.25, seed=0)
    assert not set(train) & set(held) and len(train) + len(held) == len(first)


def test_outlines_become_closed_pen_strokes(dejavu_sans):
    outlines = glyphs.glyph_outlines(dejavu_sans, "OI", step=0.05)
    (o_contours, o_advance), (i_contours, _) = outlines
    assert len(o_contours) == 2 and len(i_contours) == 1  # the O's outer and inner ring; the I's box
    assert 0.5 < o_advance < 1.5  # advance in cap heights
    offsets = glyphs.pen_offsets(outlines)
    assert offsets.shape[1] == 3 and offsets[:, 2].sum() == 3  # one pen lift per contour
    steps = np.hypot(offsets[offsets[:, 2] == 0, 0], offsets[offsets[:, 2] == 0, 1])
    assert steps.max() < 0.08  # resampled at about the pen step
    lines = glyphs.stroke_lines(offsets)
    assert len(lines) == 3
    for line in lines:
        np.testing.assert_allclose(line[0], line[-1], atol=1e-5)  # every contour closes
    o_top = max(line[:, 1].max() for line in lines[:2])
    assert o_top == pytest.approx(1.0, abs=0.05)  # the O reaches about cap height (units: the H's height)


# -- handwriting's mixture density --------------------------------------------


def test_mixture_log_likelihood_matches_scipy():
    weights = np.array([0.2, 0.5, 0.3])
    means = np.array([[0.0, 0.0], [1.0, -2.0], [-0.5, 0.7]])
    stds = np.array([[1.0, 0.5], [0.3, 2.0], [1.5, 1.2]])
    corrs = np.array([0.0, 0.6, -0.8])
    p_up = 0.25
    mix = Mixture(torch.tensor(np.log(weights))[None, None], torch.tensor(means)[None, None],
                  torch.tensor(np.log(stds))[None, None], torch.tensor(corrs)[None, None],
                  torch.tensor([[np.log(p_up / (1 - p_up))]]))
    for point in ([0.3, -0.4, 1.0], [1.2, -1.0, 0.0], [-2.0, 3.0, 0.0]):
        density = sum(w * multivariate_normal(m, [[s[0] ** 2, r * s[0] * s[1]], [r * s[0] * s[1], s[1] ** 2]]).pdf(
            point[:2]) for w, m, s, r in zip(weights, means, stds, corrs))
        expected = np.log(density) + np.log(p_up if point[2] else 1 - p_up)
        got = mixture_log_likelihood(mix, torch.tensor([[point]], dtype=torch.float64))
        assert got.item() == pytest.approx(expected, rel=1e-9)


# -- pix2pix's two players ----------------------------------------------------


def gan_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g)


def test_each_player_gets_only_its_own_loss_gradient():
    torch.manual_seed(0)
    model = Pix2Pix(width=16)
    x, y = gan_batch()
    loss, _ = pix2pix_loss(model, (x, y))
    combined = torch.autograd.grad(loss, list(model.parameters()))
    # the players' own losses, written out plainly
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    fake = model.generator(x)
    real_logits, fake_logits = model.discriminator(x, y), model.discriminator(x, fake.detach())
    d_loss = 0.5 * (bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits)))
    fooled = model.discriminator(x, fake)
    g_loss = model.l1_weight * (fake - y).abs().mean() + bce(fooled, torch.ones_like(fooled))
    d_params, g_params = list(model.discriminator.parameters()), list(model.generator.parameters())
    own = torch.autograd.grad(g_loss, g_params, retain_graph=True) + torch.autograd.grad(d_loss, d_params)
    by_param = dict(zip(map(id, g_params + d_params), own))
    for param, grad in zip(model.parameters(), combined):
        torch.testing.assert_close(grad, by_param[id(param)])
        assert grad.abs().sum() > 0


def test_one_trainer_step_moves_both_players(tmp_path):
    torch.manual_seed(0)
    model = Pix2Pix(width=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = gan_batch()
    config = TrainConfig(out_dir=str(tmp_path), steps=1, batch_size=4, optimizer="adam", lr=1e-3,
                         device="cpu", progress=False)
    Trainer(model, pix2pix_loss, torch.utils.data.TensorDataset(x, y), config=config).fit()
    for player in ("generator", "discriminator"):
        moved = [k for k, v in model.state_dict().items() if k.startswith(player) and not torch.equal(v, before[k])]
        assert len(moved) == len([k for k in before if k.startswith(player)]), player


# -- the quick demos through the CLI -------------------------------------------


def run_quick(name: str, out) -> dict:
    assert main(["demo", name, "--quick", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    for picture in results["pictures"].values():
        assert (out / picture).stat().st_size > 10_000, picture
    return results


def assert_loss_falls(run_dir) -> None:
    losses = [row["loss"] for row in read_metrics(run_dir) if row["split"] == "train"]
    assert len(losses) >= 3 and losses[-1] < losses[0], run_dir


def test_fonts_quick_reconstructs_held_out_fonts_better_than_the_mean_face(quick_fonts, tmp_path):
    results = run_quick("fonts", tmp_path)
    assert_loss_falls(tmp_path / "train")
    assert results["heldout_faces"] >= 2
    assert results["heldout_mse"] < 0.95 * results["baseline_mean_face_mse"]


def test_pix2pix_quick_trains_both_models_on_both_tasks(quick_fonts, tmp_path):
    results = run_quick("pix2pix", tmp_path)
    for task in ("sketch", "glyph"):
        for kind in ("l1", "pix2pix"):
            assert_loss_falls(tmp_path / f"{task}-{kind}")
        # The L1-only U-Net minimises the held-out measure itself, so even a quick run beats the mean picture; the
        # GAN trades L1 for crisper pictures, and how much after a few steps is no robust claim.
        assert results[f"{task}_heldout_l1_l1"] < results[f"{task}_heldout_l1_mean_picture"]


def test_handwriting_quick_beats_a_single_gaussian(quick_fonts, tmp_path):
    results = run_quick("handwriting", tmp_path)
    assert_loss_falls(tmp_path / "train")
    assert results["heldout_nll_per_point"] < results["baseline_gaussian_nll_per_point"] - 1.0
