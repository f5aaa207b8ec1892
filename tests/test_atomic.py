"""write_atomically: the old content or the new, never half a file, no temporary left behind."""

from __future__ import annotations

import stat

import pytest

from gogame.atomic import write_atomically


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "file.bin"
    write_atomically(path, lambda f: f.write(b"first"))
    assert path.read_bytes() == b"first"
    write_atomically(path, lambda f: f.write(b"second"))
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]


def test_failure_keeps_the_old_content_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_the_file_is_readable_by_others(tmp_path):
    path = tmp_path / "picture.png"
    write_atomically(path, lambda f: f.write(b"png"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
