"""``gogame-train match``: play two GTP engines against each other and report who is stronger.

Layers, top to bottom:

* :func:`run` plays ``--games`` games, alternating colours (game ``i``, counted from 0: engine A is black when
  ``i`` is even), writes each one to ``DIR/game-NNNN.sgf`` atomically as soon as it ends, and prints the wins,
  A's win rate with its 95% Wilson interval, the Elo difference with its interval, and each engine's mean
  seconds per ``genmove`` (timed from command to reply; each record's comment keeps its totals). Rerun with the
  same ``DIR``, it reads back the games already written (their ``RE``) and plays only the missing ones; the
  engines are not even started when none is missing. :func:`read_game` reads a written game back, for the
  resume and for ``gogame-train tally`` (several streams' folders as one match).
* :func:`play_game` plays one game. Our own :class:`~gogame.board.Board` is the referee: an engine's move that the
  board rejects (illegal, off the board, unreadable) loses the game by forfeit (``B+F``/``W+F``, the reason in
  the SGF comment). A game ends on two consecutive passes, a resignation, or the move cap (then it is scored as
  it stands). Scored games are counted by :meth:`Board.score` (area, every stone alive, which is right for games
  played out under capture-all-dead rules) and by both engines' ``final_score``; the result used is the
  engines' when both agree with each other, else ours, and the SGF comment says which it was and lists every
  engine that disagreed with ours. Before each game, an engine that knows ``gogame-wait_ready`` (ours) is asked
  it: a gogame engine compiles its search in the background on its first start and plays the policy net's move
  alone meanwhile, which would make the first games a match of raw policies.
* :class:`GtpController` speaks GTP to one engine process over pipes. As in gomill's controller, each way of
  failing has its own exception: :class:`GtpError` for a ``?`` reply (the engine is alive and refused),
  :class:`GtpChannelClosed` for a pipe that closed, :class:`GtpProtocolError` for a reply that is not GTP,
  :class:`GtpTimeout` for an engine that did not answer within the per-command limit. The last three are
  :class:`GtpTransportError`: the engine cannot be trusted any more and the match stops with a clear message
  (the games already written stay written).

Colours are ``"B"``/``"W"``, moves GTP vertices or ``(row, col)`` points as in :mod:`gogame.coords`.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tqdm import tqdm

from gogame import coords, sgf
from gogame.atomic import write_atomically
from gogame.board import Board, IllegalMove, format_result
from gogame.stats import elo_difference, wilson_interval
from gtp.engine import GtpError


WARMUP_TIMEOUT_SECONDS = 900.0  # the most an engine may take to compile its search before a game (ours: a minute)


# -- GTP controller -------------------------------------------------------------------------------------------


class GtpTransportError(Exception):
    """The conversation with the engine broke down; its state is unknown and it should be dropped."""


class GtpChannelClosed(GtpTransportError):
    """The engine's pipe closed (it exited or crashed)."""


class GtpProtocolError(GtpTransportError):
    """The engine answered something that is not a GTP response."""


class GtpTimeout(GtpTransportError):
    """The engine did not answer within the time allowed for one command."""


