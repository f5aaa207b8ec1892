"""Stopping a long job cleanly: on SIGINT or SIGTERM, and at a wall-clock limit.

A job that may be taken away (a laptop that sleeps, a preemptible VM, a session that ends) checks
:meth:`StopRequest.reason` between units of work (a training step, a shard of games) and, when it gives
a reason, writes its state and raises :class:`RunStopped` instead of dying mid-write. The exception goes
up through whatever called the job (a stage that would export weights, a demo that would train its next
model) to the command line, which names the reason, says how to continue and exits with
:data:`EXIT_STOPPED`. The first SIGINT or SIGTERM only asks for the stop; a second SIGINT aborts at once
(KeyboardInterrupt), for a job stuck in a long step. Handlers are installed in the main thread only
(Python's rule) and restored on exit.

Example::

    with StopRequest(stop_after_minutes=60) as stop:
        for shard in shards:
            if reason := stop.reason():
                raise RunStopped(reason, f"{done} of {len(shards)} shards")
            play(shard)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

from training import options
from training.options import option

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_STOPPED = 75  # sysexits' EX_TEMPFAIL: not finished, run it again to go on (`a && b` does not run b)


class RunStopped(Exception):
    """A job stopped before its end, its state saved: ``reason`` (``"SIGTERM"``, ``"SIGINT"``, ``"time limit"``)
    and ``where`` (its progress in words, e.g. ``"step 120 of 500"``)."""

    def __init__(self, reason: str, where: str) -> None:
        super().__init__(f"stopped at {where} ({reason})")
        self.reason = reason
        self.where = where


class StopRequest:
    """Why the job should stop now, if it should: a signal received, or ``stop_after_minutes`` passed.

    ``stop_after_minutes`` 0 sets no time limit. The clock starts when the context is entered.
    ``handle_signals`` False leaves the process's handlers alone (the time limit still counts).
    """

    def __init__(self, stop_after_minutes: float = 0.0, *, handle_signals: bool = True) -> None:
        if stop_after_minutes < 0:
            raise ValueError(f"stop_after_minutes must be at least 0, not {stop_after_minutes}")
        self.limit_s = stop_after_minutes * 60.0
        self.handle_signals = handle_signals
        self.signal_name: str | None = None
        self.start = time.monotonic()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        self.start = time.monotonic()
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: do not wait for the step to end
        self.signal_name = name
        print(f"\n{name}: stopping after the current step (Ctrl-C again to abort at once)", file=sys.stderr,
              flush=True)

    def elapsed(self) -> float:
        """Seconds since the context was entered."""
        return time.monotonic() - self.start

    def reason(self) -> str | None:
        """``"SIGTERM"``/``"SIGINT"`` after a signal, ``"time limit"`` once the limit has passed, else None."""
        if self.signal_name is not None:
            return self.signal_name
        if self.limit_s > 0 and self.elapsed() >= self.limit_s:
            return "time limit"
        return None


@dataclass(kw_only=True)
class StopOptions:
    """The settings of a job that stops cleanly (SIGINT and SIGTERM need none)."""

    stop_after: float = option(0.0, "stop cleanly after this many minutes of wall-clock time, state saved, to go on "
                                    "later (SIGINT and SIGTERM stop the same way; 0: no limit)")


@dataclass(kw_only=True)
class CheckpointStopOptions(StopOptions):
    """The settings of a job that stops cleanly and also checkpoints on a clock."""

    ckpt_every_minutes: float = option(5.0, "also write a checkpoint whenever this many minutes passed since the "
                                            "last one, so a kill -9 loses at most that much work (0: by steps only)")


def add_stop_arguments(parser: argparse.ArgumentParser, *, checkpoints: bool = True) -> None:
    """The command-line options of :class:`CheckpointStopOptions` (``checkpoints`` False: of :class:`StopOptions`)."""
    options.add_arguments(parser, CheckpointStopOptions if checkpoints else StopOptions)
