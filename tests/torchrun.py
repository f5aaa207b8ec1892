"""Running a command as two torchrun ranks (gloo on the CPU) for the data-parallel tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_two_ranks(*args: str, timeout: float = 300) -> None:
    """Run ``torchrun --nproc_per_node 2 ARGS`` from the repository root; fail the test if a rank fails.

    Each rank's output is teed with its rank prefix, so that a rank that dies
    (an exception, or a signal such as SIGABRT with the C++ message before it)
    is shown in the failure, not only torchrun's summary.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--tee", "3",
           *args]
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        ranks = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("[default")]
        pytest.fail(f"torchrun exited with {result.returncode}; the ranks' last lines:\n" + "\n".join(ranks[-60:])
                    + "\n--- torchrun:\n" + result.stderr[-1500:], pytrace=False)
