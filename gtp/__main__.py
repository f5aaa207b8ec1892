"""``gogame-gtp`` / ``python -m gtp``: the GTP engine's command line.

Wires the three layers together: :class:`gtp.session.EnginePlayer` (the search), :class:`gtp.session.Session`
(the game) and :class:`gtp.engine.GtpEngine` (the protocol), then runs :func:`gtp.engine.serve` on
stdin/stdout. Stdout carries only the protocol; logs go to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from typing import Callable

import gogame
from gogame import coords, inference
from gogame.board import check_komi
from gtp.engine import GtpEngine, GtpError, log, serve
from gtp.session import WARMUP_THREAD, EnginePlayer, Session


LZ_VERSION = "0.17"  # the Leela Zero whose lz-analyze lines (with lcb and order) the session writes


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``gogame-gtp: error: ...``) and exit 2, without the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: type, valid: Callable[[float], bool], wanted: str) -> Callable[[str], float]:
    """An argparse ``type`` reading a finite ``kind`` (int or float) for which ``valid`` holds."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not valid(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}")
        return value
    return parse


def _komi(text: str) -> float:
    try:
        return check_komi(float(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_COUNT = _number(int, lambda v: v >= 1, "a whole number of at least 1")
_FRACTION = _number(float, lambda v: 0 <= v <= 1, "a number from 0 to 1")
_NON_NEGATIVE = _number(float, lambda v: v >= 0, "a number of at least 0")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gogame-gtp",
        description="gogame's GTP version 2 engine for Go GUIs (Sabaki, Lizzie, GoGui, q5Go). "
        "Speaks GTP on stdin/stdout; logs go to stderr.",
    )
    parser.add_argument("--weights", help="a policy/value net file, or a folder of them and optionally a rollout "
                                          "policy rollout*.npz (default: shipped nets)")
    parser.add_argument("--size", default=19,
                        type=_number(int, lambda v: coords.MIN_SIZE <= v <= coords.MAX_SIZE,
                                     f"a board size from {coords.MIN_SIZE} to {coords.MAX_SIZE}"),
                        help="initial board size (default 19)")
    parser.add_argument("--komi", type=_komi, default=7.5, help="initial komi (default 7.5)")
    parser.add_argument("--visits", type=_COUNT, default=400, help="search visits per move (default 400)")
    parser.add_argument("--time", type=_number(float, lambda v: v > 0, "a positive number of seconds"), default=None,
                        help="seconds per move when the controller sends no time settings")
    parser.add_argument("--threads", type=_COUNT, default=2, help="rollout threads (default 2)")
    parser.add_argument("--batch", type=_COUNT, default=16, help="leaves per network batch (default 16)")
    parser.add_argument("--resign-threshold", type=_FRACTION, default=0.05,
                        help="resign below this win rate (default 0.05; 0 never)")
    parser.add_argument("--resign-consecutive", type=_COUNT, default=3,
                        help="resign only once this many searches of our moves in a row found the game lost "
                             "(default 3, as KataGo; 1: the first such search)")
    parser.add_argument("--rules", choices=("area", "territory"), default="area",
                        help="scoring for final_score (default area)")
    parser.add_argument("--ponder", action="store_true",
                        help="after its own move, search the opponent's position until the next command")
    parser.add_argument("--no-early-stop", dest="early_stop", action="store_false",
                        help="spend the whole visit or time budget on every move, even once the most visited move "
                             "can no longer be overtaken")
    parser.add_argument("--seed", type=_number(int, lambda v: v >= 0, "a whole number of at least 0"), default=None,
                        help="random seed (default: from the OS)")
    parser.add_argument("--symmetries", choices=("random", "all", "none"), default="random",
                        help="board symmetries per network evaluation: a random one (default), the mean of all 8 "
                             "(8 times the work; the 19x19 policy then matches 43.0%% of professional moves, not "
                             "41.6%%), or none")
    parser.add_argument("--backend", choices=inference.BACKENDS, default="auto",
                        help="what runs the networks: ONNX Runtime on a CPU when installed, save where the CPU "
                             "computes bf16 natively, torch otherwise (auto, the default), torch, or onnx")
    parser.add_argument("--onnx-threads", type=_COUNT, default=None,
                        help="ONNX Runtime intra-op threads (default 1 where rollouts share the cores, else "
                             "--threads; torch's threads follow the same rule)")
    parser.add_argument("--lambda", dest="lambda_", type=_FRACTION, default=None,
                        help="leaf value mix, 0 value net only .. 1 rollouts only (default 0.5, 1 without a value net; "
                             "below 1 needs a value net)")
    parser.add_argument("--rollouts-from", type=_NON_NEGATIVE, default=None,
                        help="rollouts mix in (by --lambda) only once the moves played reach this share of the "
                             "board's points; before, the value net alone values the leaves (default 0: from the "
                             "first move, as in AlphaGo)")
    parser.add_argument("--c-puct", type=_NON_NEGATIVE, default=None,
                        help="exploration constant of the search (default 5, AlphaGo's; a net file's own record "
                             "first, as for --lambda, --rollouts-from and --fpu-reduction)")
    parser.add_argument("--fpu-reduction", type=_NON_NEGATIVE, default=None,
                        help="value an unvisited move at its parent's win rate less this times the root of the "
                             "visited moves' priors, in [-1, 1] units (Leela Zero's first-play urgency; default: "
                             "0.25 where a value net values the leaves, lambda below 1; else a draw, as in AlphaGo)")
    parser.add_argument("--lz-compatible", action="store_true",
                        help=f"answer name and version as a Leela Zero {LZ_VERSION}-compatible engine (its lz-analyze "
                             "dialect), for GUIs that check Leela Zero's version number (Lizzie wants 0.15 or later)")
    parser.add_argument("--warmup", action="store_true",
                        help="compile every numba kernel into its cache (the first start after an install takes a "
                             "minute or more otherwise) and exit; without it the engine compiles in the background "
                             "at start and plays the policy net's move until the search is ready")
    return parser


def engine_options(args: argparse.Namespace) -> dict:
    """The :class:`gogame.api.Engine` options that parsed command-line options ask for."""
    options = dict(visits=args.visits, threads=args.threads, batch_size=args.batch,
                   resign_threshold=args.resign_threshold, resign_consecutive=args.resign_consecutive,
                   seed=args.seed, symmetries=args.symmetries, early_stop=args.early_stop, backend=args.backend)
    for name in ("lambda_", "rollouts_from", "c_puct", "fpu_reduction", "onnx_threads"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def build_player(args: argparse.Namespace, background: bool = True) -> EnginePlayer:
    """The player, its networks for ``--size`` loaded and its kernels warming up (in the background, or here).
    SystemExit with a one-line message for weights that cannot serve: missing, corrupt or foreign files, no
    networks for the size, or options the networks cannot honour (``--lambda`` below 1 without a value net)."""
    try:
        player = EnginePlayer(args.weights, **engine_options(args))
        if not player.supports(args.size):
            raise SystemExit(f"gogame-gtp: no networks for {args.size}x{args.size} (use --weights or another --size)")
        player.prepare(args.size, background=background)
    except (GtpError, OSError, ValueError, inference.BackendUnavailable) as e:
        raise SystemExit(f"gogame-gtp: {e}".splitlines()[0]) from None
    return player


def build_engine(args: argparse.Namespace) -> GtpEngine:
    """The protocol engine with the session's handlers, from parsed options."""
    player = build_player(args)
    session = Session(player, size=args.size, komi=args.komi, rules=args.rules, seconds=args.time,
                      ponder=args.ponder)
    if args.lz_compatible:  # Lizzie reads the number after the first dot of version's first word as LZ's minor
        engine = GtpEngine(f"gogame (Leela Zero {LZ_VERSION} compatible)",
                           f"{LZ_VERSION} (Leela Zero's analysis commands; gogame {gogame.__version__})")
    else:
        engine = GtpEngine("gogame", gogame.__version__)
    engine.add_commands(session.handlers())
    engine.idle = session.ponder_job
    return engine


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.warmup:
        started = time.monotonic()
        build_player(args, background=False)
        log(f"gogame-gtp: warmed up in {time.monotonic() - started:.1f}s")
        return 0
    engine = build_engine(args)
    log(f"gogame-gtp {gogame.__version__}: ready ({args.size}x{args.size}, {args.visits} visits)")
    # Bytes that are not UTF-8 must not end the session: they become U+FFFD and the line gets a "?" reply.
    sys.stdin.reconfigure(errors="replace")
    try:
        serve(engine, sys.stdin, sys.stdout)
    except KeyboardInterrupt:
        return 130
    if any(t.name == WARMUP_THREAD and t.is_alive() for t in threading.enumerate()):
        # The warm-up may be inside numba's or torch's native code, which the interpreter's shutdown aborts
        # ("terminate called without an active exception", SIGABRT): leave at once (a second process still
        # compiling the search finishes filling the cache, then exits).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
