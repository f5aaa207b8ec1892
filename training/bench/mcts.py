"""Search speed benchmark: simulations per second against batch size, and the tree's share of search time.

Run: ``python -m training.bench.mcts [--sizes 9 19] [--batches 1 8 16 32] [--seconds 2] [--preset small]``.
For each board size it builds an untrained policy and value net of ``--preset`` (the speed does not depend on the
weights), warms up (numba kernels, torch), then for each batch size searches the empty board for ``--seconds``
from a fresh tree and reports simulations per second and where the time went: the numba tree kernels (selection
with board replay and expansion, priors, backup), feature planes, the network forward passes, and waiting for
rollouts once the networks were done. The target is a tree share of at most 10%. Rollouts are the shipped rollout
policy when it exists, else uniform random playouts (``--rollout uniform`` forces them). ``--precisions bf16 fp32``
measures the networks under bf16 autocast (where the CPU has native bf16) and in fp32 side by side. The nets run on
the torch backend; ``python -m training.bench.inference`` compares the backends.
"""

from __future__ import annotations

import argparse
import platform
import sys

import torch

from gogame import Board, nets
from gogame import rollout as ro
from gogame.api import NetEvaluator
from gogame.mcts import MCTS, Rollouts, SearchConfig, SearchStats


def bench(size: int, batch: int, seconds: float, args: argparse.Namespace, rollout, bf16: bool) -> SearchStats:
    torch.manual_seed(0)
    evaluator = NetEvaluator(nets.build("policy", 48, size, args.preset), nets.build("value", 49, size, args.preset),
                             seed=0, bf16=bf16, backend="torch")
    config = SearchConfig(batch_size=batch, lambda_=args.lambda_, threads=args.threads, seed=0)
    search = MCTS(evaluator, config, Rollouts(rollout, args.threads))
    search.set_root(Board(size))
    return search.search(seconds=seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[9, 19])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--seconds", type=float, default=2.0, help="search time per configuration")
    parser.add_argument("--preset", default="small", choices=list(nets.PRESETS))
    parser.add_argument("--lambda", dest="lambda_", type=float, default=0.5, help="leaf value mix")
    parser.add_argument("--threads", type=int, default=2, help="rollout threads")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rollout", choices=["default", "uniform"], default="default")
    parser.add_argument("--precisions", nargs="+", choices=["bf16", "fp32"], default=["bf16"],
                        help="network precisions to compare (bf16 only where the CPU computes it natively)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    rollout = ro.RolloutPolicy.load() if args.rollout == "default" and ro.DEFAULT_ROLLOUT.exists() else None

    print("command: python -m training.bench.mcts " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"cpu: {platform.processor() or platform.machine()}, torch threads {args.torch_threads}, rollout "
          f"threads {args.threads}, nets {args.preset} {nets.PRESETS[args.preset]}, lambda {args.lambda_}, "
          f"rollouts {'policy' if rollout else 'uniform'}, native bf16 {nets.bf16_native('cpu')}")
    print(f"{'size':>4} {'prec':>4} {'batch':>5} {'sims':>6} {'sims/s':>8} {'tree%':>6} {'feat%':>6} {'net%':>6} "
          f"{'wait%':>6} {'coll':>5}")
    for size in args.sizes:
        for precision in args.precisions:
            bench(size, max(args.batches), 0.5, args, rollout, precision == "bf16")  # warm-up: compile, allocate
        for batch in args.batches:
            for precision in args.precisions:  # side by side, so that load changes hit both alike
                st = bench(size, batch, args.seconds, args, rollout, precision == "bf16")
                share = lambda x: 100 * x / st.seconds  # noqa: E731
                print(f"{size:>4} {precision:>4} {batch:>5} {st.simulations:>6} {st.simulations / st.seconds:>8.1f} "
                      f"{share(st.tree_seconds):>6.1f} {share(st.feature_seconds):>6.1f} {share(st.net_seconds):>6.1f} "
                      f"{share(st.rollout_wait_seconds):>6.1f} {st.collisions:>5}", flush=True)


if __name__ == "__main__":
    main()
