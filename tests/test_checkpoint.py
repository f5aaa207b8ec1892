"""Tests for gogame.checkpoint: atomic writes, safe loads, format marker, prefix stripping."""

from __future__ import annotations

import pathlib
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gogame import checkpoint
from gogame.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    check_weights_only_safe,
    load_checkpoint,
    save_checkpoint,
    strip_wrapper_prefixes,
)


def payload(**extra):
    return {"kind": "test", "weights": torch.arange(6.0).reshape(2, 3), "step": 7,
            "config": {"lr": 0.1, "name": "x", "flags": [True, None], "pair": (1, 2.5)}, **extra}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- writing -----------------------------------------------------------------


def test_round_trip_adds_format_marker(tmp_path):
    path = tmp_path / "sub" / "a.pt"  # missing parent folders are created
    save_checkpoint(path, payload())
    loaded = load_checkpoint(path, expect_kind="test")
    assert loaded["format"] == FORMAT and loaded["version"] == VERSION
    assert torch.equal(loaded["weights"], torch.arange(6.0).reshape(2, 3))
    assert loaded["config"] == {"lr": 0.1, "name": "x", "flags": [True, None], "pair": (1, 2.5)}
    assert leftovers(path.parent) == []


def test_overwrite_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a.pt"
    for step in range(3):
        save_checkpoint(path, payload(step=step))
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_interrupted_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.pt"
    save_checkpoint(path, payload(step=1))

    def dies_halfway(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a kill arriving mid-write

    monkeypatch.setattr(checkpoint.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, payload(step=2))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert leftovers(tmp_path) == []


def test_failed_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.pt"
    save_checkpoint(path, payload(step=1))

    def no_replace(src, dst):
        raise OSError("disk went away")

    monkeypatch.setattr(checkpoint.os, "replace", no_replace)
    with pytest.raises(OSError):
        save_checkpoint(path, payload(step=2))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert leftovers(tmp_path) == []


def test_save_needs_a_kind(tmp_path):
    with pytest.raises(TypeError, match="kind"):
        save_checkpoint(tmp_path / "a.pt", {"weights": torch.zeros(1)})


@pytest.mark.parametrize("bad", [np.float64(1.0), np.zeros(2), Path("x"), object(), {1, 2}])
def test_unloadable_values_are_refused_before_writing(tmp_path, bad):
    with pytest.raises(TypeError, match=r"payload\['meta'\]\['x'\]"):
        save_checkpoint(tmp_path / "a.pt", payload(meta={"x": bad}))
    assert list(tmp_path.iterdir()) == []


def test_check_weights_only_safe_accepts_state_dicts():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    check_weights_only_safe({"model": model.state_dict(), "optimizer": opt.state_dict()})


# -- loading -----------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize("content", [b"", b"hello world", b"PK\x03\x04garbage"])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "a.pt"
    save_checkpoint(path, payload(big=torch.zeros(10_000)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


class _Planted:
    """Unpickling this calls Path.touch(marker): a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "kind": "test", "x": _Planted(marker)}, path)

    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    # the file really is live: its pickle calls Path.touch when unpickled (read, never run)
    with zipfile.ZipFile(path) as z:
        pickle_bytes = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    strings = [arg for op, arg, _ in pickletools.genops(pickle_bytes) if isinstance(arg, str)]
    assert "touch" in strings and any(op.name == "REDUCE" for op, _, _ in pickletools.genops(pickle_bytes))


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not a gogame checkpoint"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a gogame checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("version", [VERSION + 1, 0, "1", None])
def test_unsupported_version(tmp_path, version):
    path = tmp_path / "a.pt"
    torch.save({"format": FORMAT, "version": version, "kind": "test"}, path)
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(path)


def test_wrong_kind(tmp_path):
    path = tmp_path / "a.pt"
    save_checkpoint(path, payload())
    with pytest.raises(CheckpointError, match="is a 'test' checkpoint, expected 'policy'"):
        load_checkpoint(path, expect_kind="policy")
    with pytest.raises(CheckpointError, match="expected 'policy' or 'value'"):
        load_checkpoint(path, expect_kind=("policy", "value"))
    assert load_checkpoint(path, expect_kind=("other", "test"))["kind"] == "test"


# -- state-dict prefixes -----------------------------------------------------


def test_strip_wrapper_prefixes():
    w = torch.zeros(1)
    state = {
        "conv.weight": w,
        "module.conv.bias": w,  # DDP
        "_orig_mod.fc.weight": w,  # torch.compile
        "module._orig_mod.fc.bias": w,  # compiled DDP model
        "_orig_mod.module.head.weight": w,  # DDP inside compile
        "head.module.weight": w,  # "module." inside a name is not a prefix
    }
    assert list(strip_wrapper_prefixes(state)) == [
        "conv.weight", "conv.bias", "fc.weight", "fc.bias", "head.weight", "head.module.weight"]