class GtpController:
    """One GTP engine in a subprocess: ``send(command) -> str`` is the response text without ``= ``.

    ``command`` is an argv list (``shlex.split`` of the command line); ``stderr`` is a writable file for the
    engine's log, or None for DEVNULL. ``timeout`` is the limit in seconds for each command's response.
    Raises OSError (FileNotFoundError for an unknown program) if the engine cannot be started.

    Stdout is read by a thread into a queue, so a silent engine costs one timeout, never a hang.
    """

    def __init__(self, command: list[str], *, stderr: IO[bytes] | None = None, timeout: float = 120.0,
                 label: str = "engine") -> None:
        self.command = command
        self.label = label
        self.timeout = timeout
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr if stderr is not None else subprocess.DEVNULL, text=True, encoding="utf-8",
            errors="replace", bufsize=1)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.closed = False

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)  # end of file

    def _next_line(self, command: str, deadline: float, limit: float) -> str:
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.closed = True  # out of step with the engine from now on: close() kills it
            raise GtpTimeout(f"{self.label} did not answer {command!r} within {limit:g} s") from None
        if line is None:
            self.closed = True
            self._lines.put(None)  # later reads see the end too
            raise GtpChannelClosed(f"{self.label} closed its pipe (exit code {self.process.poll()}) "
                                   f"while answering {command!r}")
        return line.replace("\r", "").rstrip("\n")

    def send(self, command: str, timeout: float | None = None) -> str:
        """Send one command; return the response text (may be empty or several lines). ``timeout``: this
        command's limit in seconds, if not the controller's.

        Raises GtpError for a ``?`` reply, GtpChannelClosed, GtpProtocolError or GtpTimeout (see the module).
        """
        if self.closed:
            raise GtpChannelClosed(f"{self.label} is closed; cannot send {command!r}")
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.closed = True
            raise GtpChannelClosed(f"{self.label} closed its pipe (exit code {self.process.poll()}) "
                                   f"before {command!r}") from None
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        first = self._next_line(command, deadline, limit)
        while not first.strip():  # tolerate stray blank lines before a response
            first = self._next_line(command, deadline, limit)
        if first[0] not in "=?":
            self.closed = True
            raise GtpProtocolError(f"{self.label} answered {command!r} with {first!r}, not a GTP response")
        lines = [first[1:].strip()]
        while (line := self._next_line(command, deadline, limit)).strip():
            lines.append(line)
        text = "\n".join(lines).strip()
        if first[0] == "?":
            raise GtpError(text, command)
        return text

    def close(self) -> None:
        """Ask a healthy engine to quit, then make sure it is gone (killed after 5 s). Never raises.

        An engine that broke the protocol or timed out is killed at once."""
        if not self.closed:
            try:
                self.timeout = min(self.timeout, 5.0)
                self.send("quit")
            except (GtpError, GtpTransportError):
                pass
        elif self.process.poll() is None:
            self.process.kill()
        self.closed = True
        try:
            if self.process.stdin:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> GtpController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the tally ------------------------------------------------------------------------------------------------


def _finite(x: float | None) -> float | None:
    """JSON has no infinity: an unbounded Elo is null."""
    return None if x is None or not math.isfinite(x) else round(x, 6)


@dataclass
class Tally:
    """The match so far, from engine A's side."""

    games: int = 0
    wins_a: int = 0
    wins_b: int = 0
    draws: int = 0  # jigo, void or unknown results count as half a win each
    disagreements: int = 0
    # engine label -> [moves, seconds] of the genmoves timed (games written before timing existed have none)
    thinking: dict[str, list[float]] = field(default_factory=lambda: {"A": [0, 0.0], "B": [0, 0.0]})

    def add(self, result: str | None, a_is_black: bool, disagreement: bool = False,
            thinking: dict[str, tuple[int, float]] | None = None) -> float:
        """Count one game; ``thinking`` maps a colour to its genmoves ``(count, seconds)``. Returns A's score in
        it: 1 a win, 0 a loss, 0.5 no winner."""
        self.games += 1
        self.disagreements += bool(disagreement)
        for colour, (moves, seconds) in (thinking or {}).items():
            label = "A" if (colour == "B") == a_is_black else "B"
            self.thinking[label][0] += moves
            self.thinking[label][1] += seconds
        winner = (result or "").strip().upper()[:2]
        if winner not in ("B+", "W+"):
            self.draws += 1
            return 0.5
        if (winner == "B+") == a_is_black:
            self.wins_a += 1
            return 1.0
        self.wins_b += 1
        return 0.0

    def summary(self) -> dict:
        n = self.games
        winrate = (self.wins_a + 0.5 * self.draws) / n if n else None
        lo, hi = wilson_interval(self.wins_a + 0.5 * self.draws, n)
        return {
            "games": n, "wins_a": self.wins_a, "wins_b": self.wins_b, "draws": self.draws,
            "winrate_a": winrate, "ci95": [lo, hi],
            "elo": _finite(elo_difference(winrate)) if winrate is not None else None,
            "elo_ci95": [_finite(elo_difference(lo)), _finite(elo_difference(hi))],
            "disagreements": self.disagreements,
            "seconds_per_move": [seconds / moves if moves else None for moves, seconds in self.thinking.values()],
        }


# -- one game -------------------------------------------------------------------------------------------------


_SCORE = re.compile(r"^\s*([BW])\+(\d+(?:\.\d*)?)\s*$", re.IGNORECASE)


def parse_score(text: str) -> float | None:
    """An engine's ``final_score`` (``B+3.5``, ``W+2``, ``0``) as black's margin; None if unreadable."""
    if text.strip() in ("0", "Jigo", "jigo", "Draw"):
        return 0.0
    match = _SCORE.match(text)
    if not match:
        return None
    margin = float(match.group(2))
    return margin if match.group(1).upper() == "B" else -margin


