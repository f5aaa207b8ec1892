"""A real GUI client: Sabaki's own GTP library (@sabaki/gtp, from npm) drives ``python -m gtp``.

``tests/sabaki/drive_engine.js`` does what Sabaki does: syncs komi, size and moves with its state tracker
(undo included), asks for a move, streams ``lz-analyze`` and ``kata-analyze`` (with ownership) through a
subscriber, parses them by Sabaki's rules, and stops each analysis with the next command. The library is
installed into ``tests/sabaki/node_modules`` on first use by ``npm ci`` from the committed ``package-lock.json``
(the exact versions and their hashes). Without node the test is skipped with that reason; with node, a missing
npm or a failed install fails it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "tests" / "sabaki"


@pytest.fixture(scope="module")
def sabaki_gtp() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node:  # the one prerequisite this test skips without (reported, pytest runs with -rs)
        pytest.skip("node is not installed: the GUI-client test runs Sabaki's library (apt-get install nodejs npm)")
    assert npm, "npm is needed to install @sabaki/gtp from tests/sabaki/package-lock.json (apt-get install npm)"
    if not (CLIENT / "node_modules" / "@sabaki" / "gtp").is_dir():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"npm ci in {CLIENT} failed:\n{done.stderr}"
    return Path(node)


def test_sabaki_gtp_library_drives_the_engine(sabaki_gtp):
    engine = [sys.executable, "-m", "gtp", "--size", "9", "--visits", "32", "--seed", "1"]
    done = subprocess.run([str(sabaki_gtp), "drive_engine.js", *engine], cwd=CLIENT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.stdout.strip(), f"no report from the client; stderr:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    failed = [c["what"] for c in report["checks"] if not c["ok"]]
    assert not failed and done.returncode == 0, (failed, done.stderr[-3000:])
    assert len(report["checks"]) == 17
    assert report["lz"]["updates"] >= 1 and report["kata"]["updates"] >= 1
