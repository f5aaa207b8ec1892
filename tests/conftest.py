"""Shared test setup: exported ONNX models go to a cache folder of this test session, not the user's cache; one
torch thread for the modules that ask for it."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def onnx_cache_of_the_session(tmp_path_factory):
    """XDG_CACHE_HOME (read by :func:`gogame.inference.default_cache_dir`, inherited by engine subprocesses)."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny batches on a shared CPU: intra-op threads only wait for each other (restored afterwards). A module
    asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