_SIDE = {"B": "black", "W": "white"}


@dataclass
class GameRecord:
    """A finished game: moves, result (SGF ``RE``), how it ended, and the scoring notes for the comment."""

    moves: list[tuple[str, coords.Move]]
    result: str
    reason: str
    notes: list[str] = field(default_factory=list)
    disagreement: bool = False
    # colour -> (genmoves, seconds)
    thinking: dict[str, tuple[int, float]] = field(default_factory=lambda: {"B": (0, 0.0), "W": (0, 0.0)})


@dataclass
class Player:
    controller: GtpController
    name: str
    waits_for_search: bool = False  # it knows ``gogame-wait_ready``: each game waits for its search first


def play_game(black: Player, white: Player, *, size: int, komi: float, max_moves: int,
              opening: Sequence[tuple[str, coords.Move]] = ()) -> GameRecord:
    """Play one game between two started engines; see the module docstring for the rules of the referee.

    ``opening``: moves ``(colour, move)`` played on our board and sent to both engines before the first
    ``genmove`` (the game goes on from that position; the record holds them too).
    Raises GtpTransportError when an engine breaks down, GtpError when one refuses the set-up commands or an
    opening move, IllegalMove for an opening move our board rejects, and RuntimeError when an engine refuses a
    move our board accepts (the engines' rules differ: the game cannot go on).
    """
    players = {"B": black, "W": white}
    for player in (black, white):
        player.controller.send(f"boardsize {size}")
        player.controller.send("clear_board")
        player.controller.send(f"komi {komi:g}")
        if player.waits_for_search:
            player.controller.send("gogame-wait_ready", timeout=WARMUP_TIMEOUT_SECONDS)
    board = Board(size, komi)
    for colour, move in opening:
        board.play(move, colour)
        for player in (black, white):
            player.controller.send(f"play {colour.lower()} {coords.to_gtp(move)}")
    thinking = {"B": (0, 0.0), "W": (0, 0.0)}
    while True:
        if board.is_over():
            reason = "two passes"
            break
        if board.move_number >= max_moves:
            reason = f"move cap ({max_moves})"
            break
        colour = board.to_move
        other = coords.opponent(colour)
        mover = players[colour]
        started = time.perf_counter()
        try:
            reply = mover.controller.send(f"genmove {colour.lower()}")
        except GtpError as exc:
            return GameRecord(board.history, f"{other}+F",
                              f"{mover.name} ({_SIDE[colour]}) failed genmove: {exc.message}", thinking=thinking)
        moves, seconds = thinking[colour]
        thinking[colour] = (moves + 1, round(seconds + time.perf_counter() - started, 2))
        if reply.strip().lower() == "resign":
            board.resign(colour)
            return GameRecord(board.history, board.result(), f"{mover.name} ({_SIDE[colour]}) resigned",
                              thinking=thinking)
        try:
            board.play(reply.strip(), colour)
        except (IllegalMove, ValueError) as exc:
            return GameRecord(board.history, f"{other}+F",
                              f"{mover.name} ({_SIDE[colour]}) forfeits: move {reply!r} rejected ({exc})",
                              thinking=thinking)
        vertex = coords.to_gtp(board.history[-1][1])
        try:
            players[other].controller.send(f"play {colour.lower()} {vertex}")
        except GtpError as exc:
            raise RuntimeError(f"{players[other].name} refused {colour} {vertex}, legal on our board "
                               f"(do the engines play the same rules?): {exc.message}") from None
    return _score(board, players, reason, thinking)


def _score(board: Board, players: dict[str, Player], reason: str,
           thinking: dict[str, tuple[int, float]]) -> GameRecord:
    ours = board.score("area")
    notes = [f"Ours (area, all stones alive): {format_result(ours)}"]
    theirs: list[float | None] = []
    disagreement = False
    for colour, player in players.items():
        try:
            text = player.controller.send("final_score")
        except GtpError as exc:
            text = f"? {exc.message}"
        margin = parse_score(text)
        theirs.append(margin)
        notes.append(f"{player.name} as {_SIDE[colour]}, final_score: {text or '(empty)'}")
        if margin is not None and margin != ours:
            disagreement = True
            notes.append(f"Disagreement: {player.name} says {format_result(margin)}, ours {format_result(ours)}")
    if theirs[0] is not None and theirs[0] == theirs[1]:
        result = format_result(theirs[0])
        notes.insert(0, f"Result by the engines' consensus: {result}")
    else:
        result = format_result(ours)
        notes.insert(0, f"Result by our board (engines did not agree): {result}")
    return GameRecord(board.history, result, reason, notes, disagreement, thinking)


