"""Cold and warm start of ``gogame-gtp``: when the first replies come, with an empty cache and with a warm one.

Run: ``python -m training.bench.cold_start [--size 9] [--visits 200] [--repeats 3] [--code DIR ...]``.
Each ``--code`` is a checkout whose ``gtp`` engine is measured (default: this one); the variants alternate
within each repeat, so that they share the machine's load. Per repeat and checkout:

- *cold*: an empty numba cache (``NUMBA_CACHE_DIR``) and an empty gogame cache (``XDG_CACHE_HOME``: the exported
  ONNX models), as on the first start after an install. ``protocol_version`` and ``genmove b`` are written at
  once; the seconds from the start of the process to each reply, and to stderr's "search is ready" line.
- *warm*: the same caches after ``--warmup`` filled them; ``kgs-time_settings absolute 20`` and ``genmove b``
  at once: the first move's seconds from its command against its budget (20 s over 40 moves left: 0.5 s on
  9x9, 10 moves minimum).

The load average (``os.getloadavg``) is printed beside each run; the report gives the median and range of each
figure per checkout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file is training/bench/cold_start.py)
READY = "search is ready"


def caches(base: Path) -> dict[str, str]:
    """The environment that puts numba's and gogame's caches under ``base``."""
    return dict(os.environ, NUMBA_CACHE_DIR=str(base / "numba"), XDG_CACHE_HOME=str(base / "xdg"))


def session(code: Path, env: dict, argv: list[str], commands: list[str], limit: float) -> dict[str, float]:
    """Start the engine of checkout ``code``, write ``commands`` at once and time each reply from the start:
    ``{command: seconds}``, plus ``READY`` when stderr says the search is ready; the engine ends with ``quit``."""
    env = dict(env, PYTHONPATH=str(code), PYTHONUNBUFFERED="1")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "gtp", *argv], cwd=code, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    times: dict[str, float] = {}

    def watch_stderr() -> None:
        for line in proc.stderr:
            if READY in line and READY not in times:
                times[READY] = time.monotonic() - started

    watcher = threading.Thread(target=watch_stderr, daemon=True)
    watcher.start()
    proc.stdin.write("".join(f"{c}\n" for c in commands))
    proc.stdin.flush()
    timer = threading.Timer(limit, proc.kill)
    timer.start()
    try:
        for command in commands:
            reply = []
            while (line := proc.stdout.readline()) not in ("\n", ""):
                reply.append(line.strip())
            if not line:
                break
            times[command] = time.monotonic() - started
            times[command + " reply"] = " ".join(reply)
        if READY not in times and proc.poll() is None:  # wait for the background compile (up to the limit)
            while READY not in times and time.monotonic() - started < limit and watcher.is_alive():
                time.sleep(0.2)
        proc.stdin.write("quit\n")
        proc.stdin.flush()
    except (BrokenPipeError, OSError):
        pass
    finally:
        timer.cancel()
        proc.wait()
    return times


def load() -> str:
    return "load %.1f %.1f %.1f" % os.getloadavg()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=9)
    parser.add_argument("--visits", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--code", type=Path, nargs="+", default=[ROOT], help="checkouts to measure (default: this)")
    parser.add_argument("--limit", type=float, default=400.0, help="seconds before a run is killed")
    parser.add_argument("--runs", nargs="+", choices=("cold", "warm"), default=["cold", "warm"])
    args = parser.parse_args(argv)
    args.warm = "warm" in args.runs
    print("command: python -m training.bench.cold_start " + " ".join(sys.argv[1:] if argv is None else argv))
    engine = ["--size", str(args.size), "--visits", str(args.visits)]
    figures: dict[tuple[str, str], list[float]] = {}

    def note(code: Path, name: str, value: float | None) -> None:
        if value is not None:
            figures.setdefault((str(code), name), []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        warm_dirs = {}
        if args.warm:
            for k, code in enumerate(args.code):
                warm_dirs[code] = Path(tmp, f"warm{k}")
                began = time.monotonic()
                subprocess.run([sys.executable, "-m", "gtp", *engine, "--warmup"], cwd=code, check=True,
                               env=dict(caches(warm_dirs[code]), PYTHONPATH=str(code)),
                               stderr=subprocess.DEVNULL)
                print(f"{code}: --warmup on an empty cache {time.monotonic() - began:.1f} s ({load()})", flush=True)
        for repeat in range(args.repeats):
            for code in args.code:
                if "cold" in args.runs:
                    with tempfile.TemporaryDirectory(dir=tmp) as empty:
                        before = load()
                        t = session(code, caches(Path(empty)), engine, ["protocol_version", "genmove b"],
                                    args.limit)
                    note(code, "cold protocol_version", t.get("protocol_version"))
                    note(code, "cold genmove", t.get("genmove b"))
                    note(code, "cold search ready", t.get(READY))
                    print(f"{code} cold #{repeat}: protocol_version {t.get('protocol_version', 0):.1f} s, genmove "
                          f"{t.get('genmove b', 0):.1f} s ({t.get('genmove b reply')}), search ready "
                          f"{t.get(READY, float('nan')):.1f} s ({before})", flush=True)
                if args.warm:
                    before = load()
                    t = session(code, caches(warm_dirs[code]), engine,
                                ["kgs-time_settings absolute 20", "genmove b"], args.limit)
                    seconds = t["genmove b"] - t["kgs-time_settings absolute 20"]
                    note(code, "warm protocol reply (time_settings)", t["kgs-time_settings absolute 20"])
                    note(code, "warm genmove (from its command)", seconds)
                    print(f"{code} warm #{repeat}: genmove {seconds:.2f} s after its command "
                          f"({t['genmove b reply']}), reply at {t['genmove b']:.1f} s ({before})", flush=True)
    print("\nmedian [range], seconds:")
    for (code, name), values in figures.items():
        print(f"  {code}  {name}: {statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}] "
              f"(n={len(values)})")


if __name__ == "__main__":
    main()
