"""A minimal GTP pipe to GNU Go 3.8 for oracle tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest

GNUGO = shutil.which("gnugo") or "/usr/games/gnugo"


class GnuGo:
    def __init__(self, *args: str) -> None:
        if not shutil.which(GNUGO):
            pytest.skip("GNU Go is not installed (.ci/run installs it)")
        self.proc = subprocess.Popen(
            [GNUGO, "--mode", "gtp", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def send(self, command: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if line == "":
                raise RuntimeError(f"GNU Go closed the pipe after {command!r}")
            if line.strip() == "" and lines:
                break
            if line.strip():
                lines.append(line.strip())
        reply = "\n".join(lines)
        if not reply.startswith("="):
            raise RuntimeError(f"GNU Go: {command!r} -> {reply!r}")
        return reply[1:].strip()

    def close(self) -> None:
        try:
            self.send("quit")
        finally:
            self.proc.wait(timeout=10)
