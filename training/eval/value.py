"""``gogame-train eval-value``: how well a value net predicts the outcomes of a dataset's held-out positions.

``gogame-train eval-value NET DATA --split val`` scores ``NET`` on every position of the split's decided
games (``--one-per-game``: one random position of each, as the value stages validate) and reports the mean
squared error against the outcome for the side to move, the sign accuracy, and both by move-number stage.
DATA is any dataset folder: expert games (``gogame-train dataset``) or self-play value data
(``gogame-train value``), so one net can be scored on the other's positions (AlphaGo's test of a value
net trained on expert games against one trained on self-play).

``--against BASE`` scores a second net on the very same positions and symmetries and reports the
difference of the two MSEs with its 95% interval: paired, so far tighter than two separate runs' figures.

MSE here is the plain mean of ``(z - v)^2`` with ``z`` in {-1, +1}: knowing nothing (v = 0) scores 1.
AlphaGo's figures are on half that scale (its Fig. 2b starts near 0.5 where nothing can be known);
``mse_alphago_scale`` reports ``mse / 2`` for comparison with them.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import torch
from tqdm import tqdm

from gogame import nets
from gogame.stats import mean_interval
from training.data import shards
from training.stages.sl import batch_planes, input_planes


def stage_of(move_number: int, size: int) -> str:
    """The move-number stage of a position: quarters of ``size * size`` moves (``"0-19"`` ... ``"80+"`` on 9x9)."""
    width = size * size // 4
    lo = min(move_number // width, 4) * width
    return f"{lo}+" if lo == 4 * width else f"{lo}-{lo + width - 1}"


def evaluate_value(net: nets.ValueNet, source: shards.PositionBatches, stored_planes: int, size: int,
                   device: str = "cpu", progress: bool = False, baseline: nets.ValueNet | None = None) -> dict:
    """MSE and sign accuracy of ``net`` on every batch of ``source``, overall and by :func:`stage_of`; with a
    ``baseline`` net also its MSE on the same inputs and the paired difference (``net``'s less its)."""
    net = net.to(device).eval()
    baseline = baseline.to(device).eval() if baseline is not None else None
    sums: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])  # stage -> [positions, squared error, signs]
    differences = []
    with torch.no_grad():
        for batch in tqdm(source.batches(0), total=source.num_batches(), unit="batch", disable=not progress):
            planes, _ = batch_planes(batch, stored_planes, net.in_planes, size)
            planes = planes.to(device).float()
            target = batch["outcome"]
            value = net(planes).float().cpu()
            errors = (value - target) ** 2
            if baseline is not None:
                differences.append(errors - (baseline(planes).float().cpu() - target) ** 2)
            for number, err, sign in zip(batch["move_number"].tolist(), errors.tolist(),
                                         ((value > 0) == (target > 0)).tolist()):
                for key in ("all", stage_of(number, size)):
                    tally = sums[key]
                    tally[0] += 1
                    tally[1] += err
                    tally[2] += sign
    if not sums:
        raise ValueError("no decided positions to score")

    def report(tally: list[float]) -> dict:
        n, squared, signs = tally
        return {"positions": n, "mse": squared / n, "mse_alphago_scale": squared / n / 2, "sign_acc": signs / n}

    stages = sorted((k for k in sums if k != "all"), key=lambda s: int(s.split("-")[0].rstrip("+")))
    result = {**report(sums["all"]), "by_move_number": {k: report(sums[k]) for k in stages}}
    if baseline is not None:
        d = torch.cat(differences).double().numpy()
        mse = result["mse"] - float(d.mean())
        result["baseline"] = {"mse": mse, "mse_alphago_scale": mse / 2, "difference": float(d.mean()),
                              "difference_95": list(mean_interval(d))}
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a value net file or trainer checkpoint")
    parser.add_argument("data", help="a dataset folder (expert games or self-play value data)")
    parser.add_argument("--split", choices=list(shards.SPLITS), default="val")
    parser.add_argument("--one-per-game", action="store_true",
                        help="one random position of each game (seeded), as the value stages validate")
    parser.add_argument("--seed", type=int, default=0, help="seeds --one-per-game's draw and the symmetries")
    parser.add_argument("--against", default=None, metavar="BASE",
                        help="a second value net scored on the same positions: report the paired MSE difference")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    net = nets.load(args.checkpoint, kind="value")
    baseline = nets.load(args.against, kind="value") if args.against else None
    meta = shards.dataset_meta(args.data)
    size = meta["size"]
    for scored in [n for n in (net, baseline) if n is not None]:
        if scored.board_size != size:
            raise ValueError(f"the net is for {scored.board_size}x{scored.board_size}, the data for {size}x{size}")
        input_planes(meta["features"], scored.meta["features"])  # the data must carry the net's planes
    paths = shards.shard_paths(args.data, args.split)
    if not paths:
        raise ValueError(f"{args.data} has no {args.split} shards")
    source = shards.PositionBatches(paths, args.batch_size, seed=args.seed, shuffle=False, drop_last=False,
                                    one_per_game=args.one_per_game, decided_only=True)
    report = evaluate_value(net, source, meta["planes"], size, args.device, progress=not args.json, baseline=baseline)
    report.update(checkpoint=args.checkpoint, data=str(args.data), split=args.split, one_per_game=args.one_per_game)
    if baseline is not None:
        report["baseline"]["checkpoint"] = args.against
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['positions']} positions: MSE {report['mse']:.3f} "
          f"(AlphaGo's scale {report['mse_alphago_scale']:.3f}), sign accuracy {report['sign_acc']:.1%}")
    for stage, r in report["by_move_number"].items():
        print(f"  moves {stage:>7}: MSE {r['mse']:.3f}, sign accuracy {r['sign_acc']:.1%} ({r['positions']} positions)")
    if baseline is not None:
        b = report["baseline"]
        lo, hi = b["difference_95"]
        print(f"{args.against}: MSE {b['mse']:.3f}; this net's less its: {b['difference']:+.4f} "
              f"(95%: {lo:+.4f} to {hi:+.4f})")
    return 0
