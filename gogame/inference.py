"""Inference backends: running a network forward on a batch of feature planes, outside training.

Scope: one seam between the code that plays (the search's :class:`gogame.api.NetEvaluator`, self-play, the RL
stage's games, evaluation) and the code that computes a network: :func:`runner` takes any ``torch.nn.Module``
whose forward maps one float tensor ``(batch, planes, rows, cols)`` to one tensor or a tuple of tensors, and
returns a :class:`Runner`, a callable from a numpy batch to a tuple of float32 numpy arrays, one per output.
Training stays in torch; nothing here computes gradients. :func:`forward` and :func:`policy` run a net on
positions seen through the 8 board symmetries and turn its outputs back to the board's orientation: the one
symmetric forward of the search (:class:`gogame.api.NetEvaluator`), self-play and evaluation.

=========  ===================================================================================================
backend    what runs the network
=========  ===================================================================================================
``torch``  eager PyTorch on the net's device: where that device computes bf16 natively and ``bf16`` is on, a
           copy of the net in bf16 with channels-last activations (1.3-1.4x autocast's positions per second at
           batch 16 on an AMX CPU, 1.1-1.4x the search's visits: docs/journal/2026-12-02-bf16-copy.md),
           or for a ``live`` runner the net itself under bf16 autocast (:func:`gogame.nets.autocast`); else
           fp32.
``onnx``   ONNX Runtime on the CPU, fp32: the net is exported once per input shape with ``torch.onnx.export``
           (the TorchScript exporter, which needs the ``onnx`` package, with a dynamic batch axis) and cached;
           ``onnx`` is imported by an export only (a second or more), so a cached model runs without it.
``auto``   ``onnx`` on the CPU when onnxruntime and onnx are installed, unless bf16 is on and the CPU computes
           it natively: there torch's bf16 is faster than ONNX Runtime's fp32 (1.3x the 19x19 search's visits
           per second, 1.0x on 9x9, 1.1-1.8x the positions per second from batch 8 on: see
           docs/journal/2026-12-01-onnx.md); ``torch`` on a GPU and otherwise.
=========  ===================================================================================================

The cache. An exported model is keyed by :func:`model_key`: the sha256 of the net's weights (every parameter and
buffer: name, dtype, shape, bytes), of the source files of the net's own classes (so a changed ``forward`` is
re-exported), of its layers as ``repr`` lists them, of the input shape and of this module's export format. Its
file in ``cache_dir`` (default :func:`default_cache_dir`) is ``{key}-{digest}.onnx``, ``digest`` the start of
the sha256 of the file's bytes, written atomically; the key is also stored in the model's metadata. A cached file whose bytes do not match its
digest, that ONNX Runtime cannot load, or whose stored key is not the one asked for is deleted and the model
exported again: a cached model is never trusted on its name alone. A cache folder that cannot be written is
skipped (the model is then exported on each load and used from memory).
"""

from __future__ import annotations

import abc
import contextlib
import copy
import hashlib
import importlib
import importlib.util
import inspect
import io
import math
import os
import threading
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from gogame import features, nets
from gogame.atomic import write_atomically

BACKENDS = ("auto", "torch", "onnx")
SYMMETRY_MODES = ("random", "all", "none")
EXPORT_FORMAT = 1  # bump when the exported graph changes for the same net (opset, names, axes)
OPSET = 17
INPUT = "planes"
KEY_FIELD = "gogame.key"  # the model metadata entry holding the cache key
DIGEST_CHARS = 16  # hex characters of the file's sha256 in its name
# ONNX Runtime intra-op threads. On 2 busy cores beside 2 rollout threads, 2 threads gave 0.86x the visits per
# second of 1 in the 19x19 search (1.19x on 9x9): docs/journal/2026-12-01-onnx.md.
DEFAULT_THREADS = 1
INSTALL = {"onnxruntime": "pip install onnxruntime", "onnx": "pip install onnx"}


class BackendUnavailable(ImportError):
    """An inference backend's package is not installed; the message names the install command."""


def _unavailable(package: str) -> BackendUnavailable:
    return BackendUnavailable(f"the onnx backend needs the {package} package: {INSTALL[package]} "
                              "(or use backend='torch')")


