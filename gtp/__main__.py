"""``gogame-gtp`` / ``python -m gtp``: the GTP engine's command line.

Wires the three layers together: :class:`gtp.session.EnginePlayer` (the search), :class:`gtp.session.Session`
(the game) and :class:`gtp.engine.GtpEngine` (the protocol), then runs :func:`gtp.engine.serve` on
stdin/stdout. Stdout carries only the protocol; logs go to stderr.
"""

from __future__ import annotations

import argparse
import sys

import gogame
from gogame import inference
from gtp.engine import GtpEngine, log, serve
from gtp.session import EnginePlayer, Session


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gogame-gtp",
        description="gogame's GTP version 2 engine for Go GUIs (Sabaki, Lizzie, GoGui, q5Go). "
        "Speaks GTP on stdin/stdout; logs go to stderr.",
    )
    parser.add_argument("--weights", help="a policy/value net file, or a folder of them and optionally a rollout "
                                          "policy rollout*.npz (default: shipped nets)")
    parser.add_argument("--size", type=int, default=19, help="initial board size (default 19)")
    parser.add_argument("--komi", type=float, default=7.5, help="initial komi (default 7.5)")
    parser.add_argument("--visits", type=int, default=400, help="search visits per move (default 400)")
    parser.add_argument("--time", type=float, default=None,
                        help="seconds per move when the controller sends no time settings")
    parser.add_argument("--threads", type=int, default=2, help="rollout threads (default 2)")
    parser.add_argument("--batch", type=int, default=16, help="leaves per network batch (default 16)")
    parser.add_argument("--resign-threshold", type=float, default=0.05,
                        help="resign below this win rate (default 0.05; 0 never)")
    parser.add_argument("--rules", choices=("area", "territory"), default="area",
                        help="scoring for final_score (default area)")
    parser.add_argument("--ponder", action="store_true",
                        help="after its own move, search the opponent's position until the next command")
    parser.add_argument("--no-early-stop", dest="early_stop", action="store_false",
                        help="spend the whole visit or time budget on every move, even once the most visited move "
                             "can no longer be overtaken")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the OS)")
    parser.add_argument("--symmetries", choices=("random", "all", "none"), default="random",
                        help="board symmetries per network evaluation: a random one (default), the mean of all 8 "
                             "(8 times the work; the 19x19 policy then matches 43.0%% of professional moves, not "
                             "41.6%%), or none")
    parser.add_argument("--backend", choices=inference.BACKENDS, default="auto",
                        help="what runs the networks: ONNX Runtime on a CPU when installed, save where the CPU "
                             "computes bf16 natively, torch otherwise (auto, the default), torch, or onnx")
    parser.add_argument("--onnx-threads", type=int, default=inference.DEFAULT_THREADS,
                        help=f"ONNX Runtime intra-op threads (default {inference.DEFAULT_THREADS}: the rollout "
                             "threads share the cores)")
    parser.add_argument("--lambda", dest="lambda_", type=float, default=None,
                        help="leaf value mix, 0 value net only .. 1 rollouts only (default 0.5, 1 without a value net)")
    return parser


def engine_options(args: argparse.Namespace) -> dict:
    """The :class:`gogame.api.Engine` options that parsed command-line options ask for."""
    options = dict(visits=args.visits, threads=args.threads, batch_size=args.batch,
                   resign_threshold=args.resign_threshold, seed=args.seed, symmetries=args.symmetries,
                   early_stop=args.early_stop, backend=args.backend, onnx_threads=args.onnx_threads)
    if args.lambda_ is not None:
        options["lambda_"] = args.lambda_
    return options


def build_engine(args: argparse.Namespace) -> GtpEngine:
    """The protocol engine with the session's handlers, from parsed options."""
    try:
        inference.choose(args.backend)
    except inference.BackendUnavailable as e:
        raise SystemExit(f"gogame-gtp: {e}") from None
    player = EnginePlayer(args.weights, **engine_options(args))
    if not player.supports(args.size):
        raise SystemExit(f"gogame-gtp: no networks for {args.size}x{args.size} (use --weights or another --size)")
    session = Session(player, size=args.size, komi=args.komi, rules=args.rules, seconds=args.time,
                      ponder=args.ponder)
    engine = GtpEngine("gogame", gogame.__version__)
    engine.add_commands(session.handlers())
    engine.idle = session.ponder_job
    return engine


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    engine = build_engine(args)
    log(f"gogame-gtp {gogame.__version__}: ready ({args.size}x{args.size}, {args.visits} visits)")
    # Bytes that are not UTF-8 must not end the session: they become U+FFFD and the line gets a "?" reply.
    sys.stdin.reconfigure(errors="replace")
    try:
        serve(engine, sys.stdin, sys.stdout)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
