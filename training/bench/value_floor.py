"""The lowest MSE a value net can reach on AlphaGo's value data, measured by playing each position many times.

Run: ``python -m training.bench.value_floor --rl RL.pt [--sl SL.pt] [--value VALUE.pt ...] [--positions 400]
[--continuations 16] [--json]``.

The positions are drawn as ``gogame-train value`` draws them (U uniform in ``1..size*size``, the SL policy
for moves 1..U-1, one uniformly random legal move, the position after it). From each, the RL policy plays
``--continuations`` games to the end, sampling at temperature 1 as it does in the value data. With ``m`` the
mean outcome for the side to move over a position's games, ``K/(K-1) * (1 - m^2)`` is an unbiased estimate of
the variance of one outcome there; its mean over positions (**the floor**) is the MSE of the perfect value
function ``v(s) = E[z | s]`` against the data's single outcomes, so no value net can reach a held-out MSE
below it. Shown overall (with a 95% interval over positions) and by U.

With ``--value``, each net's prediction ``v`` for each position is scored against the same games: its MSE
against the outcomes (what the value stage's held-out MSE estimates) and against ``m`` (how far it is from
the perfect value function: ``(v - m)^2`` less the ``var/K`` that ``m``'s own noise adds), overall and by U.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from tqdm import tqdm

from gogame import nets
from gogame.api import NetEvaluator
from gogame.board import Board
from gogame.stats import mean_interval
from training.stages.selfplay import GameSpec, NetPlayer, Plan, play_games

CHUNK_GAMES = 512  # continuations played at once


def value_positions(sl: nets.PolicyNet, rl: nets.PolicyNet, n: int, *, komi: float,
                    rng: np.random.Generator) -> list[tuple[int, Board, np.ndarray]]:
    """``n`` positions of AlphaGo's value data as (U, board after move U, its alphago49 planes); games over
    before it give none."""
    size = rl.board_size
    plans = GameSpec(size, ("sl", "rl"), "value", komi, max_u=size * size).plans(n, rng)  # the stage's U draw
    played = play_games([NetPlayer(sl), NetPlayer(rl)], plans, size=size, komi=komi, rng=rng)
    positions = []
    for plan, game in zip(plans, played):
        if game.positions:
            board = Board(size, komi)
            for colour, move in game.history[: game.positions[0]]:
                board.play(move, colour)
            positions.append((plan.random_at + 1, board, game.planes[0]))
    return positions


def continuation_outcomes(rl: nets.PolicyNet, boards: list[Board], k: int, *, komi: float,
                          rng: np.random.Generator, progress: bool = True) -> np.ndarray:
    """``(len(boards), k)`` outcomes (+1 / -1 / 0) for the side to move of ``k`` RL games from each board."""
    player, size = NetPlayer(rl), rl.board_size
    per_chunk = max(1, CHUNK_GAMES // k)
    outcomes = np.zeros((len(boards), k), np.int8)
    for first in tqdm(range(0, len(boards), per_chunk), unit="chunk", disable=not progress, desc="continuations"):
        chunk = boards[first: first + per_chunk]
        starts = [board for board in chunk for _ in range(k)]
        games = play_games([player], [Plan(record="none")] * len(starts), size=size, komi=komi, rng=rng,
                           starts=starts)
        outcomes[first: first + len(chunk)] = np.array(
            [game.outcome(start.to_move) for game, start in zip(games, starts)]).reshape(len(chunk), k)
    return outcomes


def floor_report(u: np.ndarray, outcomes: np.ndarray, values: dict[str, np.ndarray], size: int) -> dict:
    """The floor overall and by U, and for each named net's predictions in ``values`` its MSE against the
    outcomes and against their mean."""
    k = outcomes.shape[1]
    z = outcomes.astype(np.float64)
    m = z.mean(axis=1)
    variance = (z * z).mean(axis=1) - m * m  # per position, then made unbiased
    variance *= k / (k - 1)
    report = {"positions": len(u), "continuations": k, "floor": float(variance.mean()),
              "floor_95": list(mean_interval(variance)), "by_u": [],
              "value_nets": []}
    edges = np.linspace(0, size * size, 5).round().astype(int)
    stages = [(f"{lo + 1}-{hi}", (u > lo) & (u <= hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    stages = [(name, rows) for name, rows in stages if rows.any()]
    for name, rows in stages:
        report["by_u"].append({"u": name, "positions": int(rows.sum()), "floor": float(variance[rows].mean())})
    for net, v in values.items():
        vs_outcomes = ((v[:, None] - z) ** 2).mean(axis=1)
        vs_expected = (v - m) ** 2 - variance / k
        report["value_nets"].append({
            "net": net, "mse_vs_outcomes": float(vs_outcomes.mean()), "mse_vs_expected": float(vs_expected.mean()),
            "by_u": [{"u": name, "mse_vs_outcomes": float(vs_outcomes[rows].mean()),
                      "mse_vs_expected": float(vs_expected[rows].mean())} for name, rows in stages]})
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rl", required=True, help="the RL policy, which plays after the random move")
    parser.add_argument("--sl", default=None, help="the SL policy, which plays before it (default: shipped)")
    parser.add_argument("--value", nargs="+", default=[], help="value nets to score against the same games")
    parser.add_argument("--positions", type=int, default=400)
    parser.add_argument("--continuations", type=int, default=16, help="games played on from each position")
    parser.add_argument("--komi", type=float, default=7.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.positions < 2 or args.continuations < 2:
        parser.error("--positions and --continuations must be at least 2")

    rl = nets.load(args.rl, kind="policy")
    sl = nets.load(args.sl or nets.default_weights("policy", rl.board_size), kind="policy")
    value_nets = {path: nets.load(path, kind="value") for path in args.value}
    for net in (sl, *value_nets.values()):
        if net.board_size != rl.board_size:
            parser.error(f"the nets' board sizes differ ({net.board_size} and {rl.board_size})")
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    drawn = value_positions(sl, rl, args.positions, komi=args.komi, rng=rng)
    if len(drawn) < 2:
        raise SystemExit(f"training.bench.value_floor: only {len(drawn)} of the games lasted past move U; draw more")
    u = np.array([n for n, _, _ in drawn])
    boards = [board for _, board, _ in drawn]
    outcomes = continuation_outcomes(rl, boards, args.continuations, komi=args.komi, rng=rng,
                                     progress=not args.no_progress)
    planes = np.stack([planes for _, _, planes in drawn])
    values = {path: NetEvaluator(None, net, symmetries="none").value(planes) for path, net in value_nets.items()}
    report = floor_report(u, outcomes, values, rl.board_size)
    report["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['positions']} positions x {report['continuations']} RL games each ({report['seconds']} s)")
    lo, hi = report["floor_95"]
    print(f"floor (MSE of the perfect value function): {report['floor']:.3f}  (95%: {lo:.3f}-{hi:.3f})")
    for row in report["by_u"]:
        print(f"  U {row['u']:>7}: {row['floor']:.3f}  ({row['positions']} positions)")
    for row in report["value_nets"]:
        print(f"{row['net']}: MSE against the outcomes {row['mse_vs_outcomes']:.3f}, "
              f"against their expectation {row['mse_vs_expected']:.3f}")
        for stage in row["by_u"]:
            print(f"  U {stage['u']:>7}: {stage['mse_vs_outcomes']:.3f}, {stage['mse_vs_expected']:.3f}")


if __name__ == "__main__":
    main()
