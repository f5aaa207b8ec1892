"""``gogame-train resignations``: was each resignation of a match right? A judge engine plays the game on.

For every record in the given folders, files or archives (read by :func:`training.data.corpus.read_games`) that ended
in a resignation (``RE[B+R]``/``RE[W+R]``), two copies of the judge engine (GNU Go by default) take the position
where the loser resigned and play it out against each other, the resigner to move, to two passes or the move
cap; the match referee (:func:`training.eval.match.play_game`) scores the end. A resignation stands when the judge's
play-out wins for the other side; it was premature when the resigner wins the play-out. One line per
resignation, then the counts (``--json``: a JSON line too).

A play-out is one line of play by one engine, not proof: a judge at its strongest level and a few seeds
(``--seeds``, one play-out each, the judge's ``{seed}`` replaced in its command line) make it a fair check.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from gogame import sgf
from gogame.coords import Move, opponent
from gtp.engine import GtpError
from training.data.corpus import read_games
from training.eval.match import GtpController, GtpTransportError, Player, play_game

GNUGO = "/usr/games/gnugo --mode gtp --level 10 --chinese-rules --capture-all-dead --seed {seed}"


def play_out(game: sgf.Game, opening: list[tuple[str, Move]], judge: str, seed: int, max_moves: int) -> str:
    """The result (``B+3.5``, ``W+R``, ...) of two copies of ``judge`` playing ``game`` on after ``opening`` (its
    moves)."""
    argv = shlex.split(judge.format(seed=seed))
    with GtpController(argv, label="judge (black)") as black, GtpController(argv, label="judge (white)") as white:
        record = play_game(Player(black, "judge"), Player(white, "judge"), size=game.size, komi=game.komi,
                           max_moves=len(opening) + max_moves, opening=opening)
    return record.result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", help="SGF files of a match, folders or archives of them")
    parser.add_argument("--judge", default=GNUGO, help="the judge's GTP command line; {seed} is replaced by each "
                        f"seed (default: {GNUGO!r})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one play-out per seed (default 0 1)")
    parser.add_argument("--max-moves", type=int, default=200, help="moves a play-out may add before it is "
                        "scored as it stands (default 200)")
    parser.add_argument("--json", action="store_true", help="end with a JSON line of the counts and the games")


def run(args: argparse.Namespace) -> int:
    resigned = [(name, game) for name, game in read_games(args.sources)
                if (game.result or "").upper().endswith("+R") and game.winner]
    if not resigned:
        print("no resignations in these records")
        return 0
    counts = {"resignations": len(resigned), "stands": 0, "premature": 0, "split": 0}
    rows = []
    for name, game in resigned:
        loser = opponent(game.winner)
        opening = game.moves_of(game.main_line())
        try:
            results = [play_out(game, opening, args.judge, seed, args.max_moves) for seed in args.seeds]
        except (GtpTransportError, GtpError, RuntimeError) as exc:
            print(f"gogame-train resignations: {name}: {exc}", file=sys.stderr)
            return 3
        wins = sum(r[:1].upper() == loser for r in results)
        verdict = "stands" if wins == 0 else "premature" if wins == len(results) else "split"
        counts[verdict] += 1
        print(f"{name}: {'black' if loser == 'B' else 'white'} resigned at move {len(opening)}; play-outs "
              f"{', '.join(results)}: {verdict}", flush=True)
        rows.append({"record": name, "resigned": loser, "play_outs": results, "verdict": verdict})
    print(f"{counts['resignations']} resignations: {counts['stands']} stand, {counts['premature']} premature, "
          f"{counts['split']} split between the play-outs")
    if args.json:
        print(json.dumps({**counts, "games": rows}))
    return 0