# -- the match ------------------------------------------------------------------------------------------------


def game_path(out: Path, index: int) -> Path:
    """``DIR/game-0001.sgf`` for the first game (``index`` 0)."""
    return out / f"game-{index + 1:04d}.sgf"


_THINKING = re.compile(r"^Thinking: black (\d+) genmoves ([\d.]+) s, white (\d+) genmoves ([\d.]+) s$", re.MULTILINE)


def _thinking_note(thinking: dict[str, tuple[int, float]]) -> str:
    (b_moves, b_seconds), (w_moves, w_seconds) = thinking["B"], thinking["W"]
    return f"Thinking: black {b_moves} genmoves {b_seconds:.2f} s, white {w_moves} genmoves {w_seconds:.2f} s"


@dataclass(frozen=True)
class WrittenGame:
    """A game as :func:`run` wrote it, read back: the record, its result, whether its comment records a score
    disagreement, and the engines' thinking, a colour's genmoves ``(count, seconds)`` (empty for records written
    before timing existed)."""

    game: sgf.Game
    result: str | None
    disagreement: bool
    thinking: dict[str, tuple[int, float]]


def read_game(path: Path) -> WrittenGame:
    """Read back one game the runner wrote; a RuntimeError names the file that is not one."""
    try:
        game = sgf.load(path)[0]
    except (sgf.SGFError, IndexError, OSError) as exc:
        raise RuntimeError(f"cannot read the match game {path}: {exc}") from None
    comment = game.get("C") or ""
    timed = _THINKING.search(comment)
    thinking = {"B": (int(timed[1]), float(timed[2])), "W": (int(timed[3]), float(timed[4]))} if timed else {}
    return WrittenGame(game, game.result, "Disagreement:" in comment, thinking)


def _write_game(path: Path, record: GameRecord, *, size: int, komi: float, black: Player, white: Player,
                commands: dict[str, str]) -> None:
    comment = "\n".join([f"End: {record.reason}.", *record.notes, _thinking_note(record.thinking),
                         f"Black: {commands['B']}", f"White: {commands['W']}"])
    game = sgf.Game.from_moves(record.moves, size=size, komi=komi, result=record.result, properties={
        "PB": black.name, "PW": white.name, "RU": "Chinese", "C": comment,
        "DT": time.strftime("%Y-%m-%d"), "AP": "gogame-train match"})
    text = sgf.dumps(game).encode("utf-8")
    write_atomically(path, lambda f: f.write(text))


def _start(label: str, command: str, out: Path, logs: bool, timeout: float) -> Player:
    argv = shlex.split(command)
    if not argv:
        raise ValueError(f"engine {label}: empty command line")
    log = open(out / f"engine-{label.lower()}.log", "ab") if logs else None
    try:
        controller = GtpController(argv, stderr=log, timeout=timeout, label=f"engine {label} ({argv[0]})")
    finally:
        if log is not None:
            log.close()  # the child holds its own copy of the descriptor
    try:
        name = _answer(controller, "name") or argv[0]
        waits = _answer(controller, "known_command gogame-wait_ready") == "true"
    except BaseException:
        controller.close()
        raise
    return Player(controller, name, waits)


def _answer(controller: GtpController, command: str) -> str:
    """The engine's answer to an optional command, ``""`` if it refuses it."""
    try:
        return controller.send(command)
    except GtpError:
        return ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engine_a", metavar="ENGINE_A", help="command line of engine A (quoted, shlex-split)")
    parser.add_argument("engine_b", metavar="ENGINE_B", help="command line of engine B")
    parser.add_argument("--games", type=int, required=True,
                        help="games to play in all (A is black in the odd-numbered files)")
    parser.add_argument("--size", type=int, default=19, help="board size (default 19)")
    parser.add_argument("--komi", type=float, default=7.5, help="komi (default 7.5)")
    parser.add_argument("--out", required=True, help="folder for the SGF files and engine logs; rerun to resume")
    parser.add_argument("--max-moves", type=int, default=None, help="score the game as it stands after this many "
                        "moves (default 3*size*size)")
    parser.add_argument("--move-timeout", type=float, default=120.0, help="seconds an engine may take to answer "
                        "any one command (default 120)")
    parser.add_argument("--no-logs", action="store_true", help="discard the engines' stderr instead of logging "
                        "it to OUT/engine-a.log and engine-b.log")
    parser.add_argument("--json", action="store_true", help="end with a JSON line of the summary")


