"""The features' and the search's kernels compiled ahead in a second process (gogame.warmup), and the GTP warm-up
that uses it."""

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

from gogame import warmup
from gtp.session import EnginePlayer

REPO = Path(__file__).resolve().parents[1]


def test_the_second_process_fills_an_empty_cache_with_one_signature_per_kernel(tmp_path):
    """``python -m gogame.warmup`` on an empty cache: the features' kernels first (it says so), then the search's,
    each compiled for one signature (a constant or an int32 argument would make numba compile a kernel again,
    seconds of the first start); ``search_cached`` tells the cache before from the cache after."""
    script = """
import numba
from gogame import fastboard, features, mcts, rollout, warmup
print(warmup.search_cached())
warmup.main(["9"])
print(warmup.search_cached())
print(sorted(f"{module.__name__}.{name}" for module in (fastboard, features, mcts, rollout)
             for name, kernel in vars(module).items()
             if isinstance(kernel, numba.core.registry.CPUDispatcher) and len(kernel.signatures) > 1))
"""
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path),
                         PYTHONPATH=str(REPO)), cwd=REPO, capture_output=True, text=True, timeout=900, check=True)
    assert out.stdout.splitlines() == ["False", warmup.FEATURES_DONE, "True", "[]"]


def test_compile_features_caches_the_kernels_of_the_engines_planes(tmp_path):
    """What the second process compiles first is what the engine's planes call: a process computing them from
    that cache compiles no features kernel."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", "from gogame import warmup; warmup.compile_features(9)"], env=env,
                   cwd=REPO, timeout=600, check=True)
    script = """
import numba.core.event as event
from gogame import Board, features
compiled = []
class Compiled(event.Listener):
    def on_start(self, e):
        compiled.append(e.data["dispatcher"].py_func.__module__)
    def on_end(self, e):
        pass
event.register("numba:compile", Compiled())
board = Board(9)
board.play((4, 4))
features.planes(board, "alphago49")
print(sorted(set(compiled)))
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=600, check=True).stdout
    assert "gogame.features" not in out and "gogame.fastboard" in out  # the board's play compiled, nothing else


def test_the_second_process_says_when_the_features_are_cached():
    assert warmup.wait_for_features(FakeCompiler(0))
    assert not warmup.wait_for_features(FakeCompiler(1, said=""))  # it ended first


class FakeCompiler:
    """What warmup.start returns, as far as the warm-up uses it: ``said`` is its stdout."""

    def __init__(self, returncode: int, errors: str = "", said: str = warmup.FEATURES_DONE + "\n") -> None:
        self.returncode = returncode
        self.errors = errors
        self.stdout = io.StringIO(said)
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


def test_the_policy_net_is_ready_once_the_second_process_has_the_features(monkeypatch):
    player = EnginePlayer(None, visits=16, seed=1)
    ready_at_the_wait = []
    monkeypatch.setattr(warmup, "search_cached", lambda: False)
    monkeypatch.setattr(warmup, "start", lambda size, rollout=True: FakeCompiler(0))
    monkeypatch.setattr(warmup, "wait_for_features",
                        lambda compiler: ready_at_the_wait.append(player._policy_ready.is_set()) or True)
    player._policy_ready.clear()
    player.prepare(9)
    assert ready_at_the_wait == [False] and player._policy_ready.is_set()


def prior_runner(engine):
    """The runner of the net that gives ``engine``'s priors (a policy net or a dual net)."""
    return engine.evaluator._runners[engine.evaluator.policy_net.kind]


def test_the_networks_are_made_ready_by_the_background_warm_up_not_before_the_first_reply(monkeypatch):
    """The onnx backend's export (seconds on an empty cache) waits for the warm-up thread."""
    sessions_at_start = []
    started = threading.Event()

    def warm_up(player, size):
        sessions_at_start.append(dict(prior_runner(player.engine(size))._sessions))
        started.set()

    player = EnginePlayer(None, visits=16, seed=1, backend="onnx")
    monkeypatch.setattr(EnginePlayer, "_warm_up", warm_up)
    player.prepare(9, background=True)
    assert started.wait(60) and sessions_at_start == [{}]
    monkeypatch.undo()
    monkeypatch.setattr(warmup, "search_cached", lambda: True)
    player._warm_up(9)
    assert prior_runner(player.engine(9))._sessions
