"""The core install: the GTP engine and the Python API run with none of the extras importable, and
``gogame-train`` says in one line which extra it needs.

Each test runs a fresh interpreter whose ``sitecustomize`` puts a meta path finder first that refuses every
package of the ``[train]``, ``[plot]`` and ``[demos]`` extras, as on a machine with only
``pip install gogame-engine``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The top-level import names of the extras' packages (pyproject.toml).
EXTRAS = ("tqdm", "matplotlib", "sklearn", "skimage", "scipy", "PIL", "fontTools")
TIMEOUT = 900  # seconds: the first run in a fresh checkout compiles the numba kernels

SITECUSTOMIZE = f'''
import sys

class _NoExtras:
    """Refuses the optional packages, as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by tests/test_install.py)", name=name)
        return None

sys.meta_path.insert(0, _NoExtras())
'''

VERTEX = re.compile(r"^= ([A-HJ-T](1[0-9]|[1-9])|pass|resign)$", re.IGNORECASE)


@pytest.fixture()
def core_env(tmp_path: Path) -> dict[str, str]:
    """The environment of an interpreter that cannot import the extras."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]), PYTHONUNBUFFERED="1")


def run_python(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, input=stdin, capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_the_extras_are_blocked(core_env):
    proc = run_python(core_env, "-c", "import tqdm")
    assert proc.returncode != 0
    assert "No module named 'tqdm' (blocked by tests/test_install.py)" in proc.stderr


def test_every_engine_module_imports_without_extras(core_env):
    script = ("import importlib, pkgutil, gogame, gtp\n"
              "for package in (gogame, gtp):\n"
              "    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
              "        importlib.import_module(module.name)\n"
              "        print(module.name)\n")
    proc = run_python(core_env, "-c", script)
    assert proc.returncode == 0, proc.stderr
    assert {"gogame.api", "gogame.mcts", "gtp.engine", "gtp.session", "gtp.__main__"} <= set(proc.stdout.split())


@pytest.mark.parametrize("command", [["--help"], ["sl", "data", "--out", "run"], ["selfplay", "--help"]])
def test_gogame_train_without_the_train_extra_names_it_in_one_line(core_env, command):
    proc = run_python(core_env, "-m", "training.cli", *command)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert 'pip install "gogame-engine[train]"' in proc.stderr and "tqdm" in proc.stderr


def test_gtp_help_without_extras(core_env):
    proc = run_python(core_env, "-m", "gtp", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--visits" in proc.stdout


def test_gtp_session_without_extras(core_env):
    proc = run_python(core_env, "-m", "gtp", "--size", "9", "--visits", "8", "--seed", "1",
                      stdin="boardsize 9\nclear_board\ngenmove b\nquit\n")
    assert proc.returncode == 0, proc.stderr
    replies = [r.strip() for r in proc.stdout.split("\n\n") if r.strip()]
    assert len(replies) == 4, proc.stdout
    assert replies[0] == "=" and replies[1] == "=" and replies[3] == "=", replies
    assert VERTEX.match(replies[2]), replies[2]


API_SCRIPT = f"""
import sys
import gogame

engine = gogame.Engine.load(size=9, visits=8, seed=1)
board = gogame.Board(9, komi=7.5)
board.play("E5")
evaluation = engine.evaluate(board)
analysis = engine.analyze(board)
move = engine.genmove(board)
svg = gogame.render(board, sys.argv[1], heatmap=evaluation.moves)
try:
    gogame.render(board, sys.argv[2])
except ImportError as e:
    print("png:", e)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {EXTRAS!r})
print("evaluate:", round(float(evaluation.moves.sum()), 6))
print("analyze:", analysis.visits >= 8, analysis.move)
print("genmove:", move)
print("extras:", loaded)
"""


def test_api_without_extras(core_env, tmp_path):
    svg, png = tmp_path / "board.svg", tmp_path / "board.png"
    proc = run_python(core_env, "-c", API_SCRIPT, str(svg), str(png))
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert lines["evaluate"] == "1.0"
    assert lines["analyze"].startswith("True ")
    assert VERTEX.match("= " + lines["genmove"]), lines["genmove"]
    assert lines["extras"] == "[]"
    assert svg.read_text(encoding="utf-8").startswith("<svg ")
    # PNG needs the [plot] extra: a clear error naming it, and no file.
    assert "pip install gogame-engine[plot]" in lines["png"]
    assert "matplotlib" in lines["png"]
    assert not png.exists()
