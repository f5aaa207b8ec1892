"""ConvLSTM nowcasting: predict the next frame of an image sequence from the frames before it.

A ConvLSTM is an LSTM whose gates are convolutions, so its state is an image
and motion is learnt locally. The forecaster reads the input frames and
predicts the *change* from the last frame (so it starts as persistence and
has to learn to do better). Three sequences:

- moving digits (synthetic): handwritten digits bouncing in a frame; held-out
  sequences use digits never seen in training;
- NOAA monthly global winds 1982-1992 (u and v, m/s, a real field); held out:
  the last 24 months;
- hourly Stage IV radar rain of Hurricane Florence's landfall (23 frames, real);
  held out: the last 5 hours. Trained on small random crops, as 23 frames are few.

Every forecast is scored by RMSE against persistence (tomorrow = today) and a
per-pixel linear extrapolation (2 x_t - x_{t-1}), on held-out frames only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from training.demos.common import DemoRun, new_figure, require, save_figure
from training.demos.datasets import digits, holdout_split, mnist5k
from training.trainer import Trainer

TITLE = "ConvLSTM forecasts of moving digits, global winds and hurricane rain vs persistence"

WINDS_FILE = Path("/usr/share/ferret-vis/data/monthly_navy_winds.cdf")
STARS_DIR_DEFAULT = "/work/demo-install/stars"
STAGEIV_IN_STARS = "usr/lib/R/site-library/stars/nc/test_stageiv_xyt.nc"
STAGEIV_VARIABLE = "Total_precipitation_surface_1_Hour_Accumulation"
HIDDEN = (16,)  # ConvLSTM channels per layer: one layer keeps every full run within minutes on a CPU


# ----------------------------------------------------------------------------
# The model


class ConvLSTMCell(nn.Module):
    """An LSTM cell whose four gates are one convolution of [input, hidden state].

    Gate order (i, f, g, o) as in torch.nn.LSTM, so a 1x1 kernel on 1x1
    images is exactly an nn.LSTM cell.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """One time step: x (B, C, H, W) -> new (h, c), each (B, hidden, H, W)."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden, *x.shape[2:])
            state = (zeros, zeros)
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTMForecaster(nn.Module):
    """Stacked ConvLSTM cells read frames (B, T, C, H, W); predicts frame T+1 as frame T plus a change."""

    def __init__(self, channels: int, hidden: tuple[int, ...] = HIDDEN, kernel: int = 3) -> None:
        super().__init__()
        sizes = (channels, *hidden)
        self.cells = nn.ModuleList(ConvLSTMCell(a, b, kernel) for a, b in zip(sizes, sizes[1:]))
        self.change = nn.Conv2d(sum(hidden), channels, 1)
        nn.init.zeros_(self.change.weight)  # start as persistence
        nn.init.zeros_(self.change.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        states: list[Any] = [None] * len(self.cells)
        for t in range(frames.shape[1]):
            x = frames[:, t]
            for k, cell in enumerate(self.cells):
                states[k] = cell(x, states[k])
                x = states[k][0]
        return frames[:, -1] + self.change(torch.cat([h for h, _ in states], dim=1))


def forecast_loss(model: ConvLSTMForecaster, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
    frames, target = batch
    return F.mse_loss(model(frames), target), {}


# ----------------------------------------------------------------------------
# Sequences


@dataclass
class Sequences:
    """Training and held-out (frames (N, T, C, H, W), next frame (N, C, H, W)) pairs of one dataset.

    Values are in model units; ``unit`` names them and ``scale`` turns an error
    in model units into ``unit``. ``clip`` bounds any forecast (None: unbounded).
    """

    name: str
    title: str
    train: TensorDataset
    held_out: TensorDataset
    unit: str
    scale: float
    cmap: str
    clip: tuple[float | None, float | None]
    steps: int
    batch_size: int
    shown: str  # what the picture draws of each frame
    origin: str = "upper"  # imshow's: "lower" for maps whose first row is the southernmost


def windows(series: np.ndarray, length: int, targets: range) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, length, ...), next frame (N, ...)) for every target index in ``targets``."""
    inputs = np.stack([series[t - length:t] for t in targets])
    return inputs, np.stack([series[t] for t in targets])


def tensors(*arrays: np.ndarray) -> TensorDataset:
    return TensorDataset(*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays))


