"""``gogame-gtp`` / ``python -m gtp``: the GTP engine's command line."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gogame-gtp",
        description="gogame's GTP version 2 engine for Go GUIs (Sabaki, Lizzie, GoGui, q5Go). "
        "Speaks GTP on stdin/stdout; logs go to stderr.",
    )
    parser.add_argument("--size", type=int, default=19, help="initial board size (default 19)")
    parser.add_argument("--komi", type=float, default=7.5, help="initial komi (default 7.5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("gogame-gtp: the engine needs trained networks and search, which are not in this build yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
