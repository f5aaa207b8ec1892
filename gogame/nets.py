"""AlphaGo's policy and value networks (Silver et al. 2016), and their weight files.

Both networks read feature planes ``(batch, in_planes, size, size)`` in point
order: ``planes[b, c, row, col]`` with row 0 the bottom row (see
:mod:`gogame.coords`). Plane values may be floats or integers (uint8 planes
are converted). The feature set itself is :mod:`gogame.features`' business;
a network only records its name (``"alphago48"``, ``"alphago49"``, ...).

``layers`` counts convolution layers as the paper does. With ``L`` layers and
``k`` filters:

=========  ====================================================================
network    layers
=========  ====================================================================
policy     5x5 conv (k) + ReLU; L-2 times 3x3 conv (k) + ReLU; 1x1 conv to one
           plane plus a learned bias per point -> ``size*size`` logits; a pass
           logit (below). Output ``(batch, size*size + 1)``: flat index
           ``row*size + col`` (:func:`gogame.coords.to_flat`), pass last.
value      the same L-1 hidden conv layers (the paper's layers 2-11 "identical
           to the policy network" plus its "additional" layer 12: same shapes,
           separate weights); 1x1 conv to one plane + ReLU; fully connected 256
           + ReLU; fully connected 1 + tanh. Output ``(batch,)`` in [-1, 1]: the
           expected result for the player to move. Optionally (``ownership_head``,
           not in AlphaGo) a second 1x1 conv from the last hidden layer gives
           per-point logits of the final area being the mover's.
=========  ====================================================================

The ownership head is KataGo's auxiliary target (Wu 2019): an outcome is one
number a game, its final area one label per point, so training on both
teaches the shared trunk to count far sooner than the outcome alone does.

The pass logit is our addition: AlphaGo's policy had no pass output. It comes
from the global average of the last hidden layer through a linear layer, so it
sees the whole board at the cost of k+1 parameters and works at every size.

Presets (:data:`PRESETS`): ``tiny`` 3x16 (tests), ``small`` 6x64, ``medium``
12x128, ``alphago`` 13x192 (the paper's networks). Every net works on any
board from 2x2 to 25x25 (though the weights of a trained one only fit its size:
the per-point bias and the value net's dense layer are sized by the board).

The *dual* network (:class:`DualNet`, kind ``"dual"``; AlphaGo Zero's one trunk with both heads, plus KataGo's
ownership head and global pooling) is fully convolutional: no layer is sized by the board, so the same weights
run on any board from 2x2 to 25x25 and the input's spatial size decides.

=========  ====================================================================
part       layers
=========  ====================================================================
trunk      5x5 conv (C); B residual blocks, each ReLU, 3x3 conv (C), ReLU, 3x3
           conv (C) added to the block's input times a learned scale that
           starts at 0; in every third block (1, 4, 7, ...) a global pooling
           branch biases the second conv's input by channel; a final ReLU.
policy     1x1 conv (32) biased by a linear map of the trunk's pooled features,
           ReLU, 1x1 conv to one plane, no bias: ``N*N`` logits; the pass logit
           is a linear map of the same pooled features. ``(B, N*N + 1)``.
value      1x1 conv (32), ReLU, pooled, fully connected 64 + ReLU, fully
           connected 1 + tanh: ``(B,)`` in [-1, 1] for the player to move.
ownership  1x1 conv to one plane: ``(B, N*N)`` logits that the point ends as
           the mover's area.
=========  ====================================================================

*Pooled* (:func:`global_pool`) is KataGo's: each channel's mean over the points, that mean times ``(N - 14) / 10``
(so the net knows the board's size), and its maximum. The trunk has no normalisation layer: a residual branch
whose scale starts at 0 (SkipInit, De & Smith 2020) trains a deep stack without BatchNorm, and the net then
computes the same function in training and in play, whatever the batch and, above all, whatever the board size
(BatchNorm's running statistics are means over the points of the training boards, which shift on another size).
Presets (:data:`DUAL_PRESETS`) are named by blocks and channels: ``b2c16`` (tests), ``b4c64``, ``b6c96`` (the
size of KataGo's 6-block net), ``b10c128``.

Files: :func:`save` and :func:`load`, through :mod:`gogame.checkpoint`. A
network's description (:func:`describe`: kind, preset, layers, filters,
in_planes, board_size, features, provenance; for a dual net blocks,
channels and the board sizes it was trained on instead of layers, filters
and board_size) sits in the payload's ``"meta"``,
its weights in ``"model"``; the trainer's checkpoints use the same two keys when
given ``extra_meta=describe(net, ...)``, so :func:`load` reads both.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gogame.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, strip_wrapper_prefixes
from gogame.coords import check_size

PRESETS: dict[str, tuple[int, int]] = {  # name -> (layers, filters)
    "tiny": (3, 16),
    "small": (6, 64),
    "medium": (12, 128),
    "alphago": (13, 192),
}
DUAL_PRESETS: dict[str, tuple[int, int]] = {  # name -> (blocks, channels)
    "b2c16": (2, 16),
    "b4c64": (4, 64),
    "b6c96": (6, 96),
    "b10c128": (10, 128),
}
KINDS = ("policy", "value", "dual")
POOL_EVERY = 3  # blocks 1, 4, 7, ... of a dual trunk have a global pooling branch
HEAD_CHANNELS = 32  # the dual net's policy and value heads
DUAL_VALUE_HIDDEN = 64
VALUE_HIDDEN = 256  # units of the value net's fully connected layer, as in the paper
TRAINER_KIND = "trainer"  # checkpoint kind of training.trainer's last.pt / best.pt


def _hidden_convs(in_planes: int, layers: int, filters: int) -> nn.Sequential:
    """The hidden stack both nets share in shape: 5x5 conv, then layers-2 3x3 convs, each + ReLU.

    'Same' padding keeps every plane ``size x size`` (the paper zero-pads to 23x23, then 21x21).
    He initialisation: with PyTorch's default the signal shrinks about fivefold
    per layer, so a deep plain stack starts out blind to its input (a value net
    then learns only the mean outcome).
    """
    stack: list[nn.Module] = [nn.Conv2d(in_planes, filters, 5, padding=2), nn.ReLU()]
    for _ in range(layers - 2):
        stack += [nn.Conv2d(filters, filters, 3, padding=1), nn.ReLU()]
    for layer in stack:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*stack)


def _check_arch(in_planes: int, board_size: int, layers: int, filters: int) -> None:
    check_size(board_size)
    if in_planes < 1 or filters < 1:
        raise ValueError(f"in_planes and filters must be positive, not {in_planes} and {filters}")
    if layers < 2:
        raise ValueError(f"a network needs at least 2 layers (5x5 and 1x1), not {layers}")


class _GoNet(nn.Module):
    """What both networks share: architecture bookkeeping and input conversion."""

    kind: str

    def __init__(self, in_planes: int, board_size: int, layers: int, filters: int) -> None:
        super().__init__()
        _check_arch(in_planes, board_size, layers, filters)
        self.in_planes, self.board_size, self.layers, self.filters = in_planes, board_size, layers, filters
        # Description of the network; load() adds the file's features and provenance.
        self.meta: dict[str, Any] = describe(self)

    def _planes(self, planes: torch.Tensor) -> torch.Tensor:
        """Check the input shape; integer planes become floats."""
        if planes.dim() != 4 or planes.shape[1:] != (self.in_planes, self.board_size, self.board_size):
            raise ValueError(f"expected planes of shape (batch, {self.in_planes}, {self.board_size}, "
                             f"{self.board_size}), got {tuple(planes.shape)}")
        return planes if planes.is_floating_point() else planes.float()


class PolicyNet(_GoNet):
    """AlphaGo's SL/RL policy network, plus a pass logit. ``forward`` gives logits, not probabilities."""

    kind = "policy"

    def __init__(self, in_planes: int, board_size: int, layers: int, filters: int) -> None:
        super().__init__(in_planes, board_size, layers, filters)
        self.hidden = _hidden_convs(in_planes, layers, filters)
        self.to_points = nn.Conv2d(filters, 1, 1, bias=False)
        # "a different bias for each position": edges and centre differ in Go
        self.point_bias = nn.Parameter(torch.zeros(board_size * board_size))
        self.to_pass = nn.Linear(filters, 1)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        """``(B, in_planes, N, N)`` -> logits ``(B, N*N + 1)``, pass last."""
        x = self.hidden(self._planes(planes))  # (B, k, N, N)
        points = self.to_points(x).flatten(1) + self.point_bias  # (B, N*N), index row*N + col
        pass_logit = self.to_pass(x.mean(dim=(2, 3)))  # (B, 1)
        return torch.cat([points, pass_logit], dim=1)  # (B, N*N + 1)


