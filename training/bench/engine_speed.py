"""The shipped engines' visits per second, variants side by side in one run: before and after, threads, batches.

Run: ``python -m training.bench.engine_speed [--before DIR] [--variant LABEL[@DIR]:OPTION=VALUE,...]
[--sizes 9 19] [--positions 4] [--rounds 3]``.

A *variant* is ``gogame.Engine.load(size=S, seed=0, **options)`` (the shipped nets and rollout policy, default
settings but for ``options``) in its own worker process with ``PYTHONPATH=DIR``: ``--before DIR`` adds the
variant ``before``, the engine of another checkout (``git worktree add DIR COMMIT``) with its defaults; ``after``
is this checkout's engine with its defaults; each ``--variant`` adds one more, for example
``--variant threads1:threads=1,batch_size=32`` (this checkout) or ``--variant old@DIR:torch_threads=1``. Options
are :class:`gogame.Engine` keyword arguments, values read as Python literals, and ``openvino=THREADS``: the nets
run by OpenVINO's CPU plugin (:func:`training.bench.inference.openvino_forward`; measured, not shipped). One
process per variant, because torch's thread count is per process.

Each worker loads its engine and searches every position once untimed (numba kernels, torch's oneDNN primitives
are made on first use); then, ``--rounds`` times, every position is searched by every variant in turn (so that
load changes hit all alike), each search from a fresh tree with the engine's default limit (400 visits). The
positions are move 20 (9x9) or move 80 (19x19) of the first ``--positions`` games of the corpus. The report gives
each variant's visits per second (simulations over search seconds, :class:`gogame.mcts.SearchStats`; median over
the searches), the share of search time outside the networks (``1 - net_seconds / seconds``), and the ratio to
the first variant (``before`` when given, else ``after``): the median of the per-search ratios and the 95%
interval of their geometric mean. Workers idle while another searches. Run it under ``nice`` on a shared machine
and read the ratios.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gogame import sgf
from training.data.corpus import read_games

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file is training/bench/engine_speed.py)
SHARED_DATA = ROOT.parent / "shared" / "data"  # ../shared/data beside the checkout
CORPUS = {9: SHARED_DATA / "pro9.tar.xz", 19: SHARED_DATA / "pro19.tar.xz"}
MOVE = {9: 20, 19: 80}


def parse_variant(spec: str) -> tuple[str, Path, dict]:
    """``LABEL[@DIR][:KEY=VALUE,...]`` -> (label, checkout, Engine options); ValueError for a malformed spec."""
    head, _, tail = spec.partition(":")
    label, _, folder = head.partition("@")
    options = {}
    for item in filter(None, tail.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"variant {spec!r}: options are KEY=VALUE separated by commas")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value  # a bare word: a string ("onnx")
    if not label:
        raise ValueError(f"variant {spec!r} has no label")
    return label, Path(folder).resolve() if folder else ROOT, options


def positions(size: int, count: int) -> list[tuple[str, int]]:
    """``count`` positions of the corpus as (SGF text of the game, moves to replay)."""
    out = []
    for _, game in read_games(str(CORPUS[size]), size):
        if len(game.moves_of(game.main_line())) > MOVE[size]:
            out.append((sgf.dumps(game), MOVE[size]))
        if len(out) == count:
            break
    return out


class Worker:
    """One variant's engine in a subprocess: :meth:`search` position ``i`` and get its SearchStats fields."""

    def __init__(self, folder: Path, size: int, options: dict, games: list[tuple[str, int]]) -> None:
        env = {**os.environ, "PYTHONPATH": str(folder)}
        spec = json.dumps({"size": size, "options": options, "games": games})
        # -P: the checkout on PYTHONPATH is imported, not this file's folder's neighbours
        self.proc = subprocess.Popen([sys.executable, "-P", str(Path(__file__).resolve()), "--worker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.proc.stdin.write(spec + "\n")

    def ready(self) -> dict:
        return self._answer()

    def search(self, i: int) -> dict:
        self.proc.stdin.write(f"{i}\n")
        return self._answer()

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a worker died (exit status {self.proc.wait()}): see its error above")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def worker() -> None:
    """The worker's side of :class:`Worker`: only API that every checkout of the engine has."""
    import torch

    import gogame
    from gogame import sgf

    spec = json.loads(sys.stdin.readline())
    size = spec["size"]
    options = dict(spec["options"])
    openvino = options.pop("openvino", None)
    engine = gogame.Engine.load(size=size, seed=0, **options)
    if openvino:  # measured, not shipped: OpenVINO in place of the engine's runners (this checkout only)
        from gogame import inference
        from training.bench.inference import openvino_forward

        ev = engine.evaluator
        for net in (ev.policy_net, ev.value_net):
            if net is not None:
                shape = (net.in_planes, size, size)
                model = inference.export_model(net, shape, inference.model_key(net, shape))
                ev._runners[net.kind] = openvino_forward(model, openvino)
    boards = [sgf.loads(text)[0].board_at(n) for text, n in spec["games"]]

    def search(board) -> dict:
        engine.mcts.set_root(gogame.Board(size))  # a fresh tree for the position
        s = engine.analyze(board).stats
        return {"simulations": s.simulations, "seconds": s.seconds, "net_seconds": s.net_seconds}

    for board in boards:  # untimed: compiles and allocates
        search(board)
    backend = getattr(engine.evaluator, "backend", "torch")
    print(json.dumps({"gogame": gogame.__file__, "backend": backend, "batch": engine.config.batch_size,
                      "threads": engine.config.threads, "torch_threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        print(json.dumps(search(boards[int(line)])), flush=True)


def ratio_text(ratios: list[float]) -> str:
    """The median of per-search speed ratios and the 95% interval of their geometric mean (ratios multiply)."""
    from gogame.stats import mean_interval

    lo, hi = np.exp(mean_interval(np.log(ratios)))
    return f"{statistics.median(ratios):.2f}x ({lo:.2f}-{hi:.2f})"


def bench(size: int, variants: list[tuple[str, Path, dict]], args: argparse.Namespace) -> dict[str, list[dict]]:
    games = positions(size, args.positions)
    workers = {label: Worker(folder, size, options, games) for label, folder, options in variants}
    try:
        for label, w in workers.items():
            info = w.ready()
            print(f"  {size}x{size} {label}: {info}", flush=True)
        results: dict[str, list[dict]] = {label: [] for label in workers}
        with tqdm(total=args.rounds * len(games) * len(workers), desc=f"{size}x{size}", leave=False) as bar:
            for _ in range(args.rounds):
                for i in range(len(games)):
                    for label, w in workers.items():
                        results[label].append(w.search(i))
                        bar.update()
    finally:
        for w in workers.values():
            w.close()
    rates = {label: [r["simulations"] / r["seconds"] for r in rs] for label, rs in results.items()}
    first = next(iter(rates))
    for label, rs in results.items():
        outside = statistics.median(1 - r["net_seconds"] / r["seconds"] for r in rs)
        ratio = "" if label == first else ratio_text([a / b for a, b in zip(rates[label], rates[first])])
        print(f"{size:>4} {label:>14} {len(rs):>8} {statistics.median(rates[label]):>9.1f} {100 * outside:>11.1f}%  "
              f"{ratio}", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of the engine to compare with (variant 'before')")
    parser.add_argument("--variant", action="append", default=[], type=parse_variant,
                        help="LABEL[@DIR][:KEY=VALUE,...]: one more engine (Engine options; DIR: another checkout)")
    parser.add_argument("--no-after", action="store_true", help="leave out this checkout's default engine")
    parser.add_argument("--sizes", type=int, nargs="+", default=[9, 19])
    parser.add_argument("--positions", type=int, default=4, help="corpus positions per size")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of searches")
    parser.add_argument("--json", type=Path, help="also write every search's SearchStats fields here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker()
        return
    variants = [("before", args.before.resolve(), {})] if args.before else []
    variants += [] if args.no_after else [("after", ROOT, {})]
    variants += args.variant
    if len(variants) < 2:
        parser.error("give at least two variants (--before DIR, --variant ...)")
    print("command: python -m training.bench.engine_speed " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; variants: "
          + "; ".join(f"{label} {folder} {options}" for label, folder, options in variants))
    print(f"{'size':>4} {'variant':>14} {'searches':>8} {'visits/s':>9} {'outside nets':>12}  ratio to "
          f"{variants[0][0]}: median (95% interval of the geometric mean)")
    results = {size: bench(size, variants, args) for size in args.sizes}
    if args.json:
        args.json.write_text(json.dumps({"variants": [[label, str(folder), options] for label, folder, options
                                                      in variants], "searches": results}, indent=1))
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
