"""Demo ``handwriting``: an LSTM predicts where the pen goes next (Graves 2013, mixture-density output).

The pen trajectories come from real fonts (:func:`training.demos.glyphs.glyph_outlines`):
each face writes its alphabet A-Z 0-9 on one line, every contour traced at an
even pen step, as rows ``(dx, dy, pen_up)`` in units of that step. An LSTM reads
the trajectory point by point and outputs, for the next point, a mixture of
bivariate Gaussians over ``(dx, dy)`` and a Bernoulli over ``pen_up``. It is
trained to minimise the negative log-likelihood per point, measured on fonts it
never saw against a single Gaussian plus Bernoulli fitted to the training
offsets. Samples: the LSTM is primed with the strokes of the first glyphs of a
held-out font and then writes on by itself, one sampled point at a time.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.stats import multivariate_normal
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from training.demos.common import DemoRun, new_figure, save_figure
from training.demos.glyphs import (CHARS, FaceSet, FontFace, glyph_outlines, load_faces, pen_offsets, split_faces,
                                   stroke_lines)
from training.trainer import Trainer

TITLE = "Handwriting: an LSTM with a mixture-density output predicts the pen's next move"
PEN_STEP = 0.06  # cap heights between resampled outline points; offsets are in these units


class Mixture(NamedTuple):
    """The predicted distribution of the next point; leading dims (B, T), M components."""

    log_weight: torch.Tensor  # (B, T, M), log-softmaxed
    mean: torch.Tensor  # (B, T, M, 2)
    log_std: torch.Tensor  # (B, T, M, 2)
    corr: torch.Tensor  # (B, T, M), in (-1, 1)
    pen_logit: torch.Tensor  # (B, T): logit of pen_up


def mixture_log_likelihood(mix: Mixture, target: torch.Tensor) -> torch.Tensor:
    """log p(target) (B, T) of points ``target`` (B, T, 3) = (dx, dy, pen_up) under ``mix``.

    The bivariate normal density of component m with means mu, deviations s
    and correlation rho is exp(-z / (2 (1 - rho^2))) / (2 pi s_x s_y sqrt(1 - rho^2)),
    z = u_x^2 + u_y^2 - 2 rho u_x u_y, u = (x - mu) / s (Graves 2013, eqs. 24-25).
    """
    u = (target[..., None, :2] - mix.mean) / mix.log_std.exp()  # (B, T, M, 2)
    one_minus_rho2 = 1.0 - mix.corr ** 2
    z = u[..., 0] ** 2 + u[..., 1] ** 2 - 2.0 * mix.corr * u[..., 0] * u[..., 1]
    log_normal = (-z / (2.0 * one_minus_rho2) - math.log(2.0 * math.pi)
                  - mix.log_std.sum(-1) - 0.5 * torch.log(one_minus_rho2))
    log_offset = torch.logsumexp(mix.log_weight + log_normal, dim=-1)
    log_pen = -F.binary_cross_entropy_with_logits(mix.pen_logit, target[..., 2], reduction="none")
    return log_offset + log_pen


class HandwritingLSTM(nn.Module):
    """Points (B, T, 3) -> the :class:`Mixture` of each next point, and the LSTM state."""

    def __init__(self, hidden: int = 256, components: int = 20, layers: int = 1) -> None:
        super().__init__()
        self.components = components
        self.lstm = nn.LSTM(3, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 6 * components + 1)

    def forward(self, points: torch.Tensor, state=None) -> tuple[Mixture, tuple[torch.Tensor, torch.Tensor]]:
        h, state = self.lstm(points, state)
        out = self.head(h)  # (B, T, 6M + 1)
        m = self.components
        logits, mean, log_std, corr = out[..., :m], out[..., m:3 * m], out[..., 3 * m:5 * m], out[..., 5 * m:6 * m]
        mix = Mixture(F.log_softmax(logits, -1), mean.unflatten(-1, (m, 2)),
                      log_std.unflatten(-1, (m, 2)).clamp(-5.0, 5.0), 0.99 * torch.tanh(corr), out[..., -1])
        return mix, state


def next_point_nll(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean negative log-likelihood per predicted point of windows (B, T + 1, 3)."""
    (windows,) = batch
    mix, _ = model(windows[:, :-1])
    nll = -mixture_log_likelihood(mix, windows[:, 1:]).mean()
    return nll, {"nll": nll.item()}


@torch.no_grad()
def sample(model: HandwritingLSTM, prime: np.ndarray, steps: int, bias: float = 0.0,
           seed: int = 0) -> np.ndarray:
    """``steps`` points (steps, 3) written after reading ``prime`` (n, 3).

    ``bias`` (Graves' sampling bias) shrinks every deviation by exp(-bias) and
    sharpens the mixture weights: larger is neater, 0 samples the model as is.
    """
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    mix, state = model(torch.from_numpy(prime)[None])
    points = []
    for _ in range(steps):
        k = torch.multinomial(F.softmax(mix.log_weight[0, -1] * (1.0 + bias), -1), 1, generator=generator).item()
        std = mix.log_std[0, -1, k].exp() * math.exp(-bias)
        rho = mix.corr[0, -1, k].item()
        e = torch.randn(2, generator=generator)
        dx = mix.mean[0, -1, k, 0] + std[0] * e[0]
        dy = mix.mean[0, -1, k, 1] + std[1] * (rho * e[0] + math.sqrt(1.0 - rho ** 2) * e[1])
        up = float(torch.rand(1, generator=generator).item() < torch.sigmoid(mix.pen_logit[0, -1]).item())
        point = torch.tensor([[[dx.item(), dy.item(), up]]])
        points.append(point[0, 0].numpy())
        mix, state = model(point, state)
    return np.asarray(points, dtype=np.float32)