class ValueNet(_GoNet):
    """AlphaGo's value network: the expected outcome in [-1, 1] for the player to move.

    One departure: the single-plane 1x1 convolution feeds the 256-unit layer linearly, without a ReLU of its own.
    With one plane, a ReLU there can die for every input (seen at lr 1e-3 within 50 steps), and the net then
    outputs a constant; the 256-unit ReLU layer after it keeps the head non-linear.
    """

    kind = "value"

    def __init__(self, in_planes: int, board_size: int, layers: int, filters: int,
                 ownership_head: bool = False) -> None:
        self.ownership_head = ownership_head  # before describe() in the base class reads it
        super().__init__(in_planes, board_size, layers, filters)
        self.hidden = _hidden_convs(in_planes, layers, filters)
        self.to_plane = nn.Conv2d(filters, 1, 1)
        self.dense = nn.Linear(board_size * board_size, VALUE_HIDDEN)
        self.out = nn.Linear(VALUE_HIDDEN, 1)
        self.to_ownership = nn.Conv2d(filters, 1, 1) if ownership_head else None

    def forward(self, planes: torch.Tensor,
                ownership: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(B, in_planes, N, N)`` -> values ``(B,)`` in [-1, 1]; with ``ownership`` (a net with the head) also
        the ownership logits ``(B, N*N)``, flat ``row*N + col``: positive where the mover's area is likely."""
        if ownership and self.to_ownership is None:
            raise ValueError("this value net has no ownership head")
        x = self.hidden(self._planes(planes))  # (B, k, N, N)
        v = self.to_plane(x).flatten(1)  # (B, N*N), linear: see the class docstring
        v = F.relu(self.dense(v))  # (B, 256)
        value = torch.tanh(self.out(v)).squeeze(1)  # (B,)
        return (value, self.to_ownership(x).flatten(1)) if ownership else value


def value_from_policy(policy: PolicyNet, in_planes: int, ownership_head: bool = False) -> ValueNet:
    """A value net whose hidden stack starts as ``policy``'s (same layers and filters), its head fresh.

    The policy's trunk already sees liberties, ladders and shapes; a value net trained from outcomes alone
    learns those slowly, since an outcome says little about any one position. Input planes beyond the
    policy's (alphago49's colour plane) start with zero weights, so the copied trunk computes exactly what
    it did in the policy net.
    """
    if in_planes < policy.in_planes:
        raise ValueError(f"the value net needs at least the policy's {policy.in_planes} input planes, not {in_planes}")
    value = ValueNet(in_planes, policy.board_size, policy.layers, policy.filters, ownership_head)
    state = policy.hidden.state_dict()  # load_state_dict below copies: the two nets share no storage
    first = state["0.weight"]
    state["0.weight"] = torch.cat([first, first.new_zeros(first.shape[0], in_planes - first.shape[1], *first.shape[2:])], 1)
    value.hidden.load_state_dict(state)
    return value


def freeze_hidden_layers(net: PolicyNet | ValueNet, count: int) -> None:
    """Stop training the first ``count`` convolutions of ``net``'s hidden stack (their weights stay as they are)."""
    convs = [m for m in net.hidden if isinstance(m, nn.Conv2d)]
    if not 0 <= count <= len(convs):
        raise ValueError(f"the hidden stack has {len(convs)} convolutions; cannot freeze {count}")
    for conv in convs[:count]:
        conv.requires_grad_(False)


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """KataGo's global pooling: ``(B, C, N, N)`` -> ``(B, 3C)``, per channel the mean over the points, the mean
    times ``(N - 14) / 10`` (0.5 on 19x19, -0.5 on 9x9: this is how the net knows the board's size) and the
    maximum."""
    mean = x.mean(dim=(2, 3))
    return torch.cat([mean, mean * ((x.shape[-1] - 14) / 10), x.amax(dim=(2, 3))], dim=1)


def _he(module: nn.Module) -> None:
    """He initialisation of every convolution (biases 0), as :func:`_hidden_convs` explains."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class _ResidualBlock(nn.Module):
    """``x + scale * conv(relu(conv(relu(x))))``, ``scale`` a learned scalar that starts at 0 (so the block
    starts as the identity). With ``pooled``, a quarter of the first conv's channels are pooled over the board
    (:func:`global_pool`) and a linear map of them biases the other channels, by channel, before the second conv:
    the block then sees the whole board at once (KataGo's global pooling block)."""

    def __init__(self, channels: int, pooled: bool) -> None:
        super().__init__()
        self.pool_channels = max(1, channels // 4) if pooled else 0
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.to_bias = nn.Linear(3 * self.pool_channels, channels - self.pool_channels) if pooled else None
        self.conv2 = nn.Conv2d(channels - self.pool_channels, channels, 3, padding=1)
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(x))
        if self.to_bias is not None:
            k = self.pool_channels
            h = h[:, k:] + self.to_bias(global_pool(F.relu(h[:, :k])))[:, :, None, None]
        return x + self.scale * self.conv2(F.relu(h))


class DualNet(nn.Module):
    """One residual trunk, three heads: move logits, value, ownership logits (see the module docstring).

    ``board_sizes`` records the sizes the net was trained on (for :func:`describe`); the net itself runs on any.
    ``forward`` takes planes ``(B, in_planes, N, N)`` for any ``N`` in 2..25 and gives ``(policy_logits (B, N*N+1),
    value (B,), ownership_logits (B, N*N))``, flat ``row*N + col``, pass last.
    """

    kind = "dual"

    def __init__(self, in_planes: int, blocks: int, channels: int, board_sizes: tuple[int, ...] = (19,)) -> None:
        super().__init__()
        if in_planes < 1 or blocks < 1 or channels < 4:
            raise ValueError(f"a dual net needs positive in_planes and blocks and at least 4 channels, not "
                             f"{in_planes}, {blocks} and {channels}")
        self.in_planes, self.blocks, self.channels = in_planes, blocks, channels
        self.board_sizes = tuple(check_size(int(n)) for n in board_sizes)
        self.stem = nn.Conv2d(in_planes, channels, 5, padding=2)
        self.trunk = nn.Sequential(*(_ResidualBlock(channels, i % POOL_EVERY == 1) for i in range(blocks)))
        self.policy_conv = nn.Conv2d(channels, HEAD_CHANNELS, 1)
        self.policy_bias = nn.Linear(3 * channels, HEAD_CHANNELS)
        self.to_points = nn.Conv2d(HEAD_CHANNELS, 1, 1, bias=False)  # no per-point bias: any size
        self.to_pass = nn.Linear(3 * channels, 1)
        self.value_conv = nn.Conv2d(channels, HEAD_CHANNELS, 1)
        self.value_hidden = nn.Linear(3 * HEAD_CHANNELS, DUAL_VALUE_HIDDEN)
        self.value_out = nn.Linear(DUAL_VALUE_HIDDEN, 1)
        self.to_ownership = nn.Conv2d(channels, 1, 1)
        _he(self)
        self.meta: dict[str, Any] = describe(self)

    def forward(self, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if planes.dim() != 4 or planes.shape[1] != self.in_planes or planes.shape[2] != planes.shape[3]:
            raise ValueError(f"expected planes of shape (batch, {self.in_planes}, N, N), got {tuple(planes.shape)}")
        check_size(int(planes.shape[-1]))  # an int while traced for ONNX export too
        x = planes if planes.is_floating_point() else planes.float()
        x = F.relu(self.trunk(self.stem(x)))  # (B, C, N, N)
        pooled = global_pool(x)  # (B, 3C)
        p = F.relu(self.policy_conv(x) + self.policy_bias(pooled)[:, :, None, None])
        policy = torch.cat([self.to_points(p).flatten(1), self.to_pass(pooled)], dim=1)  # (B, N*N + 1)
        v = global_pool(F.relu(self.value_conv(x)))
        value = torch.tanh(self.value_out(F.relu(self.value_hidden(v)))).squeeze(1)  # (B,)
        return policy, value, self.to_ownership(x).flatten(1)


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def default_weights(kind: str, board_size: int) -> Path:
    """The shipped weights file of a ``"policy"`` or ``"value"`` net for a board size.

    Raises FileNotFoundError, naming the sizes that do ship, if there is none.
    """
    path = WEIGHTS_DIR / f"{kind}{board_size}.pt"
    if not path.exists():
        shipped = sorted(p.stem for p in WEIGHTS_DIR.glob(f"{kind}*.pt"))
        raise FileNotFoundError(f"no shipped {kind} net for {board_size}x{board_size}; shipped: {', '.join(shipped) or 'none'}")
    return path


def engine_weights(board_size: int, folder: Path | None = None) -> dict[str, Path]:
    """The weights in ``folder`` (default: the shipped ones) that the engine plays ``board_size`` with.

    ``{"dual": dual{size}.pt}`` if there is one; else ``{"policy": policy{size}.pt}``, with ``"value":
    value{size}.pt`` beside it if there is one; else ``{"dual": dual.pt}``, the general dual net that plays every
    size (a net specialised for a size, shipped only where it measures stronger, comes first). Raises
    FileNotFoundError, naming the files there are, if none serves the size.
    """
    check_size(board_size)
    folder = WEIGHTS_DIR if folder is None else folder
    if (folder / f"dual{board_size}.pt").exists():
        return {"dual": folder / f"dual{board_size}.pt"}
    if (folder / f"policy{board_size}.pt").exists():
        value = folder / f"value{board_size}.pt"
        return {"policy": folder / f"policy{board_size}.pt", **({"value": value} if value.exists() else {})}
    if (folder / "dual.pt").exists():
        return {"dual": folder / "dual.pt"}
    there = sorted(p.name for p in folder.glob("*.pt"))
    raise FileNotFoundError(f"no net for {board_size}x{board_size} in {folder}: a dual{board_size}.pt, "
                            f"policy{board_size}.pt or dual.pt; there are: {', '.join(there) or 'none'}")


def build(kind: str, in_planes: int, board_size: int, preset: str | None = "small", *,
          layers: int | None = None, filters: int | None = None, ownership_head: bool = False,
          blocks: int | None = None, channels: int | None = None) -> PolicyNet | ValueNet | DualNet:
    """A new ``"policy"``, ``"value"`` or ``"dual"`` net from a preset, or from explicit sizes.

    Policy and value nets: ``layers`` / ``filters`` override the preset's (:data:`PRESETS`); with
    ``preset=None`` both are required. A dual net: ``preset`` from :data:`DUAL_PRESETS`, or ``blocks`` and
    ``channels``; ``board_size`` is recorded as the size it is trained on (it runs on any). ``ownership_head``
    gives a value net the ownership output. Raises ValueError for an unknown kind or preset, a bad size, or a
    policy net with an ownership head.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if ownership_head and kind != "value":
        raise ValueError("only a value net has an ownership head (a dual net always has one)")
    table = DUAL_PRESETS if kind == "dual" else PRESETS
    if preset is not None and preset not in table:
        raise ValueError(f"unknown {kind} preset {preset!r}; presets: {', '.join(table)}")
    first, second = table[preset] if preset is not None else (None, None)
    if kind == "dual":
        blocks = blocks if blocks is not None else first
        channels = channels if channels is not None else second
        if blocks is None or channels is None:
            raise ValueError("give a preset, or both blocks and channels")
        check_size(board_size)
        return DualNet(in_planes, blocks, channels, (board_size,))
    layers = layers if layers is not None else first
    filters = filters if filters is not None else second
    if layers is None or filters is None:
        raise ValueError("give a preset, or both layers and filters")
    if kind == "policy":
        return PolicyNet(in_planes, board_size, layers, filters)
    return ValueNet(in_planes, board_size, layers, filters, ownership_head)


def describe(net: PolicyNet | ValueNet | DualNet, *, features: str | None = None,
             provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The description :func:`load` rebuilds ``net`` from: pass it as the trainer's ``extra_meta``.

    ``features`` names the input feature set; ``provenance`` is free plain data
    (command, data, time, hardware, metrics, ...). Either defaults to what
    ``net.meta`` already holds (a loaded net keeps its description). A dual net
    records ``blocks``, ``channels`` and ``board_sizes`` (the sizes it was
    trained on) where the others record ``layers``, ``filters`` and ``board_size``.
    """
    old = getattr(net, "meta", {})
    if net.kind == "dual":
        arch = {"preset": next((n for n, a in DUAL_PRESETS.items() if a == (net.blocks, net.channels)), None),
                "blocks": net.blocks, "channels": net.channels, "in_planes": net.in_planes,
                "board_sizes": list(net.board_sizes)}
    else:
        arch = {"preset": next((n for n, a in PRESETS.items() if a == (net.layers, net.filters)), None),
                "layers": net.layers, "filters": net.filters, "in_planes": net.in_planes,
                "board_size": net.board_size,
                **({"ownership_head": net.ownership_head} if net.kind == "value" else {})}
    return {
        "kind": net.kind,
        **arch,  # preset None for a custom architecture
        "features": features if features is not None else old.get("features"),
        "provenance": dict(provenance if provenance is not None else old.get("provenance") or {}),
        **({"search": dict(old["search"])} if "search" in old else {}),
    }


# the search settings a net file may record (gogame.mcts.SearchConfig fields)
SEARCH_OPTIONS = ("lambda_", "c_puct", "fpu_reduction", "rollouts_from")


def search_defaults(search: Any, source: str = "search") -> dict[str, float]:
    """``search`` checked as the search settings measured best with a net: a mapping from names in
    :data:`SEARCH_OPTIONS` to finite numbers, at least 0 (``lambda_`` at most 1). ValueError, naming ``source``,
    otherwise."""
    if not isinstance(search, dict) or not set(search) <= set(SEARCH_OPTIONS):
        raise ValueError(f"{source} must map some of {', '.join(SEARCH_OPTIONS)} to numbers, not {search!r}")
    checked = {}
    for name, value in search.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf \
                or (name == "lambda_" and value > 1):
            bound = "in [0, 1]" if name == "lambda_" else "a finite number, at least 0"
            raise ValueError(f"{source}: {name} must be {bound}, not {value!r}")
        checked[name] = float(value)
    return checked


def save(net: PolicyNet | ValueNet | DualNet, path: str | os.PathLike, *, half: bool = False,
         features: str | None = None, provenance: dict[str, Any] | None = None,
         search: dict[str, float] | None = None) -> None:
    """Write ``net`` and its description (see :func:`describe`) to ``path`` atomically.

    ``search`` records the search settings measured best with this net (``meta["search"]``, checked by
    :func:`search_defaults`: for example ``{"lambda_": 0, "c_puct": 1.5}``), the engine's defaults for it; a
    net loaded from a file keeps the file's.

    ``half`` stores floating-point weights as fp16, halving the file (the
    ``alphago`` policy net is then about 8 MB); :func:`load` turns them back
    into fp32. Raises TypeError if ``provenance`` holds anything but plain data.
    """
    state = {k: v.detach().to("cpu", torch.float16 if half and v.is_floating_point() else v.dtype)
             for k, v in net.state_dict().items()}
    meta = describe(net, features=features, provenance=provenance)
    if search is not None:
        meta["search"] = search_defaults(search)
    save_checkpoint(path, {"kind": net.kind, "meta": meta, "model": state})


def load(path: str | os.PathLike, device: str | torch.device = "cpu",
         kind: str | tuple[str, ...] | None = None) -> PolicyNet | ValueNet | DualNet:
    """Rebuild a net from a :func:`save` file or a trainer checkpoint, in eval mode, fp32.

    The returned net's ``meta`` is the file's description. ``kind`` (``"policy"``,
    ``"value"`` or ``"dual"``, or a tuple of those accepted), if given, must match. Weights saved from a DDP or compiled
    model load too. Raises CheckpointError for a missing, corrupt or foreign
    file, a trainer checkpoint of something that is not one of these nets, a
    kind mismatch, or weights that do not fit the described architecture.
    """
    return from_payload(load_checkpoint(path, expect_kind=(*KINDS, TRAINER_KIND)), path, device, kind)


def from_payload(payload: dict[str, Any], path: str | os.PathLike, device: str | torch.device = "cpu",
                 kind: str | tuple[str, ...] | None = None) -> PolicyNet | ValueNet | DualNet:
    """:func:`load` of a checkpoint's payload already read (``path`` names it in errors): its ``meta`` and
    ``model``, as any file that holds a net's description and weights has them."""
    meta = payload.get("meta")
    dual = isinstance(meta, dict) and meta.get("kind") == "dual"
    required = ("kind", "blocks", "channels", "in_planes", "board_sizes") if dual else \
        ("kind", "layers", "filters", "in_planes", "board_size")
    if not isinstance(meta, dict) or any(key not in meta for key in required) or meta["kind"] not in KINDS:
        raise CheckpointError(f"{path} does not describe a policy, value or dual network (its 'meta' "
                              f"needs {', '.join(required)}: save with gogame.nets.save, or train "
                              "with extra_meta=gogame.nets.describe(net))")
    accepted = (kind,) if isinstance(kind, str) else kind
    if accepted is not None and meta["kind"] not in accepted:
        raise CheckpointError(f"{path} holds a {meta['kind']} network, expected a {' or '.join(accepted)} network")
    try:
        if dual:
            net = DualNet(meta["in_planes"], meta["blocks"], meta["channels"], tuple(meta["board_sizes"]))
        else:
            net = build(meta["kind"], meta["in_planes"], meta["board_size"], None, layers=meta["layers"],
                        filters=meta["filters"], ownership_head=bool(meta.get("ownership_head", False)))
        # load_state_dict copies into the fp32 parameters, so fp16 files come back as fp32
        net.load_state_dict(strip_wrapper_prefixes(payload["model"]))
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the described network: "
                              f"{str(exc).strip().splitlines()[0]}") from None
    if "search" in meta:
        try:
            search_defaults(meta["search"], f"{path}'s search settings")
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    net.meta = {**describe(net), **meta}
    return net.to(device).eval()


@functools.cache
def bf16_native(device_type: str) -> bool:
    """Whether ``device_type`` ("cuda", "cpu", ...) computes bf16 convolutions natively: CUDA with bf16
    support, or a CPU with AVX-512 BF16 or AMX (where bf16 doubles the throughput of these nets)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def autocast(device: str | torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast if ``enabled`` and :func:`bf16_native` holds for ``device``, else a no-op. Outputs may be
    bf16: callers take ``.float()`` of what they keep."""
    device_type = torch.device(device).type
    if enabled and bf16_native(device_type):
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def masked_log_softmax(logits: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over legal moves only; illegal moves get ``-inf`` (probability 0).

    ``logits`` ``(B, N*N + 1)`` or ``(N*N + 1,)``; ``legal`` a bool mask of the
    same shape (or broadcastable), True for a legal move. Every row needs at
    least one legal move (pass always is): ValueError otherwise.
    """
    legal = legal.to(torch.bool)
    if not bool(legal.expand_as(logits).any(dim=-1).all()):
        raise ValueError("a row of the legal-move mask has no legal move")
    return logits.float().masked_fill(~legal, float("-inf")).log_softmax(dim=-1)
