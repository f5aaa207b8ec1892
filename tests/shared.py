"""The game-record archives some tests read from ``../shared/data`` (next to the clone; see README's Data).

A clone without them skips those tests with the reason in the summary (pytest runs with ``-rs``, see
pyproject.toml), never silently; ``GOGAME_REQUIRE_DATA=1`` makes the missing archive a failure instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_archive(name: str) -> Path:
    """``../shared/data/<name>``, or the calling test skipped (failed under GOGAME_REQUIRE_DATA=1) with the path."""
    path = SHARED_DATA / name
    if not path.exists():
        message = f"needs {path} (the SGF archives of ../shared/data, see README), which this clone lacks"
        if os.environ.get("GOGAME_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path