def face_trajectory(face: FontFace, chars: str = CHARS) -> np.ndarray | None:
    """``chars`` of ``face`` written on one line as pen offsets (n, 3) in pen steps; None if unreadable."""
    outlines = glyph_outlines(face, chars, step=PEN_STEP)
    if outlines is None:
        return None
    offsets = pen_offsets(outlines)
    offsets[:, :2] /= PEN_STEP
    return offsets


def font_trajectories(faces: FaceSet) -> list[np.ndarray]:
    """Each face's alphabet A-Z 0-9 as one trajectory; faces fontTools cannot read are left out."""
    return [line for line in map(face_trajectory, faces.faces) if line is not None]


def windows(lines: list[np.ndarray], length: int) -> np.ndarray:
    """Non-overlapping windows (N, length + 1, 3) cut from each line (the last point shared with the next)."""
    cuts = [line[s:s + length + 1] for line in lines for s in range(0, len(line) - length, length)]
    return np.stack(cuts).astype(np.float32)


def gaussian_baseline_nll(train: np.ndarray, test: np.ndarray) -> float:
    """NLL per point of ``test`` (N, 3) under one Gaussian over (dx, dy) and one Bernoulli, fitted to ``train``."""
    gauss = multivariate_normal(train[:, :2].mean(0), np.cov(train[:, :2], rowvar=False))
    p_up = train[:, 2].mean()
    log_pen = np.where(test[:, 2] > 0.5, np.log(p_up), np.log1p(-p_up))
    return float(-(gauss.logpdf(test[:, :2]) + log_pen).mean())


def draw_samples(rows: list[tuple[str, np.ndarray, np.ndarray]], path, title: str):
    """One panel per font: the primed strokes in black, the LSTM's continuation in colour."""
    fig = new_figure(12, 1.5 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (name, prime, written) in zip(axes, rows):
        for line in stroke_lines(prime):
            ax.plot(line[:, 0], line[:, 1], color="black", lw=1.2)
        end = prime[:, :2].sum(0)
        for line in stroke_lines(np.vstack([[[0.0, 0.0, 1.0]], written]), start=tuple(end)):
            ax.plot(line[:, 0], line[:, 1], color="tab:red", lw=1.2)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}: primed with its first glyphs (black), then written by the LSTM (red)",
                     fontsize=8, loc="left")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=90)


def run(demo: DemoRun) -> dict[str, object]:
    faces = load_faces(quick=demo.quick)
    train_rows, held_rows = split_faces(len(faces), 0.25 if demo.quick else 0.15, demo.seed)
    if not demo.quick:  # fontTools reads about ten faces a second: a few hundred are plenty
        train_rows, held_rows = train_rows[:300], held_rows[:50]
    train_lines = font_trajectories(faces.subset(train_rows))
    held = faces.subset(held_rows)
    held_lines = font_trajectories(held)
    length = 100
    train_windows, held_windows = windows(train_lines, length), windows(held_lines, length)

    torch.manual_seed(demo.seed)
    model = HandwritingLSTM(hidden=64 if demo.quick else 256, components=8 if demo.quick else 20)
    steps = 80 if demo.quick else 1500
    config = demo.train_config(steps=steps, batch_size=16 if demo.quick else 32, optimizer="adam", lr=3e-3,
                               schedule="cosine", warmup_steps=steps // 20, grad_clip=1.0,
                               val_every=max(steps // 6, 1), log_every=max(steps // 25, 1),
                               val_metric="nll", ckpt_every=steps)
    trainer = Trainer(model, next_point_nll, TensorDataset(torch.from_numpy(train_windows)),
                      TensorDataset(torch.from_numpy(held_windows)), config=config,
                      extra_meta={"hidden": model.lstm.hidden_size, "components": model.components})
    trainer.fit()
    held_nll = trainer.evaluate()["nll"]
    baseline_nll = gaussian_baseline_nll(train_windows[:, 1:].reshape(-1, 3), held_windows[:, 1:].reshape(-1, 3))

    rows = []
    for k, face in enumerate(held.faces[:4]):
        prime = face_trajectory(face, "AB")
        if prime is not None:
            rows.append((face.name, prime, sample(model, prime, 60 if demo.quick else 400, seed=demo.seed + k)))
    picture = draw_samples(rows, demo.path("handwriting-samples.png"),
                           f"Pen trajectories sampled from the LSTM on held-out fonts (held-out NLL per point "
                           f"{held_nll:.2f}; single Gaussian {baseline_nll:.2f})")
    return {
        "train_fonts": len(train_lines), "heldout_fonts": len(held_lines),
        "train_windows": len(train_windows), "heldout_windows": len(held_windows), "window_points": length,
        "heldout_nll_per_point": held_nll, "baseline_gaussian_nll_per_point": baseline_nll,
        "nll_units": f"offsets in pen steps of {PEN_STEP} cap heights",
        "parameters": sum(p.numel() for p in model.parameters()),
        "pictures": {"samples": picture.name},
    }
