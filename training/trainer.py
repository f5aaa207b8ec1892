"""The one trainer of the project: any model, any loss, resumable, DDP-ready.

Every network of the project trains through :class:`Trainer`: the Go policy and
value nets as much as the lecture demos (CNN classifier, autoencoders, VAE,
char-LSTM). Nothing here knows about Go. A model comes with a *loss function*
``loss_fn(model, batch) -> (loss, metrics)``: ``loss`` a scalar tensor to
minimise, ``metrics`` a dict of floats to log (``"loss"`` is added by the
trainer and must not be among them). Under DDP the training steps hand it the
DistributedDataParallel wrapper: call the model, do not reach for its
attributes (validation always gets the bare model).

The file reads top to bottom like nanoGPT's ``train.py``:

1. :class:`TrainConfig`: every knob with its default; saved in each checkpoint.
2. :func:`lr_at`: the learning-rate schedule, a pure function of the step.
3. Data: :class:`DatasetBatches` turns a map-style Dataset into a resumable
   :class:`BatchSource`; :func:`to_device` moves a batch.
4. RNG state capture, device choice and ``torchrun`` set-up.
5. :class:`Trainer`: set-up in ``__init__``, the loop in :meth:`Trainer.fit`.

Run folder (``config.out_dir``): ``metrics.csv`` (see :mod:`training.metrics`),
``last.pt`` (latest state, for resuming), ``best.pt`` (the state at the best
validation metric), ``manifest.json`` (the data's inputs, when the batch source
describes them). Both checkpoints have kind ``"trainer"`` and hold the
model and optimizer state, step, total steps, epoch and batch position within
the epoch, the RNG states of every rank, best metric and early-stop counter,
the config as a dict, the data manifest and the caller's ``extra_meta`` (the
model's own description, which :func:`gogame.nets.load` reads to rebuild a
network). There is no separate scheduler state: the learning rate is
``lr_at(step)``.

Stopping: a run stops cleanly after the current step on SIGINT or SIGTERM and
once ``stop_after_minutes`` have passed, writing ``last.pt`` first; besides
every ``ckpt_every`` steps it writes ``last.pt`` whenever ``ckpt_every_minutes``
have passed since the last one, so a kill -9 loses at most that much work.

Exact resume: the run's length and schedule (:data:`RUN_FIELDS`, and the total
steps) are fixed by its first checkpoint; resuming with other values is a
CheckpointError unless ``extend_steps`` lengthens the run on purpose. A batch
source with a ``manifest()`` (its input files with sizes and hashes, and the
settings that order them) is checked against the manifest stored at the start,
so changed or missing inputs are named instead of silently reshuffling an
epoch. Epoch ``e`` visits the data in an order seeded by ``seed + e``, so a
resumed run skips the batches already consumed and sees the same remaining
batches, with the RNG states restored, as a run never interrupted. On CPU the
final weights are bitwise equal, through SIGTERM and kill -9 too (tested).
Exactness assumes ``dataset[i]`` is deterministic (random augmentation in
DataLoader workers is reseeded per epoch, not per batch).

DDP: launched with ``torchrun --nproc_per_node N ...`` (``WORLD_SIZE`` > 1), the
trainer joins the process group (nccl on CUDA, gloo on CPU), wraps the model in
DistributedDataParallel and deals each epoch's order round-robin to the ranks.
Only rank 0 writes files and shows the progress bar; logged metrics are
averaged over the ranks.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import random
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from gogame import nets
from gogame.atomic import write_atomically
from gogame.checkpoint import (
    CheckpointError,
    check_weights_only_safe,
    load_checkpoint,
    save_checkpoint,
    strip_wrapper_prefixes,
)
from training.metrics import MetricsWriter
from training.stopping import RunStopped, StopRequest

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
OPTIMIZERS = ("sgd", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
LAST = "last.pt"
BEST = "best.pt"
MANIFEST = "manifest.json"
CHECKPOINT_KIND = "trainer"
STOP_REASONS = ("", "SIGINT", "SIGTERM", "time limit")  # what StopRequest.reason() gives; index 0: go on


# ----------------------------------------------------------------------------
# 1. Configuration


@dataclass
class TrainConfig:
    """All settings of a training run. Stored as a dict in every checkpoint.

    Set exactly one of ``steps`` (optimizer steps in all) and ``epochs``.
    Steps are counted from 1: "every 100 steps" means after steps 100, 200, ...
    """

    out_dir: str = "runs/train"  # run folder: metrics.csv, last.pt, best.pt
    # length of training: exactly one of these two
    steps: int = 0
    epochs: int = 0
    batch_size: int = 64  # per rank under DDP
    # optimizer
    optimizer: str = "adamw"  # one of OPTIMIZERS
    lr: float = 1e-3  # peak learning rate (after warmup)
    momentum: float = 0.9  # sgd (0 for plain SGD) and nesterov
    weight_decay: float = 0.0  # on weight matrices and conv kernels only, never biases
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping
    # learning-rate schedule (see lr_at)
    schedule: str = "constant"  # "constant" | "cosine" | "step"
    warmup_steps: int = 0  # linear warmup before the schedule proper
    min_lr: float = 0.0  # where cosine ends
    lr_step_every: int = 1000  # "step": multiply the lr by lr_gamma every this many steps
    lr_gamma: float = 0.5  # AlphaGo's SL policy halved its lr every 80M steps
    # evaluation, early stopping, checkpoints, logging
    val_every: int = 500  # validate after every this many steps, and at the last step
    val_metric: str = "loss"  # the validation metric that picks best.pt and drives early stopping
    val_mode: str = "min"  # "min" or "max": which direction of val_metric is better
    early_stop_patience: int = 0  # stop after this many validations without improvement; 0 never
    ckpt_every: int = 1000  # write last.pt after every this many steps (and when stopping)
    ckpt_every_minutes: float = 5.0  # also write last.pt once this many minutes passed since the last; 0 off
    log_every: int = 50  # write a train row (means over the last log_every steps)
    # runtime
    seed: int = 0
    amp: bool = False  # bf16 autocast where the device computes bf16 natively (gogame.nets.bf16_native)
    device: str | None = None  # None: CUDA, then MPS, then CPU (pick_device)
    num_workers: int = 0  # DataLoader worker processes
    prefetch: int = 0  # training batches read ahead in a background thread (0: none); see read_ahead
    progress: bool = True  # tqdm bar (rank 0 only)
    resume: bool = False  # continue from out_dir/last.pt if it exists
    # this invocation only: a resumed run may change these freely
    max_steps_this_run: int = 0  # stop (with a checkpoint) after this many steps; 0 no limit
    stop_after_minutes: float = 0.0  # stop (with a checkpoint) after this much wall-clock time; 0 no limit
    handle_signals: bool = True  # SIGINT and SIGTERM stop after the current step, with a checkpoint
    extend_steps: int = 0  # with resume: the run's new length in steps (the schedule is recomputed for it)

    def __post_init__(self) -> None:
        self.out_dir = str(self.out_dir)  # a Path would not survive weights_only loading
        if (self.steps > 0) == (self.epochs > 0):
            raise ValueError("set exactly one of steps and epochs to a positive number")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.val_mode not in ("min", "max"):
            raise ValueError(f"val_mode must be 'min' or 'max', not {self.val_mode!r}")
        for name in ("batch_size", "val_every", "ckpt_every", "log_every", "lr_step_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("ckpt_every_minutes", "stop_after_minutes", "extend_steps", "max_steps_this_run"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0")


# What a run's first checkpoint fixes: its length, data order, optimisation and schedule. Resuming with another
# value of any of these would silently make a different run (TrainConfig.extend_steps lengthens one on purpose).
RUN_FIELDS = ("steps", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "grad_clip",
              "schedule", "warmup_steps", "min_lr", "lr_step_every", "lr_gamma", "val_metric", "val_mode",
              "early_stop_patience", "seed")


def stored_config(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The config (as a dict, ``total_steps`` added) of the run whose ``last.pt`` is in ``out_dir``, or None.

    A stage reads it before building its Trainer, to take the run's length from the checkpoint instead of
    recomputing it (``--minutes``) and to read its inputs from the stored manifest. Raises CheckpointError
    for a file that is not a trainer checkpoint.
    """
    path = Path(out_dir) / LAST
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path, expect_kind=CHECKPOINT_KIND)
    return {**ckpt["config"], "total_steps": ckpt.get("total_steps"), "manifest": ckpt.get("manifest")}


