"""``gogame-train value``: AlphaGo's value data from self-play, and the value net trained on it.

``gogame-train value DATA --rl RL.pt --games N --out RUN`` first plays ``N`` games into the dataset folder
``DATA`` (resumable, in worker processes: :func:`training.stages.selfplay.generate` in ``"value"`` mode). For each
game, U is drawn uniformly from ``1..--max-u``; the SL policy (``--sl``, default the shipped one) plays
moves 1..U-1, move U is a uniformly random legal move, and the RL policy plays on to the end. Only the
position after move U is kept, with the outcome for the side to move there: one position per game, so the
targets are nearly independent. A game over before move U+1 keeps nothing (with ``--max-u`` at most the
usual game length that is rare; the summary counts the positions).

Then the value net trains on ``DATA`` through the supervised value stage (:func:`training.stages.sl.train`: MSE,
one position per game per epoch, the ``val`` split held out, ``--export`` with provenance): the options
after the generation ones are that stage's. ``--stop-after`` covers both: what the games leave of it is the
training's.
"""

from __future__ import annotations

import argparse
import json
import time

from gogame import nets
from training.stages import selfplay, sl
from training.stopping import RunStopped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sl.add_arguments(parser)  # DATA (here: where the games go), --out, the training options
    generation = parser.add_argument_group("value data")
    generation.add_argument("--rl", required=True, help="the RL policy, which plays after the random move")
    generation.add_argument("--sl", default=None, help="the SL policy, which plays before it (default: shipped)")
    generation.add_argument("--max-u", type=int, default=None, help="U is drawn from 1..this (default size*size)")
    selfplay.add_generation_arguments(generation)


def run(args: argparse.Namespace) -> int:
    rl_net = nets.load(args.rl, kind="policy")
    size = rl_net.board_size
    sl_path = args.sl or str(nets.default_weights("policy", size))
    spec = selfplay.GameSpec(size, (str(sl_path), str(args.rl)), "value", args.komi, max_moves=args.max_moves,
                             max_u=args.max_u or size * size, val_fraction=args.val_fraction)
    start = time.monotonic()
    try:
        summary = selfplay.generate(args.data, spec, args.games, games_per_shard=args.games_per_shard,
                                    workers=args.workers, tag=args.tag, seed=args.seed,
                                    progress=not args.no_progress, stop_after_minutes=args.stop_after,
                                    backend=args.backend)
    except ValueError as exc:  # settings that do not fit: the nets' sizes, an existing folder's settings
        raise SystemExit(f"gogame-train value: {exc}") from None
    print(json.dumps({k: summary[k] for k in ("games", "positions", "games_per_s", "moves_per_s")}))
    if args.stop_after:
        left = args.stop_after - (time.monotonic() - start) / 60
        if left <= 0:
            raise RunStopped("time limit", f"the end of the value games in {args.data}, before training")
        args.stop_after = left
    sl.train(args, "value")
    return 0
