"""Run metrics: the ``metrics.csv`` writer the trainer uses, and a plot of a run.

``metrics.csv`` is one row per (step, split) event, ``split`` being ``train``
or ``val``. The columns are ``step``, ``split``, then every value ever logged,
in order of first appearance (for the trainer: ``loss``, the loss function's
own metrics, ``lr``, ``samples_per_s``, ``elapsed_s``). A value a row does not
have is an empty cell. When a new column appears the file is rewritten with the
wider header, so it always stays a plain rectangular CSV that pandas, a
spreadsheet or :func:`read_metrics` can read.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path

METRICS_FILE = "metrics.csv"
_KEY_COLUMNS = ("step", "split")
# Bookkeeping columns that are not worth a plot panel of their own.
_NOT_PLOTTED = ("elapsed_s", "samples_per_s")


class MetricsWriter:
    """Appends metric rows to ``run_dir/metrics.csv`` (and TensorBoard, if installed).

    ``resume_step`` None starts a fresh file (an old one is replaced). An int
    continues an existing file, first dropping rows with a larger step: they were
    logged after the checkpoint the run resumes from and will be logged again.
    ``tensorboard`` True also writes ``run_dir/tb`` event files when the
    ``tensorboard`` package is installed, and is silently skipped otherwise.
    """

    def __init__(self, run_dir: str | os.PathLike, *, resume_step: int | None = None,
                 tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = None
        rows = [] if resume_step is None else [r for r in read_metrics(self.path) if r["step"] <= resume_step]
        self.columns: list[str] = list(_KEY_COLUMNS)
        for row in rows:
            self.columns += [k for k in row if k not in self.columns]
        self._rewrite(rows)
        self._tb = _tensorboard_writer(self.path.parent / "tb") if tensorboard else None

    def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
        """Append one row; values are floats (ints are fine). The row is flushed at once."""
        new = [k for k in values if k not in self.columns]
        if new:
            rows = read_metrics(self.path)
            self.columns += new
            self._rewrite(rows)
        self._writer.writerow({"step": step, "split": split, **values})
        self._file.flush()
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(f"{name}/{split}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def _rewrite(self, rows: list[dict]) -> None:
        """(Re)open the file with the current header and the given rows."""
        if self._file is not None:
            self._file.close()
        self._file = open(self.path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, restval="")
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._file.flush()


def _tensorboard_writer(log_dir: Path):
    """A SummaryWriter, or None when tensorboard is not installed (it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


def read_metrics(path: str | os.PathLike) -> list[dict[str, float | int | str]]:
    """Rows of a metrics CSV: ``step`` an int, ``split`` a str, other present cells floats.

    Empty cells are left out of a row's dict. A missing file gives ``[]``.
    ``path`` is the CSV itself or the run folder holding it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {"step": int(row["step"]), "split": row["split"],
             **{k: float(v) for k, v in row.items() if k not in _KEY_COLUMNS and v not in ("", None)}}
            for row in csv.DictReader(f)
        ]


def plot_run(run_dir: str | os.PathLike, out_png: str | os.PathLike | None = None, *,
             boundaries: list[int] = (), title: str | None = None, rates: bool = False) -> Path:
    """Plot every metric of ``run_dir/metrics.csv`` against step, train and val together.

    One panel per metric (``lr`` included), each split a line; ``rates`` adds
    the training throughput (``samples_per_s``); ``boundaries`` marks these
    steps in every panel (a campaign's segment starts); ``title`` replaces the
    folder's name. Writes a PNG to ``out_png`` (default ``run_dir/metrics.png``)
    with the Agg renderer, so it works on headless machines, and returns its
    path. Raises FileNotFoundError if the run has no metrics rows.
    """
    # A bare Figure renders with Agg and, unlike pyplot, leaves the global
    # backend alone (a notebook calling this keeps its inline plots).
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not rows:
        raise FileNotFoundError(f"no metrics rows in {run_dir / METRICS_FILE}")
    skipped = (*_KEY_COLUMNS, *(c for c in _NOT_PLOTTED if not (rates and c == "samples_per_s")))
    names = list(dict.fromkeys(k for r in rows for k in r if k not in skipped))
    splits = list(dict.fromkeys(r["split"] for r in rows))

    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        for split in splits:
            points = [(r["step"], r[name]) for r in rows if r["split"] == split and name in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="." if len(points) < 30 else None, label=split)
        for step in boundaries:
            ax.axvline(step, color="grey", lw=0.8, ls="--")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    fig.suptitle(title or run_dir.name)
    fig.tight_layout()

    out = Path(out_png) if out_png is not None else run_dir / "metrics.png"
    fig.savefig(out, dpi=100)
    return out


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run folder holding metrics.csv, or a campaign folder (campaigns/NAME)")
    parser.add_argument("--out", default=None,
                        help="PNG path (default: RUN_DIR/metrics.png; a campaign's RUN_DIR/progress.png)")


def run(args) -> int:
    from training.stages.campaign import CONFIG_FILE, Campaign  # the campaign module plots through this one

    if (Path(args.run_dir) / CONFIG_FILE).is_file():  # every segment, their boundaries marked, positions/s
        print(Campaign(args.run_dir).plot(args.out))
    else:
        print(plot_run(args.run_dir, args.out))
    return 0
