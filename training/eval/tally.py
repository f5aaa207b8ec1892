"""``gogame-train tally``: one match's figures from the folders of its streams.

A match is often played as several streams (seeds side by side on the cores, machines, sessions), each a
``gogame-train match --out DIR`` folder of ``game-0001.sgf`` ...; the tally reads every stream back as the runner
does when it resumes (engine A black in the odd-numbered games) and reports them as one match: the games, A's wins
with the 95% Wilson interval, the Elo difference, each engine's seconds a genmove, a line per stream, and A's
losses with their length and how they ended, the games to look at first.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from gogame.sgf import Game
from training.eval.match import Tally, WrittenGame, format_summary, game_path, read_game


@dataclass(frozen=True)
class Stream:
    """One ``--out`` folder of a match, its games in the order played."""

    folder: Path
    games: list[WrittenGame]


def read_stream(folder: Path) -> Stream:
    """The games of ``folder``, ``game-0001.sgf`` on until the first number missing; a RuntimeError if it has
    none or one is not a game."""
    games: list[WrittenGame] = []
    while (path := game_path(folder, len(games))).exists():
        games.append(read_game(path))
    if not games:
        raise RuntimeError(f"{folder} holds no match games ({game_path(folder, 0).name} ...)")
    return Stream(folder, games)


def _ending(game: Game) -> str:
    """The first line of the record's comment, ``End: ...`` as the runner writes it, without ``End:``."""
    first = (game.get("C") or "").split("\n", 1)[0]
    return first.removeprefix("End: ").rstrip(".")


def tally(streams: list[Stream]) -> tuple[Tally, list[Tally], list[dict]]:
    """The whole match, each stream's own tally, and A's losses (stream, game number, A's colour, moves, ending)."""
    whole, per_stream, losses = Tally(), [], []
    for stream in streams:
        own = Tally()
        for i, written in enumerate(stream.games):
            a_black = i % 2 == 0
            scores = [t.add(written.result, a_is_black=a_black, disagreement=written.disagreement,
                            thinking=written.thinking) for t in (whole, own)]
            if scores[0] == 0.0:
                losses.append({"stream": str(stream.folder), "game": i + 1, "a_colour": "B" if a_black else "W",
                               "moves": len(written.game.moves_of(written.game.main_line())),
                               "result": written.result, "ending": _ending(written.game)})
        per_stream.append(own)
    return whole, per_stream, losses


def _engine_names(stream: Stream) -> tuple[str, str]:
    first = stream.games[0].game
    return first.get("PB") or "A", first.get("PW") or "B"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("streams", nargs="+", type=Path, help="the --out folders of the match's streams")
    parser.add_argument("--json", action="store_true", help="end with a JSON line: the summary, streams and losses")


def run(args: argparse.Namespace) -> int:
    try:
        streams = [read_stream(folder) for folder in args.streams]
    except RuntimeError as exc:  # bad input: the command line's usual one-line message
        raise ValueError(str(exc)) from None
    sizes = {(s.games[0].game.size, s.games[0].game.komi) for s in streams}
    if len(sizes) > 1:
        raise ValueError(f"the streams are not one match: their (board size, komi) are {sorted(sizes)}")
    whole, per_stream, losses = tally(streams)
    for stream, own in zip(streams, per_stream):
        print(f"{stream.folder}: {own.games} games, A {own.wins_a} - B {own.wins_b}"
              + (f" - draws {own.draws}" if own.draws else ""))
    print(format_summary(whole.summary(), _engine_names(streams[0])))
    for loss in losses:
        print(f"A lost {loss['stream']} game {loss['game']} ({'black' if loss['a_colour'] == 'B' else 'white'}, "
              f"{loss['moves']} moves, {loss['result']}): {loss['ending']}")
    if args.json:
        print(json.dumps({**whole.summary(), "streams": [{"folder": str(s.folder), **t.summary()}
                                                        for s, t in zip(streams, per_stream)], "losses": losses}))
    return 0
