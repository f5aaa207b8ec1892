"""Measurements for the dual network: its forward cost, and how good the stream's ownership targets are.

``python -m training.bench.dual forward``: positions per second of dual presets against the shipped policy19
(12 plain 3x3 layers of 128), at one batch size on 19x19, on one torch thread by default, side by side in one
run: every round times each net in turn (``--forwards`` forwards each), and the medians over the rounds are
reported with a 95% interval of each median (order statistics) and the median per-round ratio to policy19.

``python -m training.bench.dual value NET SOURCES...``: the value head's MSE against the outcome on held-out
positions (the run's val split), overall and by quarter of the move numbers, beside the constant predictor and a
value read off the ownership head (:func:`value`).

``python -m training.bench.dual ownership ARCHIVE``: on games that ended by counting (``RE`` like ``W+3.5``),
the margin implied by the rollout ownership of the final position (:meth:`training.data.stream.ExpertStream.
final_ownership`: the sum of the mean owners minus komi, and the sum of their signs: each point to the side that
owns it in most playouts) against the recorded one; beside it the board scored as
it stands (every stone alive) and, for the first ``--gnugo`` games, the board scored with GNU Go's
``final_status_list dead`` stones removed, with the per-point agreement of the rollout owner sign and GNU Go's.
Records of Japanese games count territory, not area: a margin may differ by a point from the area count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

import numpy as np
import torch

from gogame import coords, nets
from gogame import rollout as ro
from gogame.mcts import Rollouts
from gogame.stats import median_interval
from gogame.board import Board
from training.data import shards
from training.data.stream import ExpertStream, OutcomeRule
from training.eval.match import GtpController
from training.stages.dual import ownership_agreement


def forward(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    models = {"policy19": nets.load(nets.default_weights("policy", 19))}
    for preset in args.presets:
        models[preset] = nets.build("dual", 49, 19, preset).eval()
    gen = torch.Generator().manual_seed(0)
    inputs = {name: (torch.rand(args.batch, m.in_planes, 19, 19, generator=gen) < 0.3).float()
              for name, m in models.items()}
    rates: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for name, m in models.items():  # warm-up
            m(inputs[name])
        for _ in range(args.rounds):
            for name, m in models.items():
                start = time.perf_counter()
                for _ in range(args.forwards):
                    m(inputs[name])
                rates[name].append(args.batch * args.forwards / (time.perf_counter() - start))
    base = np.array(rates["policy19"])
    out = {"batch": args.batch, "threads": args.threads, "rounds": args.rounds, "forwards": args.forwards}
    for name, r in rates.items():
        r = np.array(r)
        params = sum(p.numel() for p in models[name].parameters())
        out[name] = {"params": params, "positions_per_s": float(np.median(r)), "ci95": median_interval(r),
                     "ratio_to_policy19": float(np.median(r / base))}
    return out


def _gnugo_dead(controller: GtpController, board: Board, moves: list, komi: float) -> list[coords.Point]:
    controller.send(f"boardsize {board.size}")
    controller.send("clear_board")
    controller.send(f"komi {komi}")
    for colour, move in moves:
        controller.send(f"play {colour} {coords.to_gtp(move)}")
    reply = controller.send("final_status_list dead")
    return [coords.from_gtp(v, board.size) for v in reply.split()]


def ownership(args: argparse.Namespace) -> dict:
    source = ExpertStream([args.archive], 1, game_filter=shards.GameFilter(size=19, handicap=False),
                          outcome=OutcomeRule(), val_fraction=0, test_fraction=0,
                          ownership_playouts=args.playouts, progress=False)
    rows = []
    if args.gnugo and not shutil.which(args.gnugo_command.split()[0]):
        raise SystemExit(f"--gnugo: no GNU Go at {args.gnugo_command.split()[0]}")
    gnugo = GtpController(args.gnugo_command.split(), timeout=args.gnugo_timeout) if args.gnugo else None
    gnugo_rows = []
    for i in range(source.games):
        setup, moves, facts, name = source.record(i)
        if shards.result_kind(facts.result) != shards.SCORE or not 5.5 <= facts.komi <= 7.5:
            continue
        recorded = float(facts.result[2:]) * (1 if facts.result[0].upper() == "B" else -1)
        owner = source.final_ownership(i)
        board = Board(19, facts.komi, superko="none")
        for colour, move in moves:
            board.play(move, colour)
        rows.append((recorded, float(owner.sum()) - facts.komi, float(np.sign(owner).sum()) - facts.komi,
                     board.score("area")))
        if gnugo is not None and len(gnugo_rows) < args.gnugo:
            dead = _gnugo_dead(gnugo, board, moves, facts.komi)
            judged = board.ownership(dead).reshape(-1)  # +1 black, -1 white, 0 neither (point order row*19+col)
            sure = judged != 0
            gnugo_rows.append((recorded, board.score("area", dead=dead),
                               float(np.mean(np.sign(owner[sure]) == judged[sure]))))
        if len(rows) >= args.games:
            break
    if gnugo is not None:
        gnugo.close()
    r = np.array(rows)

    def errors(recorded: np.ndarray, estimate: np.ndarray) -> dict:
        e = np.abs(estimate - recorded)
        return {"winner_right": float(np.mean(np.sign(estimate) == np.sign(recorded))),
                "mean_abs_error": float(e.mean()), "median_abs_error": float(np.median(e)),
                "within_2": float(np.mean(e <= 2)), "within_5": float(np.mean(e <= 5))}

    out = {"games": len(rows), "playouts": args.playouts, "rollout_ownership": errors(r[:, 0], r[:, 1]),
           "rollout_ownership_signs": errors(r[:, 0], r[:, 2]), "board_as_it_stands": errors(r[:, 0], r[:, 3])}
    if gnugo_rows:
        g = np.array(gnugo_rows)
        out["gnugo"] = {"games": len(gnugo_rows), "gnugo_dead_removed": errors(g[:, 0], g[:, 1]),
                        "rollout_sign_agrees_with_gnugo_owner": float(g[:, 2].mean())}
    return out


def value(args: argparse.Namespace) -> dict:
    """The value head's MSE against the outcome on held-out positions with one, overall and by quarter of the
    move numbers, beside the constant predictor and a value read off the ownership head: ``tanh(k * margin)``,
    the margin the mean owners sum to for the mover, komi 7.5 counted against black. Also how often the last
    quarter's value signs name the winner, the policy head's top-1 on every position read, and the ownership
    head's sign agreement with the stream's final owners (the play-outs of each record's last position) on the
    points they are sure of (:func:`training.stages.dual.ownership_agreement`), overall and by quarter. With
    ``--rollouts N``, beside them the shipped rollout policy's own estimates of the same positions (each
    position's komi): the mean result of N playouts (``rollouts_mse``), and one playout's (``rollout_mse``, the
    mean over the N of each playout's squared error), what one leaf of the search gets at lambda 1. With
    ``--policy NET``, that policy net's top-1 on the same positions and how often its top move is the head's."""
    net = nets.load(args.net).eval()
    policy = nets.load(args.policy, kind="policy").eval() if args.policy else None
    size = args.size
    held_out = ExpertStream(args.sources, 64, split=args.split, game_filter=shards.GameFilter(size=size),
                            val_fraction=args.val_fraction, test_fraction=args.test_fraction, games_per_chunk=64,
                            positions_per_game=args.positions_per_game, drop_last=False, max_batches=args.batches,
                            progress=False)
    values, margins, outcomes, numbers, played = [], [], [], [], []
    owners_right, owners_sure, owner_numbers = [], [], []
    rollouts = Rollouts(ro.RolloutPolicy.load(), threads=1) if args.rollouts else None
    hits = seen = policy_hits = agree = 0
    with torch.no_grad():
        for batch in held_out.batches(0):
            planes = shards.unpack_planes(batch["planes"], net.in_planes, size)
            logits, v, owners = net(planes)
            hits += int((logits.argmax(1) == batch["move"]).sum())
            seen += len(batch["move"])
            if policy is not None:
                top = policy(planes[:, :policy.in_planes]).argmax(1)
                policy_hits += int((top == batch["move"]).sum())
                agree += int((top == logits.argmax(1)).sum())
            black = planes[:, -1, 0, 0] > 0.5  # alphago49's player_colour plane
            margin = torch.tanh(owners.float() / 2).sum(1) + torch.where(black, -7.5, 7.5)  # 2p - 1 = tanh(x/2)
            right, sure = ownership_agreement(owners, batch[shards.OWNERSHIP])
            owners_right.append(right), owners_sure.append(sure), owner_numbers.append(batch["move_number"])
            known = batch["outcome"] != 0
            values.append(v.float()[known]), margins.append(margin[known])
            outcomes.append(batch["outcome"][known]), numbers.append(batch["move_number"][known])
            if rollouts is not None:
                for game, number in zip(batch["game"][known].tolist(), batch["move_number"][known].tolist()):
                    board = held_out.board(game, number)
                    wins = rollouts.margins(board, args.rollouts, seed=game << 12 | number) > 0
                    played.append(np.where(wins, 1.0, -1.0) * (1 if board.to_move == "B" else -1))
    v, margin, z, number = (torch.cat(x).numpy().astype(np.float64) for x in (values, margins, outcomes, numbers))
    results = np.stack(played) if played else None  # (positions, N): each playout's result, mover's
    right, sure, owner_number = (torch.cat(x).numpy() for x in (owners_right, owners_sure, owner_numbers))
    edges = np.quantile(number, [0, 0.25, 0.5, 0.75, 1.0])
    late = number > edges[3]
    out = {"games": held_out.games, "policy_top1": hits / seen, "policy_positions": seen,
           "positions": int(z.size), "constant_mse": float(np.var(z)), "value_mse": float(np.mean((v - z) ** 2)),
           "ownership_value_mse": {str(k): float(np.mean((np.tanh(k * margin) - z) ** 2)) for k in args.k},
           "late_value_sign_agrees": float(np.mean(np.sign(v[late]) == z[late])),
           "late_margin_sign_agrees": float(np.mean(np.sign(margin[late]) == z[late])),
           "ownership_positions": int(right.size), "ownership_sign_agrees": float(right.sum() / max(sure.sum(), 1)),
           "by_moves": []}
    if policy is not None:
        out.update(other_policy=args.policy, other_policy_top1=policy_hits / seen, top_moves_agree=agree / seen)
    if results is not None:
        out.update(_rollout_errors(results, z), rollouts=args.rollouts)
    for a, b in zip(edges[:-1], edges[1:]):
        part = (number >= a) & (number <= b)
        owned = (owner_number >= a) & (owner_number <= b)
        out["by_moves"].append({"moves": f"{a:.0f}-{b:.0f}", "positions": int(part.sum()),
                                "value_mse": float(np.mean((v[part] - z[part]) ** 2)),
                                "ownership_value_mse": {str(k): float(np.mean((np.tanh(k * margin[part]) - z[part]) ** 2))
                                                        for k in args.k},
                                "ownership_sign_agrees": float(right[owned].sum() / max(sure[owned].sum(), 1)),
                                **(_rollout_errors(results[part], z[part]) if results is not None else {})})
    return out


def _rollout_errors(results: np.ndarray, z: np.ndarray) -> dict[str, float]:
    """The MSE against the outcomes ``z`` of the mean of each row of playout results, and of one playout."""
    return {"rollouts_mse": float(np.mean((results.mean(1) - z) ** 2)),
            "rollout_mse": float(np.mean((results - z[:, None]) ** 2))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.bench.dual", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    f = sub.add_parser("forward", help="positions per second of dual presets against policy19")
    f.add_argument("--presets", nargs="+", default=["b4c64", "b6c96", "b10c128"])
    f.add_argument("--batch", type=int, default=16)
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--rounds", type=int, default=15)
    f.add_argument("--forwards", type=int, default=5)
    o = sub.add_parser("ownership", help="rollout ownership of final positions against recorded margins")
    o.add_argument("archive")
    o.add_argument("--games", type=int, default=500)
    o.add_argument("--playouts", type=int, default=32)
    o.add_argument("--gnugo", type=int, default=0, help="also judge the first N games with GNU Go")
    o.add_argument("--gnugo-command", default="/usr/games/gnugo --mode gtp --chinese-rules")
    o.add_argument("--gnugo-timeout", type=float, default=600, help="seconds GNU Go may take over one command")
    v = sub.add_parser("value", help="the value head and the ownership head's margin against held-out outcomes")
    v.add_argument("net", help="a dual net file or trainer checkpoint")
    v.add_argument("sources", nargs="+", help="the SGF archives it trained on (the held-out split is by game name)")
    v.add_argument("--size", type=int, default=19)
    v.add_argument("--val-fraction", type=float, default=0.02, help="as the run was trained with")
    v.add_argument("--test-fraction", type=float, default=0.02, help="as the run was trained with")
    v.add_argument("--split", choices=("val", "test"), default="val", help="the held-out split read")
    v.add_argument("--positions-per-game", type=int, default=0,
                   help="read only this many positions of each game (0: all): the batches spread over more games")
    v.add_argument("--batches", type=int, default=30, help="held-out batches of 64 positions")
    v.add_argument("--k", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5], help="margin scales tried")
    v.add_argument("--rollouts", type=int, default=0,
                   help="also score each position by this many playouts of the shipped rollout policy")
    v.add_argument("--policy", help="also the top-1 of this policy net (same board size) on the same positions")
    args = parser.parse_args(argv)
    print(json.dumps({"forward": forward, "ownership": ownership, "value": value}[args.what](args), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