def manifest_difference(stored: Any, current: Any) -> str | None:
    """What differs between two data manifests, in words naming the input; None when they agree.

    Manifests are plain JSON data; inputs are listed under ``"inputs"`` as dicts with a ``"path"``.
    """
    if stored == current:
        return None
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in dict.fromkeys([*stored, *current]):
            if key == "inputs" and isinstance(stored.get(key), list) and isinstance(current.get(key), list):
                old = {i.get("path"): i for i in stored[key]}
                new = {i.get("path"): i for i in current[key]}
                for path in old:
                    if path not in new:
                        return f"input {path} is missing"
                    if old[path] != new[path]:
                        return f"input {path} changed ({_input_words(old[path])} -> {_input_words(new[path])})"
                for path in new:
                    if path not in old:
                        return f"input {path} was not among the run's inputs"
                if list(old) != list(new):
                    return "the inputs are listed in another order"
            elif stored.get(key) != current.get(key):
                inner = manifest_difference(stored.get(key), current.get(key))
                return f"{key}: {inner}" if inner and isinstance(stored.get(key), dict) else \
                    f"{key} was {stored.get(key)!r}, is {current.get(key)!r}"
        return None
    return f"was {stored!r}, is {current!r}"


def _input_words(entry: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in entry.items() if k != "path")