def _require(package: str) -> ModuleType:
    """Import ``package`` (onnxruntime or onnx); BackendUnavailable naming its install command if that fails."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise _unavailable(package) from None


def _require_installed(package: str) -> None:
    """BackendUnavailable naming its install command unless ``package`` is installed, found without importing it:
    onnx, the exporter's dependency, takes a second or more to import, and only an export needs it."""
    try:
        found = importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise _unavailable(package)


def onnx_available() -> bool:
    """Whether onnxruntime can be imported and onnx (the exporter's dependency) is installed."""
    try:
        _require("onnxruntime")
        _require_installed("onnx")
    except BackendUnavailable:
        return False
    return True


def choose(backend: str, device: str | torch.device = "cpu", bf16: bool = True) -> str:
    """The backend (``"torch"`` or ``"onnx"``) that ``backend`` means on ``device`` (see the module docstring).

    Raises ValueError for an unknown backend or ``"onnx"`` on a device other than the CPU, and
    BackendUnavailable for ``"onnx"`` without onnxruntime or onnx installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    device_type = torch.device(device).type
    if backend == "onnx":
        if device_type != "cpu":
            raise ValueError(f"the onnx backend runs on the CPU, not {device_type}: use backend='torch'")
        _require("onnxruntime")
        _require_installed("onnx")
        return "onnx"
    if backend == "auto" and device_type == "cpu" and not (bf16 and nets.bf16_native("cpu")) and onnx_available():
        return "onnx"
    return "torch"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gogame/onnx``, or ``~/.cache/gogame/onnx`` when XDG_CACHE_HOME is not set."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gogame" / "onnx"


def _outputs(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


class Runner(abc.ABC):
    """A network's forward on numpy batches: ``runner(planes)`` -> one float32 array per output, batch first.

    ``planes``: ``(batch, planes, rows, cols)``, any real or integer dtype. ``backend`` names what runs it.
    """

    backend: str

    @abc.abstractmethod
    def __call__(self, planes: np.ndarray) -> tuple[np.ndarray, ...]:
        """The net's outputs for ``planes``."""

    def prepare(self, shape: tuple[int, int, int]) -> None:
        """Get ready for inputs of shape ``(batch, *shape)`` now rather than on the first call (a no-op here)."""


class TorchRunner(Runner):
    """Eager PyTorch on ``device`` (where the planes go), in bf16 where the device computes it natively and
    ``bf16`` is on, else fp32.

    A ``live`` runner runs ``net`` itself (in the mode it is in: callers put it in eval mode), under bf16
    autocast, so a net being trained runs its latest weights. Otherwise the runner runs a copy made now, as the
    onnx backend runs the weights of the moment it was built: in bf16 it is a bf16 net in channels-last memory
    format, which spares autocast's cast of every weight at every forward and the layout reorders around each
    convolution (the module docstring gives the gain)."""

    backend = "torch"

    def __init__(self, net: torch.nn.Module, device: str | torch.device = "cpu", bf16: bool = True, *,
                 live: bool = False) -> None:
        self.device, self.live = torch.device(device), live
        self.bf16 = bf16 and nets.bf16_native(self.device.type)
        if live:
            self.net = net
        elif self.bf16:
            self.net = copy.deepcopy(net).to(self.device, torch.bfloat16).to(memory_format=torch.channels_last)
        else:
            self.net = copy.deepcopy(net).to(self.device)

    def __call__(self, planes: np.ndarray) -> tuple[np.ndarray, ...]:
        x = torch.from_numpy(np.ascontiguousarray(planes)).to(self.device)
        if self.bf16 and not self.live:  # the bf16 copy
            x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), nets.autocast(self.device, self.bf16 and self.live):
            out = self.net(x)
            return tuple(o.float().cpu().numpy() for o in _outputs(out))


def model_key(net: torch.nn.Module, shape: tuple[int, int, int]) -> str:
    """The cache key of ``net`` exported for inputs ``(batch, *shape)``: a sha256 hex digest (module docstring)."""
    h = hashlib.sha256(f"gogame-onnx {EXPORT_FORMAT} opset {OPSET} input {tuple(shape)}\n{net!r}\n".encode())
    classes = {type(m) for m in net.modules() if not type(m).__module__.startswith("torch.")}
    for cls in sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        h.update(f"{cls.__module__}.{cls.__qualname__}\n".encode())
        for base in cls.__mro__:
            if base.__module__.startswith("torch."):
                continue
            try:  # the whole file: inspect.getsource of a class parses it with ast, which is not thread-safe
                h.update(Path(inspect.getsourcefile(base)).read_bytes())  # on CPython 3.11 (gh-106905)
            except (OSError, TypeError):  # no source (built at run time): the name stands for it
                pass
    for name, tensor in net.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_EXPORTING = threading.Lock()


