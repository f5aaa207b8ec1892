"""Checkpoint files: atomic writes, safe loads, one format marker.

Every file the project writes with :func:`save_checkpoint` is a ``torch.save``
dict with three header keys next to the caller's own:

=========  ==================================================================
key        meaning
=========  ==================================================================
format     always ``"gogame-checkpoint"``: tells our files from anyone else's
version    ``int``, :data:`VERSION`; a newer file than the code is rejected
kind       ``str`` chosen by the writer: ``"policy"`` or ``"value"`` for
           :func:`gogame.nets.save`, ``"trainer"`` for training checkpoints
=========  ==================================================================

A checkpoint is untrusted input (it may come from a download or a colleague),
so :func:`load_checkpoint` always unpickles with ``weights_only=True``: only
tensors and plain data (dict, list, tuple, str, int, float, bool, None) can be
rebuilt and no code in the file is ever run. :func:`save_checkpoint` checks the
payload against that same list before writing, so whatever we save we can load.
This module lives in :mod:`gogame` (not :mod:`training`) because the shipped
engine must load weights without the training package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from gogame.atomic import write_atomically

FORMAT = "gogame-checkpoint"
VERSION = 1
# Prefixes that wrappers add to state-dict keys: DistributedDataParallel wraps
# the model as ``.module``, torch.compile as ``._orig_mod``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_PLAIN_TYPES = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, foreign or of the wrong kind."""


def check_weights_only_safe(obj: Any, where: str = "payload") -> None:
    """Raise TypeError unless ``obj`` can be loaded back with ``weights_only=True``.

    Allowed: tensors, and dict / list / tuple / str / int / float / bool / None,
    nested. Scalars must be exactly these Python types: a ``numpy.float64`` is a
    ``float`` subclass but pickles as a numpy object, which the safe loader
    refuses. ``where`` names the position in messages (``payload['meta']``).
    """
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN_TYPES:
        return
    if isinstance(obj, dict):  # OrderedDict (state dicts) included
        for key, value in obj.items():
            check_weights_only_safe(key, f"{where} key")
            check_weights_only_safe(value, f"{where}[{key!r}]")
        return
    if type(obj) in (list, tuple):
        for i, value in enumerate(obj):
            check_weights_only_safe(value, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; checkpoints hold only "
        "tensors, dict, list, tuple, str, int, float, bool and None"
    )


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` (which must have a str ``"kind"``) to ``path`` atomically.

    The format marker and version are added. The bytes go to a temporary file in
    the same folder, are fsynced, and the file is renamed over ``path`` with
    ``os.replace``: a crash or kill at any moment leaves either the old file or
    the new one, never a half-written one, and no temporary file behind (unless
    the process dies between creating and renaming it). Missing parent folders
    are created. Raises TypeError (before touching the disk) if the payload
    holds anything :func:`load_checkpoint` could not load back.
    """
    if not isinstance(payload.get("kind"), str):
        raise TypeError("a checkpoint payload needs a str 'kind'")
    full = {"format": FORMAT, "version": VERSION, **payload}
    check_weights_only_safe(full)

    write_atomically(path, lambda f: torch.save(full, f))


def load_checkpoint(
    path: str | os.PathLike, expect_kind: str | tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Load a file written by :func:`save_checkpoint`, on the CPU, without running code.

    ``expect_kind`` is a kind or a tuple of accepted kinds; None accepts any.
    Raises CheckpointError (a ValueError) if the file is missing or unreadable,
    is corrupt or truncated, holds anything but tensors and plain data (for
    example a pickled class: it is refused, never executed), lacks our format
    marker, has a version newer than :data:`VERSION`, or is of another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to parse untrusted bytes means "not loadable"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt, truncated, or holds objects other "
            f"than tensors and plain data): {reason}"
        ) from None

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gogame checkpoint (no {FORMAT!r} format marker)")
    version = payload.get("version")
    if type(version) is not int or not 1 <= version <= VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {version!r}; this code reads versions 1 to {VERSION}"
        )
    kind = payload.get("kind")
    accepted = (expect_kind,) if isinstance(expect_kind, str) else expect_kind
    if accepted is not None and kind not in accepted:
        wanted = " or ".join(repr(k) for k in accepted)
        raise CheckpointError(f"{path} is a {kind!r} checkpoint, expected {wanted}")
    return payload


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Remove DDP (``module.``) and torch.compile (``_orig_mod.``) key prefixes.

    Prefixes are removed repeatedly and in any order, so a compiled DDP model
    (``module._orig_mod.conv.weight``) maps to ``conv.weight`` too. The one place
    in the project that does this: every loader calls it.
    """
    clean = {}
    for key, value in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    stripped = True
        clean[key] = value
    return clean