def bouncing(images: np.ndarray, count: int, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` sequences (count, frames, 1, size, size) of a random digit of ``images`` bouncing off the walls."""
    h, w = images.shape[1:]
    out = np.zeros((count, frames, 1, size, size), dtype=np.float32)
    for n in range(count):
        digit = images[rng.integers(len(images))]
        y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        vy, vx = rng.choice([-2, -1, 1, 2], size=2)
        for t in range(frames):
            out[n, t, 0, y:y + h, x:x + w] = np.maximum(out[n, t, 0, y:y + h, x:x + w], digit)
            if not 0 <= y + vy <= size - h:
                vy = -vy
            if not 0 <= x + vx <= size - w:
                vx = -vx
            y, x = y + vy, x + vx
    return out


def moving_digits(quick: bool, seed: int) -> Sequences:
    """Synthetic: sklearn's 8x8 digits in 16x16 frames (quick), or MNIST digits at 14x14 in 32x32 frames."""
    if quick:
        images, _ = digits()
        size, count, steps = 16, 600, 80
    else:
        images, _ = mnist5k()
        images = images.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
        size, count, steps = 32, 3000, 300
    train_idx, held_idx = holdout_split(len(images), 0.2, seed)
    rng = np.random.default_rng(seed)
    length = 4
    train = bouncing(images[train_idx], count, length + 1, size, rng)
    held = bouncing(images[held_idx], count // 5, length + 1, size, rng)
    return Sequences("digits", "Moving digits (synthetic), held-out digits", tensors(train[:, :-1], train[:, -1]),
                     tensors(held[:, :-1], held[:, -1]), "pixel intensity", 1.0, "gray", (0.0, 1.0), steps,
                     16, "ink (white)")


def winds() -> Sequences:
    """NOAA monthly winds (u, v), 4x4-averaged to 18x36; inputs the last 13 months; held out: 1991-1992.

    Thirteen months let the model see last year's change into the coming month.
    """
    from scipy.io import netcdf_file

    path = require(WINDS_FILE, "NOAA's monthly global winds (ferret-datasets)", "apt-get install -y ferret-datasets")
    with netcdf_file(path, mmap=False) as f:
        fields = []
        for name in ("UWND", "VWND"):
            var = f.variables[name]
            data = var.data.astype(np.float32)
            data[(data == var.missing_value) | ~np.isfinite(data)] = np.nan
            fields.append(data)
    series = np.stack(fields, axis=1)[:, :, :72]  # (132, 2, 72, 144): drop the last latitude row
    series = np.nanmean(series.reshape(132, 2, 18, 4, 36, 4), axis=(3, 5))
    held_from, length = 108, 13
    # one scale for u and v, no shift: both average about 0 m/s, and a zero keeps its meaning (calm)
    std = float(np.sqrt(np.nanmean(series[:held_from] ** 2)))
    series = np.nan_to_num(series / std)  # a missing value becomes calm
    x, y = windows(series, length, range(length, held_from))
    hx, hy = windows(series, length, range(held_from, len(series)))
    return Sequences("winds", "NOAA monthly winds 1982-1992, held out: last 24 months", tensors(x, y),
                     tensors(hx, hy), "m/s", std, "RdBu_r", (None, None), 250, 8,
                     "zonal wind u (red: from the west, blue: from the east), north up", "lower")


def stageiv_path() -> Path:
    """The Stage IV test file inside the extracted r-cran-stars package (``$GOGAME_STARS_DIR``)."""
    folder = Path(os.environ.get("GOGAME_STARS_DIR", STARS_DIR_DEFAULT))
    return require(folder / STAGEIV_IN_STARS, "the Stage IV radar rain of Hurricane Florence (r-cran-stars)",
                   f"apt-get download r-cran-stars && dpkg-deb -x r-cran-stars_*.deb {folder}"
                   "  (or set GOGAME_STARS_DIR to the folder it was extracted to)")


def radar(seed: int) -> Sequences:
    """Hourly rain in log(1 + mm/h), 23 frames; inputs 4 hours; trained on 24x24 crops; held out: last 5 hours."""
    from scipy.io import netcdf_file

    with netcdf_file(stageiv_path(), mmap=False) as f:
        rain = f.variables[STAGEIV_VARIABLE].data.astype(np.float32)
    series = np.log1p(np.nan_to_num(np.maximum(rain, 0.0)))[:, None]  # (23, 1, 118, 87)
    held_from, length, crop, crops = 18, 4, 24, 1500
    x, y = windows(series, length, range(length, held_from))
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(x), crops)
    top = rng.integers(0, series.shape[2] - crop + 1, crops)
    left = rng.integers(0, series.shape[3] - crop + 1, crops)
    cx = np.stack([x[k, :, :, t:t + crop, s:s + crop] for k, t, s in zip(which, top, left)])
    cy = np.stack([y[k, :, t:t + crop, s:s + crop] for k, t, s in zip(which, top, left)])
    hx, hy = windows(series, length, range(held_from, len(series)))
    return Sequences("rain", "Hurricane Florence radar rain (Stage IV), held out: last 5 hours", tensors(cx, cy),
                     tensors(hx, hy), "log(1 + mm/h)", 1.0, "Blues", (0.0, None), 250, 16,
                     "rain (darker blue: heavier), north up", "lower")


# ----------------------------------------------------------------------------
# Training, baselines, pictures


def bound(frames: torch.Tensor, clip: tuple[float | None, float | None]) -> torch.Tensor:
    """``frames`` clamped to ``clip`` ((None, None): unchanged)."""
    return frames if clip == (None, None) else frames.clamp(*clip)


def baselines(frames: torch.Tensor, clip: tuple[float | None, float | None]) -> dict[str, torch.Tensor]:
    """Persistence (the last frame) and per-pixel linear extrapolation (2 x_t - x_{t-1})."""
    return {"persistence": frames[:, -1], "linear extrapolation": bound(2 * frames[:, -1] - frames[:, -2], clip)}


def rmse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    return float(((prediction - target) ** 2).mean().sqrt())


def train_forecaster(demo: DemoRun, seq: Sequences) -> tuple[ConvLSTMForecaster, dict[str, Any]]:
    frames, target = seq.train.tensors
    torch.manual_seed(demo.seed)
    model = ConvLSTMForecaster(frames.shape[2], HIDDEN)
    config = demo.train_config(seq.name, steps=seq.steps, batch_size=seq.batch_size, optimizer="adam", lr=2e-3,
                               schedule="cosine", min_lr=1e-4, grad_clip=1.0, val_every=max(seq.steps // 5, 1),
                               log_every=max(seq.steps // 40, 1), ckpt_every=seq.steps)
    Trainer(model, forecast_loss, seq.train, seq.held_out, config=config,
            extra_meta={"dataset": seq.name, "hidden": list(HIDDEN)}).fit()
    model.eval()
    held_frames, held_target = seq.held_out.tensors
    with torch.no_grad():
        predictions = {"ConvLSTM": bound(model(held_frames), seq.clip), **baselines(held_frames, seq.clip)}
    errors = {name: rmse(p, held_target) * seq.scale for name, p in predictions.items()}
    figures = {"title": seq.title, "unit": seq.unit, "train_sequences": len(seq.train),
               "held_out_sequences": len(seq.held_out), "input_frames": frames.shape[1],
               "frame_shape": list(held_target.shape[1:]), "held_out_rmse": errors,
               "skill_vs_persistence": 1.0 - errors["ConvLSTM"] / errors["persistence"],
               "beats_persistence": errors["ConvLSTM"] < errors["persistence"],
               "parameters": sum(p.numel() for p in model.parameters())}
    figures["picture"] = plot_forecasts(demo, seq, held_frames, held_target, predictions, errors)
    return model, figures


def plot_forecasts(demo: DemoRun, seq: Sequences, frames: torch.Tensor, target: torch.Tensor,
                   predictions: dict[str, torch.Tensor], errors: dict[str, float]) -> str:
    """Columns: a few held-out cases; rows: last inputs, truth, each forecast (channel 0)."""
    cases = np.linspace(0, len(target) - 1, min(4, len(target))).round().astype(int)
    rows = [("input t-1", frames[:, -2]), ("input t (last seen)", frames[:, -1]), ("truth t+1", target)]
    rows += [(f"{name}\nRMSE {errors[name]:.3g}", p) for name, p in predictions.items()]
    stack = torch.stack([r[1][cases, 0] for r in rows]).numpy()
    if seq.clip[0] is None:  # a signed field: symmetric colours around zero
        vmax = float(np.abs(stack).max())
        vmin = -vmax
    else:
        vmin, vmax = float(stack.min()), float(stack.max())
    height, width = stack.shape[2:]
    cell = 1.9
    fig = new_figure(1.3 + cell * len(cases) * max(width / height, 0.8), 0.8 + cell * len(rows))
    axes = fig.subplots(len(rows), len(cases), squeeze=False)
    for r, (label, _) in enumerate(rows):
        for c, case in enumerate(cases):
            ax = axes[r, c]
            ax.imshow(stack[r, c], cmap=seq.cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                      origin=seq.origin)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"held-out case {case}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"{seq.title}\nheld-out RMSE in {seq.unit}: ConvLSTM {errors['ConvLSTM']:.3g}, "
                 f"persistence {errors['persistence']:.3g}, linear {errors['linear extrapolation']:.3g}\n"
                 f"shown: {seq.shown}; colour scale from {vmin * seq.scale:.3g} to {vmax * seq.scale:.3g} "
                 f"{seq.unit}", fontsize=9)
    name = f"forecast-{seq.name}.png"
    save_figure(fig, demo.path(name), dpi=90)
    return name


def run(demo: DemoRun) -> dict[str, object]:
    datasets = [moving_digits(demo.quick, demo.seed)]
    if not demo.quick:  # the real fields are Debian packages, not zero-install
        datasets += [winds(), radar(demo.seed)]
    return {seq.name: train_forecaster(demo, seq)[1] for seq in datasets}
