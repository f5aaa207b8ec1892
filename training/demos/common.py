"""What every lecture demo shares: the run context, missing-data errors, results and pictures.

A demo module provides ``run(demo: DemoRun) -> dict[str, object]`` and a
one-line ``TITLE``. It trains each model through :class:`training.trainer.Trainer`
with a config from :meth:`DemoRun.train_config` (a run folder under
``demo.out``, the demo's seed, ``--resume`` honoured, the progress bar on),
writes its pictures with :func:`save_image_grid` or its own matplotlib
figures (use :func:`new_figure`), and returns its held-out figures.
:func:`run_demo` writes them to ``metrics.json`` and plots each run's curves.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gogame.atomic import write_atomically
from training.metrics import METRICS_FILE, plot_run
from training.stopping import RunStopped
from training.trainer import TrainConfig

# name -> module under training.demos; the order is the lecture's.
DEMOS: dict[str, str] = {
    "convolution": "training.demos.convolution",
    "classifier": "training.demos.classifier",
    "autoencoder": "training.demos.autoencoder",
    "vae": "training.demos.vae",
    "fonts": "training.demos.fonts",
    "pix2pix": "training.demos.pix2pix",
    "gaze": "training.demos.gaze",
    "charlstm": "training.demos.charlstm",
    "handwriting": "training.demos.handwriting",
    "forecast": "training.demos.forecast",
    "optimizers": "training.demos.optimizers",
    "gradients": "training.demos.gradients",
}
RESULTS_FILE = "metrics.json"


class DemoDataMissing(RuntimeError):
    """A dataset a demo needs is not installed; the message names the install command."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} is not installed; install it with:\n    {install}")
        self.what = what
        self.install = install


def require(path: str | os.PathLike, what: str, install: str) -> Path:
    """``path`` if it exists, else raise :class:`DemoDataMissing` naming ``install``."""
    path = Path(path)
    if not path.exists():
        raise DemoDataMissing(what, install)
    return path


@dataclass
class DemoRun:
    """One run of a demo: where it writes, how big it is, and how it trains.

    ``quick`` asks for a run of seconds on a tiny slice of the data (what CI
    runs); otherwise the demo's full run of a few CPU minutes.
    """

    name: str
    out: Path
    quick: bool = False
    seed: int = 0
    device: str | None = None
    resume: bool = False
    progress: bool = True
    stop_after_minutes: float = 0.0  # the whole demo's wall-clock limit (0: none), shared by its runs
    started: float = field(default_factory=time.monotonic)

    def train_config(self, run: str = "train", **settings: Any) -> TrainConfig:
        """A TrainConfig writing to ``out/run`` with this demo's seed, device, resume, progress and what is left
        of its time limit.

        ``settings`` are any other TrainConfig fields (``steps`` or ``epochs``,
        ``lr``, ``batch_size``, ``val_every`` ...). Raises RunStopped when the
        time limit has passed before this run starts.
        """
        base = dict(out_dir=str(self.out / run), seed=self.seed, device=self.device,
                    resume=self.resume, progress=self.progress)
        if self.stop_after_minutes:
            left = self.stop_after_minutes - (time.monotonic() - self.started) / 60
            if left <= 0:
                raise RunStopped("time limit", f"demo {self.name}, before its run {run!r}")
            base["stop_after_minutes"] = left
        return TrainConfig(**{**base, **settings})

    def path(self, filename: str) -> Path:
        """A file in the demo's output folder (created if need be)."""
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out / filename


def new_figure(width: float, height: float):
    """A matplotlib Figure drawn with Agg (headless, leaves pyplot's global state alone)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` as PNG (atomically) and return the path."""
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    return path


def save_image_grid(images: np.ndarray | Sequence[np.ndarray], path: Path, *, ncols: int | None = None,
                    titles: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
                    cmap: str = "gray", cell: float = 1.1, suptitle: str | None = None) -> Path:
    """Save images (each HxW grey or HxWx3 colour, values in [0, 1]) as one PNG grid.

    ``ncols`` defaults to a near-square grid; ``titles`` label each image,
    ``row_labels`` each row.
    """
    images = [np.asarray(im, dtype=np.float32) for im in images]
    n = len(images)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig = new_figure(cell * ncols, cell * nrows + (0.4 if suptitle else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if k >= n:
            continue
        ax.imshow(np.clip(images[k], 0.0, 1.0), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize=7)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return save_figure(fig, path)


def run_demo(name: str, out: str | os.PathLike, *, quick: bool = False, seed: int = 0,
             device: str | None = None, resume: bool = False, progress: bool = True,
             stop_after_minutes: float = 0.0) -> dict[str, Any]:
    """Run demo ``name`` into ``out``; return (and write to ``out/metrics.json``) its results.

    Raises KeyError for an unknown demo, :class:`DemoDataMissing` when its
    data is not installed, and RunStopped when a signal or ``stop_after_minutes``
    stopped one of its training runs (its state saved: ``resume`` goes on).
    """
    if name not in DEMOS:
        raise KeyError(f"unknown demo {name!r}; known: {', '.join(DEMOS)}")
    module = importlib.import_module(DEMOS[name])
    demo = DemoRun(name=name, out=Path(out), quick=quick, seed=seed, device=device,
                   resume=resume, progress=progress, stop_after_minutes=stop_after_minutes)
    demo.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    figures = module.run(demo)
    results = {"demo": name, "quick": quick, "seed": seed,
               "seconds": round(time.perf_counter() - start, 1), **figures}
    for metrics_csv in sorted(demo.out.glob(f"*/{METRICS_FILE}")):
        try:
            plot_run(metrics_csv.parent)
        except FileNotFoundError:  # a run that logged no rows has no curves to draw
            pass
    write_atomically(demo.out / RESULTS_FILE,
                     lambda f: f.write((json.dumps(results, indent=2, default=float) + "\n").encode()))
    return results


def describe() -> list[tuple[str, str]]:
    """(name, title) of every demo, in the lecture's order."""
    return [(name, importlib.import_module(module).TITLE) for name, module in DEMOS.items()]