def format_summary(summary: dict, names: tuple[str, str]) -> str:
    """The report's lines for a :meth:`Tally.summary`, the engines named by ``names`` (A, B)."""
    def elo(x: float | None, sign: int = 0) -> str:
        return f"{x:+.0f}" if x is not None else ("-inf" if sign < 0 else "+inf")

    lines = [f"games: {summary['games']}",
             f"wins: A {summary['wins_a']} ({names[0]}), B {summary['wins_b']} ({names[1]}), "
             f"draws {summary['draws']}"]
    if summary["games"]:
        lo, hi = summary["ci95"]
        p = summary["winrate_a"]
        elo_lo, elo_hi = summary["elo_ci95"]
        lines.append(f"win rate of A: {p:.3f} (95% CI {lo:.3f}-{hi:.3f})")
        lines.append(f"Elo of A over B: {elo(summary['elo'], 1 if p >= 0.5 else -1)} "
                     f"(95% CI {elo(elo_lo, -1)} to {elo(elo_hi, 1)})")
    lines.append(f"score disagreements (ours vs an engine's): {summary['disagreements']}")
    timed = [f"{label} {t:.2f} s" for label, t in zip("AB", summary["seconds_per_move"]) if t is not None]
    if timed:
        lines.append(f"seconds per genmove: {', '.join(timed)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.games < 1:
        raise SystemExit("gogame-train match: --games must be at least 1")
    coords.check_size(args.size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    max_moves = args.max_moves if args.max_moves is not None else 3 * args.size * args.size
    commands = {"A": args.engine_a, "B": args.engine_b}
    tally = Tally()
    todo = []
    players: dict[str, Player] = {}
    names = (args.engine_a, args.engine_b)
    try:
        for i in range(args.games):
            path = game_path(out, i)
            if path.exists():
                written = read_game(path)
                if written.game.size != args.size or written.game.komi != args.komi:
                    raise RuntimeError(f"{path} is a {written.game.size}x{written.game.size} game with komi "
                                       f"{written.game.komi:g}, not {args.size}x{args.size} with komi "
                                       f"{args.komi:g}: use another --out")
                tally.add(written.result, a_is_black=i % 2 == 0, disagreement=written.disagreement,
                          thinking=written.thinking)
            else:
                todo.append(i)
        if tally.games:
            print(f"resuming: {tally.games} game(s) already in {out}", file=sys.stderr)
        if todo:
            for label in ("A", "B"):
                players[label] = _start(label, commands[label], out, not args.no_logs, args.move_timeout)
            a_name, b_name = players["A"].name, players["B"].name
            if a_name == b_name:  # two copies of one program: tell them apart in the records
                players["A"].name, players["B"].name = f"{a_name} (A)", f"{b_name} (B)"
            names = (players["A"].name, players["B"].name)
        with tqdm(total=args.games, initial=tally.games, unit="game", desc="match", file=sys.stderr) as bar:
            bar.set_postfix_str(f"A {tally.wins_a} - B {tally.wins_b}")
            for i in todo:
                a_black = i % 2 == 0
                black, white = (players["A"], players["B"]) if a_black else (players["B"], players["A"])
                record = play_game(black, white, size=args.size, komi=args.komi, max_moves=max_moves)
                cmd = {"B": commands["A" if a_black else "B"], "W": commands["B" if a_black else "A"]}
                _write_game(game_path(out, i), record, size=args.size, komi=args.komi, black=black, white=white,
                            commands=cmd)
                tally.add(record.result, a_is_black=a_black, disagreement=record.disagreement,
                          thinking=record.thinking)
                bar.set_postfix_str(f"A {tally.wins_a} - B {tally.wins_b}" +
                                    (f" - draws {tally.draws}" if tally.draws else ""))
                bar.update(1)
    except (GtpTransportError, GtpError, RuntimeError) as exc:
        print(f"gogame-train match: {exc}", file=sys.stderr)
        print(f"gogame-train match: stopped after {tally.games} game(s); rerun to resume", file=sys.stderr)
        return 3
    finally:
        for player in players.values():
            player.controller.close()

    summary = tally.summary()
    print(format_summary(summary, names))
    if args.json:
        print(json.dumps(summary))
    return 0
