"""Six optimizers on five 2-parameter loss surfaces, their paths drawn over the contours.

Every path is a real training run of the project's Trainer: the "model" is a
module holding the two parameters (x, y), the loss function evaluates the
surface there and logs x and y, so ``metrics.csv`` (one row per step) is the
path. The surfaces: Rosenbrock's banana valley, Beale's function, a saddle
(f = x^2 + y^4/4 - y^2/2: a saddle at the origin, minima at y = +-1), an
ill-conditioned quadratic (condition number 50, rotated 30 degrees so that no
optimizer gets the axes for free) and a real one: least-squares regression of
scikit-learn's diabetes progression on body-mass index (slope and intercept,
both standardised, trained on mini-batches of 32, so that path is stochastic).

Fairness: each optimizer gets its own learning rate on each surface, the one of
:data:`LR_GRID` with the lowest mean training loss over the whole run (the area
under its loss curve: fast and steady beats a lucky last step; a diverged run
never wins). The chosen rates are returned as a table.
``--quick`` runs fewer steps with one fixed rate per optimizer (:data:`QUICK_LRS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from training.demos.common import DemoDataMissing, DemoRun, new_figure, save_figure
from training.metrics import read_metrics
from training.trainer import Trainer

TITLE = "SGD, momentum, Nesterov, Adagrad, RMSprop, Adam: paths over 2-parameter loss surfaces"

# name -> (TrainConfig.optimizer, momentum)
OPTIMIZERS: dict[str, tuple[str, float]] = {
    "SGD": ("sgd", 0.0),
    "momentum": ("sgd", 0.9),
    "Nesterov": ("nesterov", 0.9),
    "Adagrad": ("adagrad", 0.0),
    "RMSprop": ("rmsprop", 0.0),
    "Adam": ("adam", 0.0),
}
COLORS = dict(zip(OPTIMIZERS, ("tab:gray", "tab:blue", "tab:cyan", "tab:green", "tab:orange", "tab:red")))
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
# --quick skips the search: one rate per optimizer, safe on every surface
QUICK_LRS = {"SGD": 1e-3, "momentum": 1e-3, "Nesterov": 1e-3, "Adagrad": 0.1, "RMSprop": 1e-2, "Adam": 5e-2}
STEPS = 400
QUICK_STEPS = 60
DIABETES_BATCH = 32

Height = Callable[[Any, Any], Any]  # works on floats, numpy arrays and torch tensors alike


@dataclass
class Surface:
    """A loss over two parameters (x, y): where paths start and which window the contours show.

    ``height`` is the full loss; ``batch_loss`` (default: ``height``, ignoring
    the batch) is what one training step sees.
    """

    name: str
    title: str
    height: Height
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    minimum: float
    train_data: TensorDataset
    batch_size: int = 1
    batch_loss: Callable[[torch.Tensor, Any], torch.Tensor] | None = None

    def loss(self, xy: torch.Tensor, batch: Any) -> torch.Tensor:
        if self.batch_loss is None:
            return self.height(xy[0], xy[1])
        return self.batch_loss(xy, batch)


class Point(nn.Module):
    """The whole "model": two parameters."""

    def __init__(self, start: tuple[float, float]) -> None:
        super().__init__()
        self.xy = nn.Parameter(torch.tensor(start, dtype=torch.float64))


def rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def beale(x, y):
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2


def saddle(x, y):
    return x ** 2 + y ** 4 / 4 - y ** 2 / 2


def rotated_quadratic(x, y, condition: float = 50.0, degrees: float = 30.0):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    u, v = c * x + s * y, -s * x + c * y
    return 0.5 * (u ** 2 + v ** 2 / condition)


def _no_data() -> TensorDataset:
    return TensorDataset(torch.zeros(1))


def diabetes_surface(seed: int) -> tuple[Surface, TensorDataset]:
    """Standardised diabetes progression ~ slope * standardised BMI + intercept; (surface, held-out set)."""
    try:
        from sklearn.datasets import load_diabetes
    except ImportError as exc:
        raise DemoDataMissing("scikit-learn's bundled diabetes data", "pip install scikit-learn") from exc
    data = load_diabetes()
    bmi = data.data[:, data.feature_names.index("bmi")]
    order = np.random.default_rng(seed).permutation(len(bmi))
    train, test = order[: int(0.8 * len(bmi))], order[int(0.8 * len(bmi)):]
    mx, sx, my, sy = bmi[train].mean(), bmi[train].std(), data.target[train].mean(), data.target[train].std()
    x, y = (bmi - mx) / sx, (data.target - my) / sy
    xt, yt = x[train], y[train]
    # 0.5 * mean((w x + b - y)^2) expanded in the training moments, so the contours cost nothing
    mxx, mxy, mx1, my1, myy = (xt * xt).mean(), (xt * yt).mean(), xt.mean(), yt.mean(), (yt * yt).mean()

    def height(w, b):
        return 0.5 * (w * w * mxx + 2 * w * b * mx1 + b * b - 2 * w * mxy - 2 * b * my1 + myy)

    def batch_loss(wb: torch.Tensor, batch: Any) -> torch.Tensor:
        xb, yb = batch
        return 0.5 * ((wb[0] * xb + wb[1] - yb) ** 2).mean()

    w_best = (mxy - mx1 * my1) / (mxx - mx1 ** 2)
    b_best = my1 - w_best * mx1

    def as_dataset(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))

    surface = Surface("diabetes", "diabetes: progression ~ w * BMI + b (real data, batches of 32)",
                      height, (-1.5, 1.5), (-2.0, 2.0), (-2.0, 2.0), float(height(w_best, b_best)),
                      as_dataset(train), DIABETES_BATCH, batch_loss)
    return surface, as_dataset(test)


def surfaces(seed: int) -> tuple[list[Surface], TensorDataset]:
    """The five surfaces, and the diabetes held-out set."""
    diabetes, diabetes_test = diabetes_surface(seed)
    return [
        Surface("rosenbrock", "Rosenbrock: (1-x)^2 + 100 (y-x^2)^2", rosenbrock, (-1.5, 2.0),
                (-2.0, 2.0), (-1.0, 3.0), 0.0, _no_data()),
        Surface("beale", "Beale's function", beale, (0.7, 1.4), (-1.0, 4.0), (-1.5, 2.0), 0.0, _no_data()),
        Surface("saddle", "saddle: x^2 + y^4/4 - y^2/2 (start near the saddle)", saddle, (1.8, 1e-3),
                (-2.0, 2.0), (-1.8, 1.8), -0.25, _no_data()),
        Surface("quadratic", "ill-conditioned quadratic (condition 50, rotated 30 deg)", rotated_quadratic,
                (-4.0, 3.0), (-5.0, 5.0), (-5.0, 5.0), 0.0, _no_data()),
        diabetes,
    ], diabetes_test


def train_path(demo: DemoRun, surface: Surface, optimizer: str, lr: float, steps: int, run: str,
               log_every: int) -> tuple[np.ndarray, float]:
    """Train one path; return its positions (steps + 1, 2) (rows every ``log_every`` steps) and end loss."""
    name, momentum = OPTIMIZERS[optimizer]
    model = Point(surface.start)

    def loss_fn(model: Point, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = model.xy.detach().tolist()
        return surface.loss(model.xy, batch), {"x": x, "y": y}

    config = demo.train_config(run, steps=steps, batch_size=surface.batch_size, optimizer=name, lr=lr,
                               momentum=momentum, log_every=log_every, ckpt_every=steps, device="cpu",
                               progress=False)
    Trainer(model, loss_fn, surface.train_data, config=config).fit()
    rows = [r for r in read_metrics(demo.out / run) if r["split"] == "train"]
    end = model.xy.detach().numpy()
    path = np.array([[r["x"], r["y"]] for r in rows] + [end])
    with torch.no_grad():
        final = float(surface.height(model.xy[0], model.xy[1]))
    return path, final


def mean_loss(demo: DemoRun, run: str) -> float:
    """The mean training loss over all steps of ``run`` (inf if it diverged); its windows are equally long."""
    losses = [r["loss"] for r in read_metrics(demo.out / run) if r["split"] == "train"]
    value = float(np.mean(losses)) if losses else math.inf
    return value if math.isfinite(value) else math.inf


def tune_lr(demo: DemoRun, surface: Surface, optimizer: str, grid: tuple[float, ...], steps: int) -> float:
    """The rate of ``grid`` whose run has the lowest mean training loss."""
    scores = {}
    for lr in grid:
        run = f"lr-search/{surface.name}-{optimizer}-{lr:g}"
        train_path(demo, surface, optimizer, lr, steps, run, log_every=max(1, steps // 10))
        scores[lr] = mean_loss(demo, run)
    return min(grid, key=lambda lr: (scores[lr], -lr))  # ties: the larger rate


def plot_paths(demo: DemoRun, shown: list[Surface], paths: dict[str, dict[str, np.ndarray]],
               lrs: dict[str, dict[str, float]]) -> str:
    """One contour panel per surface with every optimizer's path; returns the file name."""
    ncols = 3
    nrows = math.ceil(len(shown) / ncols)
    fig = new_figure(5.2 * ncols, 4.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, surface in zip(axes.flat, shown):
        gx, gy = np.meshgrid(np.linspace(*surface.xlim, 300), np.linspace(*surface.ylim, 300))
        gap = surface.height(gx, gy) - surface.minimum
        levels = np.geomspace(max(gap.min(), 1e-3), gap.max(), 25)
        ax.contourf(gx, gy, gap, levels=levels, cmap="Greys_r", norm=_log_norm(levels), alpha=0.55)
        ax.contour(gx, gy, gap, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
        for opt, path in paths[surface.name].items():
            ax.plot(path[:, 0], path[:, 1], "-", color=COLORS[opt], lw=1.4,
                    label=f"{opt} (lr {lrs[surface.name][opt]:g})")
            ax.plot(path[-1, 0], path[-1, 1], "o", color=COLORS[opt], ms=4)
        ax.plot(*surface.start, "k*", ms=11, label="start")
        ax.set_xlim(surface.xlim)
        ax.set_ylim(surface.ylim)
        ax.set_title(surface.title, fontsize=9)
        ax.set_xlabel("w (slope)" if surface.name == "diabetes" else "x")
        ax.set_ylabel("b (intercept)" if surface.name == "diabetes" else "y")
        ax.legend(fontsize=6.5, loc="lower right", framealpha=0.85)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    fig.suptitle("Optimizer paths over loss contours (each optimizer with its best learning rate)")
    save_figure(fig, demo.path("optimizers-paths.png"), dpi=90)
    return "optimizers-paths.png"


def _log_norm(levels: np.ndarray):
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=levels[0], vmax=levels[-1])


def plot_losses(demo: DemoRun, shown: list[Surface], paths: dict[str, dict[str, np.ndarray]]) -> str:
    """Loss above the minimum against step, one panel per surface; returns the file name."""
    fig = new_figure(4.2 * len(shown), 3.6)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, surface in zip(axes, shown):
        for opt, path in paths[surface.name].items():
            gap = surface.height(path[:, 0], path[:, 1]) - surface.minimum
            ax.semilogy(np.arange(len(path)), np.maximum(gap, 1e-12), color=COLORS[opt], label=opt)
        ax.set_title(surface.name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss - minimum")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Loss against step (log scale)")
    save_figure(fig, demo.path("optimizers-loss.png"), dpi=90)
    return "optimizers-loss.png"


def write_table(demo: DemoRun, lrs: dict[str, dict[str, float]], final: dict[str, dict[str, float]]) -> str:
    """A Markdown table: per surface and optimizer, the learning rate used and the final loss above the minimum."""
    lines = ["| surface | " + " | ".join(OPTIMIZERS) + " |", "|---|" + "---|" * len(OPTIMIZERS)]
    for surface, by_optimizer in lrs.items():
        cells = [f"lr {by_optimizer[opt]:g}: {final[surface][opt]:.2e}" for opt in OPTIMIZERS]
        lines.append(f"| {surface} | " + " | ".join(cells) + " |")
    demo.path("optimizers-table.md").write_text(
        "Learning rate per optimizer and surface, and the loss above the minimum after the last step\n\n"
        + "\n".join(lines) + "\n")
    return "optimizers-table.md"


def run(demo: DemoRun) -> dict[str, object]:
    steps = QUICK_STEPS if demo.quick else STEPS
    shown, diabetes_test = surfaces(demo.seed)
    lrs: dict[str, dict[str, float]] = {}
    paths: dict[str, dict[str, np.ndarray]] = {}
    final: dict[str, dict[str, float]] = {}
    for surface in shown:
        lrs[surface.name], paths[surface.name], final[surface.name] = {}, {}, {}
        for opt in OPTIMIZERS:
            lr = QUICK_LRS[opt] if demo.quick else tune_lr(demo, surface, opt, LR_GRID, steps)
            path, loss = train_path(demo, surface, opt, lr, steps, f"paths/{surface.name}-{opt}", log_every=1)
            lrs[surface.name][opt], paths[surface.name][opt] = lr, path
            final[surface.name][opt] = loss - surface.minimum
    x_test, y_test = diabetes_test.tensors
    held_out = {opt: float(0.5 * ((p[-1, 0] * x_test + p[-1, 1] - y_test) ** 2).mean())
                for opt, p in paths["diabetes"].items()}
    return {
        "steps": steps,
        "lr_grid": None if demo.quick else list(LR_GRID),
        "learning_rates": lrs,
        "final_loss_above_minimum": final,
        "diabetes_held_out_mse_half": held_out,
        "diabetes_held_out_baseline_predict_mean": float(0.5 * (y_test ** 2).mean()),
        "table": write_table(demo, lrs, final),
        "pictures": [plot_paths(demo, shown, paths, lrs), plot_losses(demo, shown, paths)],
    }