# ----------------------------------------------------------------------------
# 2. Learning-rate schedule


def lr_at(step: int, config: TrainConfig, total_steps: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    The first ``warmup_steps`` steps ramp linearly up to ``lr`` (step 0 uses
    ``lr / warmup_steps``: never zero, which would waste a step). After that,
    with ``s = step - warmup_steps``:

    - ``constant``: ``lr``
    - ``cosine``: half a cosine wave from ``lr`` at ``s = 0`` to ``min_lr`` at the last step
    - ``step``: ``lr * lr_gamma ** (s // lr_step_every)``
    """
    c = config
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    s = step - c.warmup_steps
    if c.schedule == "constant":
        return c.lr
    if c.schedule == "step":
        return c.lr * c.lr_gamma ** (s // c.lr_step_every)
    progress = min(1.0, s / max(1, total_steps - 1 - c.warmup_steps))
    return c.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (c.lr - c.min_lr)


# ----------------------------------------------------------------------------
# 3. Data


class BatchSource(Protocol):
    """A resumable stream of batches, epoch by epoch.

    Contract: ``batches(epoch, start, rank, world_size)`` yields the batches of
    ``epoch`` that belong to ``rank``, without the first ``start`` of them, and
    the same arguments always give the same batches (this makes resume exact).
    For training, every rank must get ``num_batches(world_size)`` batches per
    epoch, since DDP ranks step in lockstep.
    """

    def num_batches(self, world_size: int) -> int: ...

    def batches(self, epoch: int, start: int, rank: int, world_size: int) -> Iterable[Any]: ...


class DatasetBatches:
    """A map-style Dataset as a :class:`BatchSource` (the trainer wraps datasets in this).

    Epoch ``e`` visits the samples in the order ``torch.randperm(n)`` seeded with
    ``seed + e`` (index order if not ``shuffle``), dealt round-robin to the
    ranks as DistributedSampler does. With ``even_shards`` the order is padded
    with its own first samples to a multiple of ``world_size``, so every rank
    gets as many batches (training); without it no sample is seen twice
    (validation). The last batch of a rank may be smaller than ``batch_size``.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 even_shards: bool = True, num_workers: int = 0, pin_memory: bool = False,
                 collate_fn: Callable[[list], Any] | None = None) -> None:
        if len(dataset) == 0:
            raise ValueError("the dataset is empty")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.even_shards = even_shards
        self.loader_kwargs = {"num_workers": num_workers, "pin_memory": pin_memory, "collate_fn": collate_fn}

    def indices(self, epoch: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """The dataset indices ``rank`` visits in ``epoch``, in order."""
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        else:
            order = list(range(n))
        if self.even_shards:
            pad = -n % world_size
            order += (order * (pad // n + 1))[:pad]
        return order[rank::world_size]

    def num_batches(self, world_size: int = 1) -> int:
        per_rank = math.ceil(len(self.dataset) / world_size)
        return math.ceil(per_rank / self.batch_size)

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
        remaining = self.indices(epoch, rank, world_size)[start * self.batch_size:]
        # A DataLoader draws its worker seed from the global torch RNG unless it
        # has its own generator; drawing from the global one would make a
        # resumed run's random stream (dropout, ...) differ from an unbroken run.
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=remaining,
                          generator=torch.Generator().manual_seed(self.seed + epoch), **self.loader_kwargs)


def map_tensors(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``batch`` with ``fn`` applied to every tensor inside (nested tuples, namedtuples, lists, dicts)."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(map_tensors(v, fn) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(map_tensors(v, fn) for v in batch)
    return batch


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``batch`` with every tensor inside on ``device``."""
    return map_tensors(batch, lambda t: t.to(device, non_blocking=non_blocking))


class _Failed(NamedTuple):
    error: BaseException


def read_ahead(batches: Iterable[Any], depth: int, pin: bool = False) -> Iterator[Any]:
    """Yield the batches of ``batches`` in order while a background thread reads up to ``depth`` ahead.

    Reading shards, shuffling and slicing then overlap the device's work (a GPU waits on none of it); ``pin``
    also pins each batch's tensors, so that the copy to a CUDA device runs asynchronously. An exception in the
    reader is raised here, at the batch where it happened. Closing the generator stops the reader. The source's
    ``batches()`` must not draw from the global RNGs, which the training thread uses at the same time (the
    project's sources seed their own generators). ``depth`` 0 reads in the caller's thread.
    """
    if depth <= 0:
        yield from batches
        return
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(map_tensors(batch, torch.Tensor.pin_memory) if pin else batch):
                    return
            put(end)
        except BaseException as error:  # handed to the training thread, which raises it
            put(_Failed(error))

    reader = threading.Thread(target=read, name="read_ahead", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not end:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        reader.join()


def batch_len(batch: Any) -> int:
    """The number of samples in a batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else 1
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for value in values:
        n = batch_len(value)
        if n:
            return n
    return 0


# ----------------------------------------------------------------------------
# 4. RNG states, devices, torchrun


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states (Python, numpy, torch, and ``device``'s) as weights_only-safe data."""
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` captured."""
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss_next"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (all devices') global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    """The best device here: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _setup_distributed(requested: str | None) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, we_started_the_process_group) for this process.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) each rank takes the GPU of its
    ``LOCAL_RANK``, or the CPU with the gloo backend when there is no CUDA.
    """
    device = torch.device(requested) if requested else pick_device()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"DDP runs on CUDA (nccl) or the CPU (gloo), not on {device.type}")
    started = not dist.is_initialized()
    if started:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device, started


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """One of OPTIMIZERS, with weight decay on weight matrices and kernels only.

    Decaying biases and per-point biases pulls them to zero for no gain
    (the nanoGPT grouping: parameters with at least two dimensions decay).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.optimizer == "nesterov")
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, lr=cfg.lr)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


@dataclass
class _Window:
    """Sums of the train metrics since the last train row."""

    sums: dict[str, Any] = field(default_factory=dict)  # values may be tensors: no GPU sync per step
    steps: int = 0
    samples: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, metrics: dict[str, Any], samples: int) -> None:
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1
        self.samples += samples


# ----------------------------------------------------------------------------
# 5. The trainer


class TrainingJob(NamedTuple):
    """Everything a :class:`Trainer` needs, as a stage builds it from its typed config (``build_job(config)``):
    a campaign or a pipeline then decides where and how long it runs."""

    model: nn.Module
    loss_fn: LossFn
    train: Dataset | BatchSource
    val: Dataset | BatchSource | None
    config: TrainConfig
    extra_meta: dict[str, Any]


class Trainer:
    """Trains ``model`` on ``loss_fn`` over ``train_data``; see the module docstring.

    ``train_data`` / ``val_data``: a map-style Dataset (batched by
    :class:`DatasetBatches` with ``config.batch_size``, shuffled for training,
    in order for validation) or a :class:`BatchSource`. ``extra_meta`` is a
    plain dict (tensors, str, numbers, lists, dicts) stored in each checkpoint:
    the model's description, so that the checkpoint alone can rebuild it.

    On a fresh run the global RNGs are seeded with ``seed + rank``; build the
    model before, under your own seed. With ``config.resume`` and an existing
    ``out_dir/last.pt``, the model, optimizer, position and RNGs continue from
    it (a missing file starts a fresh run, so the same command can be run
    again until the job is done). A fresh run replaces an old run's files in
    ``out_dir``. Raises CheckpointError if ``last.pt`` cannot be resumed from:
    another model, another run (a :data:`RUN_FIELDS` value differs), or inputs
    that differ from its manifest. ``on_checkpoint(path)`` hooks run on rank 0
    after each write of ``last.pt`` (a campaign keeps its compact state so).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, train_data: Dataset | BatchSource,
                 val_data: Dataset | BatchSource | None = None, *, config: TrainConfig,
                 extra_meta: dict[str, Any] | None = None,
                 on_checkpoint: Callable[[Path], None] | None = None) -> None:
        self.config = cfg = config
        self.extra_meta = dict(extra_meta or {})
        check_weights_only_safe(self.extra_meta, "extra_meta")  # fail now, not at the first checkpoint
        self.loss_fn = loss_fn
        self.out_dir = Path(cfg.out_dir)
        self.on_checkpoint = on_checkpoint

        # where we run: one process, or one rank of a torchrun job
        self.rank, self.world_size, self.device, self._owns_process_group = _setup_distributed(cfg.device)
        self.is_main = self.rank == 0
        seed_everything(cfg.seed + self.rank)  # ranks differ so that their dropout masks differ
        pin = self.device.type == "cuda"

        self.train_source = train_data if hasattr(train_data, "batches") else DatasetBatches(
            train_data, cfg.batch_size, shuffle=True, seed=cfg.seed, even_shards=True,
            num_workers=cfg.num_workers, pin_memory=pin)
        self.val_source = val_data if val_data is None or hasattr(val_data, "batches") else DatasetBatches(
            val_data, cfg.batch_size, shuffle=False, even_shards=False,
            num_workers=cfg.num_workers, pin_memory=pin)
        per_epoch = self.train_source.num_batches(self.world_size)
        if per_epoch < 1:  # an epoch without a step would loop forever
            raise ValueError(f"the training data gives no batch of {cfg.batch_size} per rank "
                             f"({self.world_size} rank(s)): too little data for the batch size")
        self.total_steps = cfg.steps or cfg.epochs * per_epoch
        self.manifest = {name: source.manifest() for name, source in
                         (("train", self.train_source), ("val", self.val_source)) if hasattr(source, "manifest")}
        check_weights_only_safe(self.manifest, "the batch sources' manifest")

        self.model = model.to(self.device)  # the bare model: checkpoints and validation use it
        self.optimizer = _make_optimizer(self.model, cfg)

        # training state: everything below goes into each checkpoint
        self.step = 0  # optimizer steps done
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of this epoch already consumed
        self.best_metric: float | None = None
        self.bad_evals = 0  # validations since the last improvement
        self.elapsed_before = 0.0  # seconds spent in earlier runs of this job
        self.last_val: dict[str, float] | None = None
        self.last_train: dict[str, float] | None = None
        self._run_start = time.perf_counter()
        self._last_save = time.monotonic()
        self.stopped: str | None = None  # why the last fit() stopped before the end, if it did
        self._postfix: dict[str, str] = {}  # what the progress bar shows after the ETA

        resumed = cfg.resume and (self.out_dir / LAST).is_file()
        if resumed:
            self._resume(self.out_dir / LAST)
        # DDP all-reduces gradients in backward; the bare self.model shares its parameters.
        self.train_model: nn.Module = self.model
        if self.world_size > 1:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.metrics: MetricsWriter | None = None
        if self.is_main:
            if not resumed:  # a fresh run must not leave an older run's checkpoints around
                for name in (LAST, BEST):
                    (self.out_dir / name).unlink(missing_ok=True)
                if self.manifest:
                    text = json.dumps(self.manifest, indent=1).encode()
                    write_atomically(self.out_dir / MANIFEST, lambda f: f.write(text))
            self.metrics = MetricsWriter(self.out_dir, resume_step=self.step if resumed else None)

    def lr_at(self, step: int) -> float:
        """The learning rate of (0-based) optimizer step ``step`` of this run."""
        return lr_at(step, self.config, self.total_steps)

    # -- the loop -------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train until the last step, early stopping, ``max_steps_this_run``, a signal or the time limit.

        Returns a summary: ``step``, ``total_steps``, ``epoch``, ``best_metric``, ``early_stopped``,
        ``train`` and ``val`` (the last logged means, or None). A signal or the time limit raises
        :class:`training.stopping.RunStopped` instead, once ``last.pt`` is written (``self.stopped`` holds
        the reason). Call it once per Trainer: it closes the metrics file and, if this trainer joined the
        torchrun process group, leaves it.
        """
        cfg = self.config
        self._run_start = time.perf_counter()
        self._last_save = time.monotonic()
        first_step = self.step
        window = _Window()
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and self.is_main))
        self.train_model.train()
        try:
            with StopRequest(cfg.stop_after_minutes, handle_signals=cfg.handle_signals) as request:
                while not self._finished(first_step):
                    batches = self.train_source.batches(self.epoch, self.batch_in_epoch, self.rank,
                                                        self.world_size)
                    with contextlib.closing(read_ahead(batches, cfg.prefetch,
                                                       pin=self.device.type == "cuda")) as stream:
                        for batch in stream:
                            lr = self._train_step(batch, window)
                            bar.update()
                            last = self.step == self.total_steps
                            if self.step % cfg.log_every == 0 or last:
                                self._log_train(window, lr, bar)
                                window = _Window()
                            if self.val_source is not None and (self.step % cfg.val_every == 0 or last):
                                self._validate(bar)
                                window.start = time.perf_counter()  # samples/s counts training only
                            self.stopped, save_due = self._poll(request)
                            if (self.step % cfg.ckpt_every == 0 or save_due or self.stopped
                                    or self._finished(first_step)):
                                self.save(self.out_dir / LAST)
                            if self._finished(first_step):
                                break
                        else:  # the epoch ran out: the next starts from its first batch
                            self.epoch += 1
                            self.batch_in_epoch = 0
            if self._owns_process_group:  # no rank tears down its connections while another still talks
                dist.barrier()
        finally:
            bar.close()
            if self.metrics is not None:
                self.metrics.close()
            if self._owns_process_group and dist.is_initialized():
                # The DDP wrapper's reducer holds the process group: drop it here, so that gloo's threads are
                # joined now rather than by the interpreter's teardown, which may abort a rank at exit.
                self.train_model = self.model
                dist.destroy_process_group()
        if self.stopped:
            raise RunStopped(self.stopped, f"step {self.step} of {self.total_steps} in {self.out_dir / LAST}")
        return {"step": self.step, "total_steps": self.total_steps, "epoch": self.epoch,
                "best_metric": self.best_metric, "early_stopped": self._patience_spent(),
                "train": self.last_train, "val": self.last_val}

    def _poll(self, request: StopRequest) -> tuple[str | None, bool]:
        """(why to stop now or None, whether a timed checkpoint is due), agreed by every rank.

        Each rank sees its own signals and clock; the ranks must stop and save at the same step, so the
        flags are combined (any rank's stop stops all) in one small all-reduce per step.
        """
        reason = request.reason()
        due = self.config.ckpt_every_minutes > 0 and \
            time.monotonic() - self._last_save >= 60 * self.config.ckpt_every_minutes
        if self.world_size > 1:
            flags = torch.tensor([STOP_REASONS.index(reason) if reason else 0, int(due)])
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            code, due = int(flags[0]), bool(flags[1])
            reason = STOP_REASONS[code] if code else None
        return reason, due

    def _train_step(self, batch: Any, window: _Window) -> float:
        """One optimizer step on one batch; returns the learning rate it used."""
        cfg = self.config
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = to_device(batch, self.device, non_blocking=self.device.type == "cuda")
        with self._autocast():
            loss, metrics = self.loss_fn(self.train_model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics = {"loss": loss.detach(), **metrics}
        if cfg.grad_clip > 0:
            # logged before clipping: a spike in the norm is the first sign of divergence
            metrics["grad_norm"] = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.batch_in_epoch += 1
        window.add(metrics, batch_len(batch) * self.world_size)
        return lr

    def _log_train(self, window: _Window, lr: float, bar: tqdm) -> None:
        """Write the train row: metric means over the window, averaged over ranks."""
        # float() syncs with the GPU; here once per log_every steps, not every step.
        means = {k: float(v) / window.steps for k, v in window.sums.items()}
        self.last_train = self._mean_over_ranks(means, 1)
        rate = window.samples / max(time.perf_counter() - window.start, 1e-9)
        if self.metrics is not None:
            self.metrics.write(self.step, "train", {**self.last_train, "lr": lr, "samples_per_s": rate,
                                                    "elapsed_s": self._elapsed()})
        self._postfix.update({"loss": f"{self.last_train['loss']:.4g}", "samples/s": f"{rate:.0f}"})
        bar.set_postfix(self._postfix)

    def _validate(self, bar: tqdm) -> None:
        """Evaluate, log, keep best.pt, and count validations without improvement."""
        cfg = self.config
        self.last_val = self.evaluate()
        if cfg.val_metric not in self.last_val:
            raise KeyError(f"val_metric {cfg.val_metric!r} is not among the metrics {sorted(self.last_val)}")
        value = self.last_val[cfg.val_metric]
        if self.metrics is not None:
            self.metrics.write(self.step, "val", {**self.last_val, "elapsed_s": self._elapsed()})
        better = self.best_metric is None or (value < self.best_metric if cfg.val_mode == "min"
                                              else value > self.best_metric)
        if better:
            self.best_metric, self.bad_evals = value, 0
            self.save(self.out_dir / BEST)
        else:
            self.bad_evals += 1
        self._postfix[f"val_{cfg.val_metric}"] = f"{value:.4g}"
        bar.set_postfix(self._postfix)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Sample-weighted means of ``loss`` and the loss function's metrics over the val set.

        Runs the bare model in eval mode (no DDP: ranks may hold different
        numbers of val batches, and DDP's forward is a collective); the sums are
        then combined over the ranks. Raises ValueError without val data.
        """
        if self.val_source is None:
            raise ValueError("this trainer has no validation data")
        was_training = self.model.training
        self.model.eval()
        sums: dict[str, float] = {}
        count = 0
        for batch in self.val_source.batches(0, 0, self.rank, self.world_size):
            batch = to_device(batch, self.device, non_blocking=self.device.type == "cuda")
            n = batch_len(batch)
            with self._autocast():
                loss, metrics = self.loss_fn(self.model, batch)
            for name, value in {"loss": loss, **metrics}.items():
                sums[name] = sums.get(name, 0.0) + float(value) * n
            count += n
        self.model.train(was_training)
        return self._mean_over_ranks(sums, count)

    # -- checkpoints ----------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write a full training checkpoint to ``path`` (atomically).

        Under DDP every rank must call this (each rank's RNG state is gathered);
        only rank 0 writes.
        """
        rng = self._gather(rng_state(self.device))
        if Path(path) == self.out_dir / LAST:
            self._last_save = time.monotonic()
        if not self.is_main:
            return
        save_checkpoint(path, {
            "kind": CHECKPOINT_KIND,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_metric": self.best_metric,
            "bad_evals": self.bad_evals,
            "elapsed_s": self._elapsed(),
            "rng": rng,  # one state per rank
            "config": asdict(self.config),
            "manifest": self.manifest,
            "meta": self.extra_meta,
        })
        if self.on_checkpoint is not None and Path(path) == self.out_dir / LAST:
            self.on_checkpoint(Path(path))

    def _resume(self, path: Path) -> None:
        """Load model, optimizer, position, early-stop state and RNGs from ``path``, after checking that it
        is this run: the same :data:`RUN_FIELDS`, total steps and data manifest (``extend_steps`` aside)."""
        ckpt = load_checkpoint(path, expect_kind=CHECKPOINT_KIND)
        stored, cfg = ckpt["config"], self.config
        extending = cfg.extend_steps > 0
        for key in RUN_FIELDS:
            if extending and key in ("steps", "epochs"):
                continue
            if key in stored and stored[key] != getattr(cfg, key):
                raise CheckpointError(
                    f"{path} is a run with {key}={stored[key]!r}, not {getattr(cfg, key)!r}: a run's length, data "
                    "order and schedule are fixed when it starts (resume with its own settings, lengthen it with "
                    "extend_steps / --extend STEPS, or start a new run in another folder)")
        total = ckpt.get("total_steps")
        if not extending and total is not None and total != self.total_steps:
            raise CheckpointError(f"{path} is a run of {total} steps, these settings and data give "
                                  f"{self.total_steps}: the data changed (see its manifest) or the settings did")
        difference = manifest_difference(ckpt.get("manifest") or {}, self.manifest) \
            if ckpt.get("manifest") is not None else None
        if difference:
            raise CheckpointError(f"{path}: the data is not the run's: {difference}")
        try:
            self.model.load_state_dict(strip_wrapper_prefixes(ckpt["model"]))
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} does not fit this model and optimizer: "
                                  f"{str(exc).strip().splitlines()[0]}") from None
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        if extending:
            if cfg.extend_steps <= self.step:
                raise CheckpointError(f"extend_steps {cfg.extend_steps} must be more than the run's "
                                      f"{self.step} steps done")
            if self.is_main:
                print(f"extending the run from {total or self.total_steps} to {cfg.extend_steps} steps: the "
                      f"learning-rate schedule is recomputed for the new length from step {self.step} on",
                      file=sys.stderr)
            cfg.steps, cfg.epochs = cfg.extend_steps, 0
            cfg.extend_steps = 0  # the checkpoints of the lengthened run record the new length only
            self.total_steps = cfg.steps
        self.best_metric, self.bad_evals = ckpt["best_metric"], ckpt["bad_evals"]
        self.elapsed_before = ckpt["elapsed_s"]
        if len(ckpt["rng"]) == self.world_size:
            set_rng_state(ckpt["rng"][self.rank], self.device)
        else:
            warnings.warn(f"the checkpoint holds RNG states of {len(ckpt['rng'])} ranks, this job has "
                          f"{self.world_size}: reseeding, the run will not repeat exactly", stacklevel=3)
            seed_everything(self.config.seed + self.rank + self.step)

    # -- helpers --------------------------------------------------------------

    def _finished(self, first_step: int) -> bool:
        limit = self.config.max_steps_this_run
        return (self.step >= self.total_steps or self._patience_spent() or self.stopped is not None
                or (limit > 0 and self.step - first_step >= limit))

    def _patience_spent(self) -> bool:
        patience = self.config.early_stop_patience
        return patience > 0 and self.bad_evals >= patience

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._run_start

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when ``amp`` and the device has native bf16; bf16 needs no loss scaling, unlike fp16."""
        return nets.autocast(self.device, self.config.amp)

    def _gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (just ``[obj]`` without DDP)."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def _mean_over_ranks(self, sums: dict[str, float], count: float) -> dict[str, float]:
        """``sum over ranks of sums[k] / sum over ranks of count``, for every key any rank has."""
        parts = self._gather((sums, count))
        total = sum(c for _, c in parts)
        names = list(dict.fromkeys(k for s, _ in parts for k in s))
        return {k: sum(s.get(k, 0.0) for s, _ in parts) / max(total, 1e-12) for k in names}
