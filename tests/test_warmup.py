"""The search's kernels compiled ahead in a second process (gogame.warmup), and the GTP warm-up that uses it."""

import os
import subprocess
import sys
from pathlib import Path

from gogame import warmup
from gtp.session import EnginePlayer

REPO = Path(__file__).resolve().parents[1]


def test_search_cached_tells_an_empty_cache_from_one_the_search_filled(tmp_path):
    empty = subprocess.run([sys.executable, "-c", "from gogame import warmup; print(warmup.search_cached())"],
                           env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(REPO)), cwd=REPO,
                           capture_output=True, text=True, timeout=120, check=True)
    assert empty.stdout.strip() == "False"
    warmup.compile_search(9)  # compiles or loads the search's kernels, through this process's cache
    assert warmup.search_cached()


class FakeCompiler:
    """What warmup.start returns, as far as the warm-up uses it."""

    def __init__(self, returncode: int, errors: str = "") -> None:
        self.returncode = returncode
        self.errors = errors
        self.waited = False

    def communicate(self):
        self.waited = True
        return "", self.errors


def warm_up_with(monkeypatch, cached: bool, compiler: FakeCompiler) -> list[tuple[int, bool]]:
    """Run a player's warm-up on 9x9 with ``search_cached`` answering ``cached``; the arguments of each
    ``warmup.start`` call."""
    started = []
    monkeypatch.setattr(warmup, "search_cached", lambda: cached)
    monkeypatch.setattr(warmup, "start", lambda size, rollout=True: started.append((size, rollout)) or compiler)
    player = EnginePlayer(None, visits=16, seed=1)
    player.prepare(9)
    assert player._search_ready.is_set() and player._policy_ready.is_set()
    return started


def test_the_warm_up_compiles_the_search_in_a_second_process_only_when_the_cache_lacks_it(monkeypatch):
    compiler = FakeCompiler(0)
    assert warm_up_with(monkeypatch, True, compiler) == [] and not compiler.waited
    assert warm_up_with(monkeypatch, False, compiler) == [(9, True)] and compiler.waited


def test_a_failed_second_process_is_reported_in_one_line_and_the_search_compiles_here(monkeypatch, capsys):
    compiler = FakeCompiler(1, "Traceback (most recent call last):\n  ...\nMemoryError: out of memory\n")
    warm_up_with(monkeypatch, False, compiler)
    err = capsys.readouterr().err
    assert "compiling the search in a second process failed (MemoryError: out of memory); compiling it here" in err
    assert "the search is ready" in err
