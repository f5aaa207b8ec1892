"""``gogame-train demo``: run one lecture demo, or list them."""

from __future__ import annotations

import argparse
import json
import sys

from training.demos.common import DEMOS, DemoDataMissing, describe, run_demo
from training.stopping import add_stop_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", choices=list(DEMOS), metavar="NAME",
                        help="the demo to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the demos and exit")
    parser.add_argument("--quick", action="store_true", help="a run of seconds on a tiny slice (what CI runs)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/demo-NAME)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--resume", action="store_true", help="continue the demo's training runs in --out")
    parser.add_argument("--no-progress", action="store_true")
    add_stop_arguments(parser, checkpoints=False)


def run(args: argparse.Namespace) -> int:
    if args.list or args.name is None:
        for name, title in describe():
            print(f"{name:12s} {title}")
        return 0 if args.list else 2
    out = args.out or f"runs/demo-{args.name}{'-quick' if args.quick else ''}"
    try:
        results = run_demo(args.name, out, quick=args.quick, seed=args.seed, device=args.device,
                           resume=args.resume, progress=not args.no_progress, stop_after_minutes=args.stop_after)
    except DemoDataMissing as exc:
        print(f"gogame-train demo {args.name}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2, default=float))
    print(f"pictures and metrics in {out}", file=sys.stderr)
    return 0