def export_model(net: torch.nn.Module, shape: tuple[int, int, int], key: str) -> bytes:
    """``net`` (on the CPU) as ONNX model bytes for inputs ``(batch, *shape)``, batch dynamic, ``key`` in its
    metadata. Raises BackendUnavailable without the onnx package, and what the net raises for that shape."""
    onnx = _require("onnx")
    x = torch.zeros((1, *shape))
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            count = len(_outputs(net(x)))
        names = [f"out{i}" for i in range(count)]
        buffer = io.BytesIO()
        # one export at a time: torch's exporter keeps process-wide state (two engines' nets exported from two
        # threads, as when a GUI switches board size during the warm-up, failed on its GLOBALS.in_onnx_export)
        with _EXPORTING, warnings.catch_warnings():  # the TorchScript exporter's notice, the tracer's shape checks
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), buffer, dynamo=False, input_names=[INPUT], output_names=names,
                              dynamic_axes={n: {0: "batch"} for n in (INPUT, *names)}, opset_version=OPSET)
    finally:
        net.train(was_training)
    model = onnx.load_model_from_string(buffer.getvalue())
    model.metadata_props.add(key=KEY_FIELD, value=key)
    return model.SerializeToString()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


class OnnxRunner(Runner):
    """ONNX Runtime on the CPU with ``threads`` intra-op threads; one session per input shape, exported on first
    use (or :meth:`prepare`) through the cache in ``cache_dir`` (None: no cache, exported in memory).

    Raises BackendUnavailable without onnxruntime or onnx, ValueError for a net that is not on the CPU.
    """

    backend = "onnx"

    def __init__(self, net: torch.nn.Module, *, threads: int = DEFAULT_THREADS,
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.ort = _require("onnxruntime")
        _require_installed("onnx")
        if any(p.device.type != "cpu" for p in net.parameters()):
            raise ValueError("the onnx backend exports a net on the CPU: move it there first")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.net, self.threads = net, threads
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._sessions: dict[tuple[int, ...], object] = {}

    def __call__(self, planes: np.ndarray) -> tuple[np.ndarray, ...]:
        planes = np.ascontiguousarray(planes, np.float32)
        session = self._sessions.get(planes.shape[1:]) or self._session(planes.shape[1:])
        return tuple(session.run(None, {INPUT: planes}))

    def prepare(self, shape: tuple[int, int, int]) -> None:
        if tuple(shape) not in self._sessions:
            self._session(tuple(shape))

    def _session(self, shape: tuple[int, ...]):
        key = model_key(self.net, shape)
        session = self._cached(key) if self.cache_dir is not None else None
        if session is None:
            data = export_model(self.net, shape, key)
            if self.cache_dir is not None:
                try:
                    write_atomically(self.cache_dir / f"{key}-{_digest(data)}.onnx", lambda f: f.write(data))
                except OSError:
                    pass  # an unwritable cache: use the model from memory
            session = self._load(data)
        self._sessions[shape] = session
        return session

    def _load(self, data: bytes):
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy waits on shared cores
        return self.ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def _cached(self, key: str):
        """The session of a valid cached model for ``key``, or None; invalid files for the key are deleted."""
        for path in sorted(self.cache_dir.glob(f"{key}-*.onnx")):
            try:
                data = path.read_bytes()
                if path.stem == f"{key}-{_digest(data)}":
                    session = self._load(data)
                    if session.get_modelmeta().custom_metadata_map.get(KEY_FIELD) == key:
                        return session
            except Exception:  # noqa: BLE001 - onnxruntime's load errors derive from Exception only; rebuilt below
                pass
            with contextlib.suppress(OSError):  # a read-only cache keeps the bad file; it is not used
                path.unlink()
        return None


def runner(net: torch.nn.Module, backend: str = "auto", *, device: str | torch.device = "cpu", bf16: bool = True,
           threads: int = DEFAULT_THREADS, cache: bool = True, cache_dir: str | os.PathLike | None = None,
           live: bool = False) -> Runner:
    """A :class:`Runner` of ``net`` on ``backend`` (``"auto"``, ``"torch"`` or ``"onnx"``; see :func:`choose`).

    ``device`` and ``bf16`` are the torch backend's (the onnx backend is fp32 on the CPU); ``threads`` the
    onnx backend's intra-op threads; ``cache`` whether it caches exported models, in ``cache_dir`` (default
    :func:`default_cache_dir`). Every backend runs the weights of the moment the runner is made, except with
    ``live`` (a net whose weights change between calls, as the RL learner's): the torch backend then runs the
    net itself. Raises what :func:`choose` raises, and ValueError for ``live`` on another backend.
    """
    if choose(backend, device, bf16) == "torch":
        return TorchRunner(net, device, bf16, live=live)
    if live:
        raise ValueError("only the torch backend runs a net's live weights: use backend='torch'")
    folder = (cache_dir if cache_dir is not None else default_cache_dir()) if cache else None
    return OnnxRunner(net, threads=threads, cache_dir=folder)


# -- the symmetric forward ------------------------------------------------------------------------------------


def symmetries(mode: str, batch: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The symmetry (0-7, :func:`gogame.features.transform_planes`) of each forward row for ``batch`` positions:
    ``"all"``: ``(8 * batch,)``, the 8 of each position in turn; ``"random"``: ``(batch,)`` drawn from ``rng``;
    ``"none"``: ``(batch,)`` zeros. ValueError for another mode, or "random" without ``rng``."""
    if mode == "all":
        return np.tile(np.arange(8), batch)
    if mode == "random" and rng is not None:
        return rng.integers(8, size=batch)
    if mode == "none":
        return np.zeros(batch, np.int64)
    raise ValueError(f"symmetries must be one of {SYMMETRY_MODES} (random with a generator), not {mode!r}")


def forward(run: Runner, planes: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, ...]:
    """``run``'s outputs for ``planes`` ``(B, C, S, S)`` (the net's own planes) seen through the symmetries ``ks``
    (:func:`symmetries`: row ``r`` of the forward is position ``r // (len(ks) // B)`` through ``ks[r]``), as the
    net gives them: per-point outputs in the transformed orientation (:func:`policy`, :func:`to_board` undo it)."""
    rows = planes if len(ks) == len(planes) else np.repeat(planes, len(ks) // len(planes), axis=0)
    return run(features.transform_planes_batch(rows, ks, np.float32))


def to_board(values: np.ndarray, ks: np.ndarray, batch: int) -> np.ndarray:
    """Per-point outputs ``(len(ks), S*S [+ 1])`` of :func:`forward` back in the board's orientation, the mean
    over each of the ``batch`` positions' rows: ``(batch, S*S [+ 1])``."""
    size = math.isqrt(values.shape[1])
    return features.moves_to_board(values, ks, size).reshape(batch, -1, values.shape[1]).mean(axis=1)


def log_policy(logits: np.ndarray, ks: np.ndarray, batch: int, legal: np.ndarray | None = None) -> np.ndarray:
    """float32 log-probabilities ``(batch, S*S + 1)`` in the board's orientation from :func:`forward`'s policy
    logits: the softmax of each row (over the ``legal`` moves only when given, bool ``(batch, S*S + 1)``; the
    others get ``-inf``), the mean over each position's rows, its log."""
    size = math.isqrt(logits.shape[1] - 1)
    logits = features.moves_to_board(np.asarray(logits, np.float32), ks, size).reshape(batch, -1, logits.shape[1])
    if legal is not None:
        logits = np.where(legal[:, None, :], logits, np.float32(-np.inf))
    top = logits.max(axis=2, keepdims=True)
    logp = logits - (top + np.log(np.exp(logits - top).sum(axis=2, keepdims=True)))
    if logp.shape[1] == 1:
        return logp[:, 0]
    with np.errstate(divide="ignore"):  # log(0) of the illegal moves is their -inf
        return np.log(np.exp(logp).mean(axis=1))


def policy(run: Runner, planes: np.ndarray, ks: np.ndarray, legal: np.ndarray | None = None) -> np.ndarray:
    """:func:`log_policy` of a policy net's :func:`forward` (its first output) on ``planes`` through ``ks``."""
    return log_policy(forward(run, planes, ks)[0], ks, len(planes), legal)
