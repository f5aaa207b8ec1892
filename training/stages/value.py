"""``gogame-train value``: AlphaGo's value data from self-play, and the value net trained on it.

``gogame-train value DATA --rl RL.pt --games N --out RUN`` first plays ``N`` games into the dataset folder
``DATA`` (resumable, in worker processes: :func:`training.stages.selfplay.generate` in ``"value"`` mode). For each
game, U is drawn uniformly from ``1..--max-u``; the SL policy (``--sl``, default the shipped one) plays
moves 1..U-1, move U is a uniformly random legal move, and the RL policy plays on to the end. Only the
position after move U is kept, with the outcome for the side to move there: one position per game, so the
targets are nearly independent. A game over before move U+1 keeps nothing (with ``--max-u`` at most the
usual game length that is rare; the summary counts the positions).

Then the value net trains on ``DATA`` through the supervised value stage (:func:`training.stages.sl.train`: MSE,
one position per game per epoch, the ``val`` split held out, ``--export`` with provenance): its settings
(:class:`ValueConfig`) are that stage's and the games' (:class:`training.stages.selfplay.GenerationConfig`).
``--stop-after`` covers both: what the games leave of it is the training's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from gogame import nets
from training.options import REQUIRED, option
from training.stages import selfplay, sl
from training.stopping import RunStopped


@dataclass(kw_only=True)
class ValueConfig(sl.SLConfig, selfplay.GenerationConfig):
    """Every setting of ``gogame-train value``: the value games' (``data`` is where they go), then the
    supervised value stage's."""

    rl: str = option(REQUIRED, "the RL policy, which plays after the random move")
    sl: str | None = option(None, "the SL policy, which plays before it (default: the shipped one)")
    max_u: int | None = option(None, "U is drawn from 1..this (default size*size)")


CONFIG = ValueConfig


def run(config: ValueConfig) -> int:
    rl_net = nets.load(config.rl, kind="policy")
    size = rl_net.board_size
    sl_path = config.sl or str(nets.default_weights("policy", size))
    spec = selfplay.GameSpec(size, (str(sl_path), str(config.rl)), "value", config.komi, max_moves=config.max_moves,
                             max_u=config.max_u or size * size, val_fraction=config.val_fraction)
    start = time.monotonic()
    try:
        summary = selfplay.generate(config.data, spec, config.games, games_per_shard=config.games_per_shard,
                                    workers=config.workers, tag=config.tag, seed=config.seed,
                                    progress=config.progress, stop_after_minutes=config.stop_after,
                                    backend=config.backend)
    except ValueError as exc:  # settings that do not fit: the nets' sizes, an existing folder's settings
        raise SystemExit(f"gogame-train value: {exc}") from None
    print(json.dumps({k: summary[k] for k in ("games", "positions", "games_per_s", "moves_per_s")}))
    if config.stop_after:
        left = config.stop_after - (time.monotonic() - start) / 60
        if left <= 0:
            raise RunStopped("time limit", f"the end of the value games in {config.data}, before training")
        config = dataclasses.replace(config, stop_after=left)
    sl.train(config, "value")
    return 0
