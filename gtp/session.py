"""The GTP game state and its command handlers: board, komi, move history, undo by replay, handicap, time
settings, and the player that generates moves.

Scope: the Go meaning of the GTP commands. The protocol text (ids, ``=``/``?``, blank lines, the I/O loop) is
:mod:`gtp.engine`; the search is :class:`gogame.api.Engine`, reached only through a *player* (see
:class:`Player`): it gets a board copy and a time budget and returns a vertex or an analysis, and never sees
GTP text.

Vocabulary as in :mod:`gogame.coords`: a *colour* is ``"B"`` or ``"W"``; a *move* a ``(row, col)`` point or
None for pass; a *vertex* its GTP text.

State. The position is rebuilt from the history (handicap stones or a loaded record, then ``moves``) after undo,
komi and size changes, as gomill's gtp_states does, so undo is exact (ko and superko included) whatever the board
keeps. A record loaded by ``loadsgf`` is history: its moves are replayed under simple ko (what was played was
legal under the record's rules: a Japanese game may repeat a long cycle), with its setup stones (``AB``/``AW``/
``AE``) in whichever node they stand; from the loaded position on the engine's rules apply (positional superko,
counting positions from there). ``undo`` may take back the record's moves too.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from gogame import coords, sgf
from gogame.board import Board, IllegalMove, check_komi, fixed_handicap_points
from gtp.engine import GtpError, Stream, log

# -- time ------------------------------------------------------------------------------------------------------

TIME_SYSTEMS = ("none", "absolute", "byoyomi", "canadian")
SAFETY_SECONDS = 1.0  # kept back from any clock for lag
MIN_SECONDS = 0.1  # the smallest budget a move gets
MIN_MOVES_LEFT = 10  # main time is never spread over fewer moves than this
MAX_RECORD_MOVES = 5000  # loadsgf refuses longer records (each undo replays the record; no real game comes close)
WARMUP_PATIENCE_SECONDS = 15.0  # genmove waits this long from the start of a background warm-up for the search
WARMUP_THREAD = "gogame-warm-up"  # the background warm-up thread's name
PONDER_SLICE_SECONDS = 0.05  # pondering searches in slices this long, checking for the next command between them
GOGUI_SEARCH_SECONDS = 1.0  # the win-rate view's search when no --time is set
# GoGui's analyze menu: type/label/command (gfx: the reply is drawn on the board).
GOGUI_ANALYZE_COMMANDS = (
    "gfx/Policy heatmap/gogame-policy",
    "gfx/Win rates (search)/gogame-winrates",
    "gfx/Ownership (rollouts)/gogame-ownership",
)


@dataclass
class Clock:
    """One colour's clock as the controller last reported it (``time_left``) or as the settings start it.

    ``stones`` is 0 in main time; in byo-yomi it is the stones (canadian) or periods (japanese) left."""

    seconds: float
    stones: int = 0


@dataclass
class TimeControl:
    """A time system (``system`` in :data:`TIME_SYSTEMS`) and both clocks.

    ``main``: main time in seconds. ``period``: byo-yomi time (canadian: for ``stones`` stones; japanese: per
    period, ``periods`` of them)."""

    system: str = "none"
    main: float = 0.0
    period: float = 0.0
    stones: int = 0
    periods: int = 0
    clocks: dict[str, Clock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.system not in TIME_SYSTEMS:
            raise ValueError(f"time system must be one of {TIME_SYSTEMS}, not {self.system!r}")
        if not self.clocks:
            self.clocks = {c: self._start() for c in coords.COLOURS}

    def _start(self) -> Clock:
        if self.main > 0 or self.system == "absolute":
            return Clock(self.main, 0)
        if self.system == "canadian":
            return Clock(self.period, self.stones)
        if self.system == "byoyomi":
            return Clock(self.period, self.periods)
        return Clock(0.0, 0)

    @classmethod
    def from_gtp(cls, main: float, byo: float, stones: int) -> TimeControl:
        """GTP ``time_settings``: byo > 0 with 0 stones means no limit; byo 0 means absolute; else canadian."""
        if main < 0 or byo < 0 or stones < 0:
            raise ValueError("negative time")
        if byo > 0 and stones == 0:
            return cls("none")
        if byo == 0:
            return cls("absolute", main) if main > 0 else cls("none")
        return cls("canadian", main, byo, stones)

    def update(self, colour: str, seconds: float, stones: int) -> None:
        """GTP ``time_left``."""
        self.clocks[colour] = Clock(max(0.0, seconds), max(0, stones))

    def spend(self, colour: str, seconds: float) -> None:
        """Charge our own clock for a move we made (the controller's next ``time_left`` overrides it)."""
        clock = self.clocks[colour]
        clock.seconds -= seconds
        if clock.stones > 0 and self.system == "canadian":
            clock.stones -= 1
            if clock.stones == 0:
                clock.seconds, clock.stones = self.period, self.stones
        elif clock.stones > 0 and self.system == "byoyomi":
            clock.seconds = self.period  # a move within the period restarts it
        elif clock.seconds <= 0 and self.system in ("canadian", "byoyomi"):  # main time ran out
            clock.seconds = self.period
            clock.stones = self.stones if self.system == "canadian" else self.periods
        clock.seconds = max(0.0, clock.seconds)

    def budget(self, colour: str, empty_points: int) -> float | None:
        """Seconds to think about the next move of ``colour``; None without a time limit.

        In main time: the remaining main time over an estimate of our moves left (half the empty points, at
        least :data:`MIN_MOVES_LEFT`), plus most of a byo-yomi period when one follows. In canadian byo-yomi:
        the period's time over its stones left. In japanese byo-yomi: one period. Always at least
        :data:`SAFETY_SECONDS` below the clock and never under :data:`MIN_SECONDS`."""
        if self.system == "none":
            return None
        clock = self.clocks[colour]
        moves_left = max(MIN_MOVES_LEFT, empty_points // 2)
        if clock.stones == 0:  # main time (or absolute)
            share = clock.seconds / moves_left
            if self.system != "absolute" and self.period > 0:
                per_move = self.period / self.stones if self.system == "canadian" else self.period
                share += 0.8 * per_move
                usable = clock.seconds + per_move - SAFETY_SECONDS
            else:
                usable = clock.seconds - SAFETY_SECONDS
        elif self.system == "canadian":
            share = clock.seconds / clock.stones
            usable = clock.seconds - SAFETY_SECONDS
        else:
            share = usable = clock.seconds - SAFETY_SECONDS
        return max(MIN_SECONDS, min(share, usable))


# -- the player ------------------------------------------------------------------------------------------------


@dataclass
class Info:
    """One candidate of an analysis, for the ``info`` lines. ``winrate`` for the side to move."""

    move: str
    visits: int
    winrate: float
    prior: float
    lcb: float
    pv: list[str]
    score_lead: float = math.nan  # for the side to move; NaN: unknown (no rollouts, no dual net), left out
    score_stdev: float = math.nan


class Player(Protocol):
    """What the session needs from a move generator. Boards are copies the player may keep."""

    def supports(self, size: int) -> bool:
        """Can this player play on ``size`` (without loading anything slow)?"""

    def prepare(self, size: int) -> None:
        """Load what playing on ``size`` needs now, not at the first genmove; GtpError if it cannot."""

    def genmove(self, board: Board, seconds: float | None, cleanup: bool = False,
                report: Callable[[list[Info]], None] | None = None, report_seconds: float = 1.0) -> str:
        """A vertex, ``"pass"`` or ``"resign"`` for ``board.to_move``. ``report``: called with the candidates
        every ``report_seconds`` while searching and once at the end (``*-genmove_analyze``); the move is the
        one chosen without it."""

    def analyze(self, board: Board, seconds: float) -> list[Info]:
        """Search for about ``seconds`` more (continuing the previous search of the same position)."""

    def ownership(self, board: Board) -> np.ndarray:
        """float ``[row, col]`` in [-1, 1], +1 black's area."""

    def policy(self, board: Board) -> np.ndarray:
        """The policy net's move probabilities, ``row * size + col`` (row 0 at the bottom), pass last."""

    def wait_ready(self) -> None:
        """Return once a genmove would search: at once, or when a background warm-up has finished."""


class EnginePlayer:
    """A :class:`Player` over :class:`gogame.api.Engine`, one engine per board size, loaded by :meth:`prepare`
    (or on first use).

    ``weights``: a net file or folder (:meth:`Engine.load`'s ``path``), else the shipped nets for each size.
    Without a value net (not shipped yet for a size) the engine runs on the policy net and rollouts only
    (``lambda`` 1); a ``lambda_`` below 1 then cannot be served and loading fails. ``options``: keyword arguments
    for the engine (``visits``, ``seconds``, ``threads``, ...). Raises CheckpointError (a ValueError) or OSError
    for a weights file that cannot be read.

    Warming up (:meth:`prepare` with ``background``): numba compiles the board's, the features' and the search's
    kernels at their first call (a minute or more on an empty cache, the first start after an install; seconds
    from the cache after that). On an empty cache the features' and then the search's kernels compile in a second
    process (:mod:`gogame.warmup`) while the warm-up thread makes the networks ready (an ONNX export) and compiles
    the board's kernels, then loads the features' once the second process has them. While a background warm-up
    runs, :meth:`genmove` waits for it up to :data:`WARMUP_PATIENCE_SECONDS` from its start (and never past the
    move's budget), then, if the search is still compiling, plays the policy net's best move alone, with a note on
    stderr; :meth:`analyze` returns no candidates until the search is ready.
    """

    def __init__(self, weights: str | None = None, **options) -> None:
        self.weights = weights
        self.options = options
        self._engines: dict[int, object] = {}
        self._fixed_sizes: tuple[int, ...] | None = None  # the sizes a weights file plays
        self._policy_ready = threading.Event()  # set: the features and the networks run without compiling
        self._search_ready = threading.Event()  # set: so does the search (or no warm-up was asked for)
        self._policy_ready.set()
        self._search_ready.set()
        self._warm_started: float | None = None
        if weights is not None and not Path(weights).exists():
            raise FileNotFoundError(f"{weights}: no such file or folder")
        if weights is not None and Path(weights).is_file():
            from gogame import nets

            net = nets.load(weights)
            # a dual net is fully convolutional: it plays every size, not only those it was trained on
            self._fixed_sizes = tuple(range(coords.MIN_SIZE, coords.MAX_SIZE + 1)) if net.kind == "dual" else \
                (net.board_size,)

    def supports(self, size: int) -> bool:
        if size in self._engines:
            return True
        if self.weights is not None:
            if self._fixed_sizes is not None:
                return size in self._fixed_sizes
            folder = Path(self.weights)
            return (folder / f"policy{size}.pt").exists() or (folder / f"value{size}.pt").exists() or \
                any(folder.glob("dual*.pt"))
        from gogame import nets

        try:
            nets.engine_weights(size)
        except FileNotFoundError:
            return False
        return True

    def engine(self, size: int, prepare_nets: bool = True):
        """The engine for ``size``, loaded once, its networks made ready at load unless ``prepare_nets`` is False
        (then at their first use: the warm-up's); GtpError if there are no weights for it."""
        if size not in self._engines:
            self._engines[size] = self._load(size, dict(self.options, prepare_nets=prepare_nets))
            log(f"gogame-gtp: loaded {size}x{size} networks "
                f"(value net: {'yes' if self._engines[size].evaluator.has_value else 'no'})")
        return self._engines[size]

    def _load(self, size: int, options: dict):
        from gogame.api import Engine
        from gogame.inference import BackendUnavailable

        try:
            if self.weights is not None:
                return Engine.load(self.weights, size=size, **options)
            return Engine.load(size=size, **options)
        except (OSError, ValueError, BackendUnavailable) as e:
            raise GtpError(f"cannot load networks for {size}x{size}: {e}".splitlines()[0]) from None

    def prepare(self, size: int, background: bool = False) -> None:
        """Load the networks for ``size`` now (GtpError if they cannot be), then, the first time, compile every
        kernel a game uses, by playing a few moves and a small search with a scratch engine: here, or with
        ``background`` in a thread while the caller goes on (see the class docstring), which also makes the
        networks ready (the onnx backend's export: seconds on an empty cache, after the first reply)."""
        warm_up = self._warm_started is None
        self.engine(size, prepare_nets=not (warm_up and background))
        if not warm_up:
            return
        self._warm_started = time.monotonic()
        if not background:
            self._warm_up(size)
            return
        from gogame import warmup

        if warmup.search_cached():  # numba's own start-up (a second) here, not in the first genmove's clock
            Board(size).legal_moves()
        self._policy_ready.clear()
        self._search_ready.clear()
        log("gogame-gtp: compiling the search in the background (a minute or more on the first start after an "
            "install, seconds after; `gogame-gtp --warmup` does it ahead)")
        threading.Thread(target=self._warm_up, args=(size,), daemon=True, name=WARMUP_THREAD).start()

    def _warm_up(self, size: int) -> None:
        from gogame import features, warmup
        from gogame.mcts import pass_wins

        started = time.monotonic()
        try:
            # the features' and the search's kernels compile in a second process (the second core) meanwhile
            compiler = None if warmup.search_cached() else warmup.start(size, self._engines[size].rollout is not None)
            self._engines[size].evaluator.prepare()  # an ONNX export on an empty cache
            batch = int(self.options.get("batch_size", 16))
            scratch = self._load(size, dict(self.options, visits=2 * batch, seconds=None, seed=0,
                                            resign_threshold=0.0, early_stop=False, max_nodes=50_000))
            board = Board(size, 7.5)
            board.play((size // 2, size // 2))
            board.play((size // 2, size // 2 - 1))
            board.legal_moves()
            pass_wins(board)
            features.legal_mask(board)
            if compiler is not None:  # the features' kernels come from the second process
                warmup.wait_for_features(compiler)
            scratch.evaluate(board)
            self._policy_ready.set()  # what the policy net's move needs; the rest of the board's kernels next
            policy_at = time.monotonic() - started
            Board(size, 7.5).setup([(0, 0)], [(1, 1)])
            board.copy().undo()
            board.result("area")
            board.result("territory")
            if compiler is not None:
                _, errors = compiler.communicate()
                if compiler.returncode:
                    log(f"gogame-gtp: compiling the search in a second process failed "
                        f"({(errors.strip().splitlines() or ['exit status ' + str(compiler.returncode)])[-1]}); "
                        "compiling it here")
            scratch.genmove(board)
            scratch.ownership(board, rollouts=2)
            log(f"gogame-gtp: the search is ready (kernels compiled or loaded: the policy net's after "
                f"{policy_at:.1f}s, the search's after {time.monotonic() - started:.1f}s)")
        except Exception as e:  # noqa: BLE001 - a failed warm-up leaves compiling to the first search
            if threading.main_thread().is_alive():  # not merely the process ending under it
                log(f"gogame-gtp: warm-up failed ({type(e).__name__}: {e}); the first search compiles instead")
        finally:
            self._policy_ready.set()
            self._search_ready.set()

    def _searchable(self, seconds: float | None) -> bool:
        """Wait for a background warm-up within its patience and ``seconds``; whether the search is ready."""
        if self._search_ready.is_set() or self._warm_started is None:
            return True
        wait = WARMUP_PATIENCE_SECONDS - (time.monotonic() - self._warm_started)
        if seconds is not None:
            wait = min(wait, seconds)
        if self._search_ready.wait(max(0.0, wait)):
            return True
        self._policy_ready.wait()
        return self._search_ready.is_set()

    def genmove(self, board: Board, seconds: float | None, cleanup: bool = False,
                report: Callable[[list[Info]], None] | None = None, report_seconds: float = 1.0) -> str:
        engine = self.engine(board.size)
        if not self._searchable(seconds):
            return self._policy_move(engine, board)
        visits = engine.visits
        if seconds is None:
            seconds = engine.seconds
        engine.config.cleanup = cleanup
        try:
            return engine.genmove(board, visits=visits, seconds=seconds, report_seconds=report_seconds,
                                  report=None if report is None else (lambda analysis: report(_infos(analysis))))
        finally:
            engine.config.cleanup = False

    @staticmethod
    def _policy_move(engine, board: Board) -> str:
        """The policy net's most probable legal point (pass when passing wins, or when no point is legal)."""
        from gogame.mcts import pass_wins

        log("gogame-gtp: the search is still compiling (first start after an install): this move is the policy "
            "net's alone")
        p = engine.evaluate(board).moves[:-1]
        if pass_wins(board) or p.max() <= 0:
            return "pass"
        return coords.to_gtp(coords.from_flat(int(np.argmax(p)), board.size))

    def analyze(self, board: Board, seconds: float) -> list[Info]:
        engine = self.engine(board.size)
        if not self._search_ready.wait(seconds):
            return []
        return _infos(engine.analyze(board, seconds=seconds))

    def ownership(self, board: Board) -> np.ndarray:
        return self.engine(board.size).ownership(board)

    def policy(self, board: Board) -> np.ndarray:
        return self.engine(board.size).evaluate(board).moves

    def wait_ready(self) -> None:
        self._search_ready.wait()


def _infos(analysis) -> list[Info]:
    """A :class:`gogame.api.Analysis`'s candidates as :class:`Info` lines."""
    return [Info(c.move, c.visits, c.winrate, c.prior, c.lcb, c.pv, c.score_lead, c.score_stdev)
            for c in analysis.candidates]


# -- argument helpers ----------------------------------------------------------------------------------------


def _colour(text: str) -> str:
    try:
        return coords.parse_colour(text)
    except ValueError:
        raise GtpError("invalid color") from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise GtpError("syntax error") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GtpError("syntax error") from None
    if not math.isfinite(value):
        raise GtpError("syntax error")
    return value


def _nargs(args: list[str], *counts: int) -> None:
    if len(args) not in counts:
        raise GtpError("syntax error")


def _colour_name(colour: str) -> str:
    return "black" if colour == "B" else "white"


# -- the session -----------------------------------------------------------------------------------------------


class Session:
    """One GTP game: its state and the handlers of the Go commands (:meth:`handlers`).

    ``player``: the move generator (None: commands that need one fail with a GtpError). ``rules``: ``"area"``
    or ``"territory"`` for ``final_score``. ``seconds``: fixed thinking time per move when no time settings
    are given (None: the player's visit limit). ``ponder``: search the opponent's position while the engine
    waits after its own move (see :meth:`ponder_job`)."""

    def __init__(self, player: Player | None = None, size: int = 19, komi: float = 7.5, rules: str = "area",
                 seconds: float | None = None, ponder: bool = False) -> None:
        if rules not in ("area", "territory"):
            raise ValueError(f"rules must be 'area' or 'territory', not {rules!r}")
        self.player = player
        self.rules = rules
        self.seconds = seconds
        self.ponder = ponder
        self._ponder_at = -1  # the number of moves right after our last genmove
        self.size = coords.check_size(size)
        self.komi = check_komi(komi)
        self.time = TimeControl()
        self._dead_cache: tuple[tuple, list[str]] | None = None
        self.clear()

    # -- state ----------------------------------------------------------------------------------------------

    def clear(self) -> None:
        self.handicap: list[coords.Point] = []
        self.record: sgf.Game | None = None  # a record loaded by loadsgf: its first record_moves moves are moves'
        self.record_moves = 0
        self.moves: list[tuple[str, coords.Move]] = []
        self.board = Board(self.size, self.komi)

    def rebuild(self) -> None:
        """The board from the handicap or the record, then the moves (undo by replay). Raises IllegalMove (and
        SGFError) for a record that does not replay."""
        if self.record is not None:
            board = self.record.board_at(self.record_moves)  # simple ko: the record's own rules
            board.komi = self.komi
            if not self.record.moves and "PL" not in self.record.properties and board.stones().min() >= 0 \
                    and board.stones().max() > 0:
                board.to_move = "W"  # black stones only and no move: a handicap, white plays first
            board.continue_under("positional")
        else:
            board = Board(self.size, self.komi)
            if self.handicap:
                board.place_handicap(self.handicap)
        for colour, move in self.moves[self.record_moves:]:
            board.play(move, colour)
        self.board = board

    def play(self, colour: str, move: coords.Move) -> None:
        try:
            self.board.play(move, colour)
        except IllegalMove:
            raise GtpError("illegal move") from None
        self.moves.append((colour, move))

    def _vertex(self, text: str) -> coords.Move:
        try:
            return coords.from_gtp(text, self.size)
        except ValueError:
            raise GtpError("invalid vertex") from None

    def _need_player(self) -> Player:
        if self.player is None:
            raise GtpError("no move generator")
        if not self.player.supports(self.size):
            raise GtpError(f"no networks for {self.size}x{self.size}")
        return self.player

    # -- commands -------------------------------------------------------------------------------------------

    def handlers(self) -> dict[str, Callable[[list[str]], str | Stream]]:
        return {
            "boardsize": self.cmd_boardsize,
            "clear_board": self.cmd_clear_board,
            "komi": self.cmd_komi,
            "play": self.cmd_play,
            "genmove": self.cmd_genmove,
            "reg_genmove": self.cmd_reg_genmove,
            "kgs-genmove_cleanup": self.cmd_genmove_cleanup,
            "undo": self.cmd_undo,
            "showboard": self.cmd_showboard,
            "final_score": self.cmd_final_score,
            "final_status_list": self.cmd_final_status_list,
            "fixed_handicap": self.cmd_fixed_handicap,
            "place_free_handicap": self.cmd_place_free_handicap,
            "set_free_handicap": self.cmd_set_free_handicap,
            "time_settings": self.cmd_time_settings,
            "kgs-time_settings": self.cmd_kgs_time_settings,
            "time_left": self.cmd_time_left,
            "loadsgf": self.cmd_loadsgf,
            "printsgf": self.cmd_printsgf,
            "list_stones": self.cmd_list_stones,
            "captures": self.cmd_captures,
            "lz-analyze": lambda args: self.cmd_analyze(args, "lz", genmove=False),
            "kata-analyze": lambda args: self.cmd_analyze(args, "kata", genmove=False),
            "lz-genmove_analyze": lambda args: self.cmd_analyze(args, "lz", genmove=True),
            "kata-genmove_analyze": lambda args: self.cmd_analyze(args, "kata", genmove=True),
            "analyze": lambda args: self.cmd_analyze(args, "lz", genmove=False),
            "genmove_analyze": lambda args: self.cmd_analyze(args, "lz", genmove=True),
            "gogui-analyze_commands": lambda args: "\n".join(GOGUI_ANALYZE_COMMANDS),
            "gogame-policy": self.cmd_gogame_policy,
            "gogame-winrates": self.cmd_gogame_winrates,
            "gogame-ownership": self.cmd_gogame_ownership,
            "gogame-wait_ready": self.cmd_gogame_wait_ready,
        }

    def cmd_boardsize(self, args: list[str]) -> str:
        _nargs(args, 1)
        size = _int(args[0])
        if not coords.MIN_SIZE <= size <= coords.MAX_SIZE:
            raise GtpError("unacceptable size")
        if self.player is not None:
            if not self.player.supports(size):
                raise GtpError("unacceptable size")
            self.player.prepare(size)
        self.size = size
        self.clear()
        return ""

    def cmd_clear_board(self, args: list[str]) -> str:
        self.clear()
        return ""

    def cmd_komi(self, args: list[str]) -> str:
        _nargs(args, 1)
        try:
            self.komi = check_komi(_float(args[0]))
        except ValueError:
            raise GtpError("syntax error") from None
        self.board.komi = self.komi
        return ""

    def cmd_play(self, args: list[str]) -> str:
        _nargs(args, 2)
        colour = _colour(args[0])
        if args[1].lower() == "resign":
            return ""  # a resignation ends the game; there is nothing to record on the board
        self.play(colour, self._vertex(args[1]))
        return ""

    def _generate(self, args: list[str], cleanup: bool = False,
                  report: Callable[[list[Info]], None] | None = None, report_seconds: float = 1.0) -> tuple[str, str]:
        """The colour and the move the player chooses for it (not played); ``report`` as in
        :meth:`Player.genmove`. Every genmove command, the analysing ones included, decides here."""
        _nargs(args, 1)
        colour = _colour(args[0])
        player = self._need_player()
        board = self.board.copy()
        board.to_move = colour
        if board.consecutive_passes >= 2:
            return colour, "pass"  # the engine does not search a finished game; GTP may ask anyway
        seconds = self.time.budget(colour, int(np.sum(board.stones() == 0)))
        if seconds is None:
            seconds = self.seconds
        started = time.monotonic()
        move = player.genmove(board, seconds, cleanup, report, report_seconds)
        if self.time.system != "none":
            self.time.spend(colour, time.monotonic() - started)
        return colour, move

    def _genmove(self, args: list[str], cleanup: bool = False,
                 report: Callable[[list[Info]], None] | None = None, report_seconds: float = 1.0) -> str:
        colour, move = self._generate(args, cleanup, report, report_seconds)
        if move != "resign":
            self.play(colour, coords.from_gtp(move, self.size))
            self._ponder_at = len(self.moves)
        return move

    def ponder_job(self) -> Callable[[threading.Event], None] | None:
        """With pondering on and the opponent to move right after our genmove: a job that searches the opponent's
        position until stopped, so that the tree below their reply is already grown when we are asked to move
        (the search keeps the subtree of the move played). None otherwise."""
        if (not self.ponder or self.player is None or self._ponder_at != len(self.moves)
                or self.board.consecutive_passes >= 2):
            return None
        player, board = self.player, self.board.copy()

        def job(stop: threading.Event) -> None:
            while not stop.is_set():
                player.analyze(board.copy(), PONDER_SLICE_SECONDS)
        return job

    def cmd_genmove(self, args: list[str]) -> str:
        return self._genmove(args)

    def cmd_genmove_cleanup(self, args: list[str]) -> str:
        return self._genmove(args, cleanup=True)

    def cmd_reg_genmove(self, args: list[str]) -> str:
        return self._generate(args)[1]

    def cmd_undo(self, args: list[str]) -> str:
        if not self.moves:
            raise GtpError("cannot undo")
        self.moves.pop()
        self.record_moves = min(self.record_moves, len(self.moves))
        self.rebuild()
        return ""

    def cmd_showboard(self, args: list[str]) -> str:
        b = self.board
        return (f"\n{b}\nkomi {self.komi:g}, {_colour_name(b.to_move)} to play, captures: "
                f"black {b.captures('B')}, white {b.captures('W')}")

    def dead_stones(self) -> list[str]:
        """Vertices of the stones whose point the rollouts give to the opponent (ownership of the other sign);
        none without a player for this size. Cached per position."""
        if self.player is None or not self.player.supports(self.size):
            return []
        key = (self.size, self.board.zobrist_hash, tuple(self.moves))
        if self._dead_cache is not None and self._dead_cache[0] == key:
            return self._dead_cache[1]
        own = self.player.ownership(self.board.copy())
        stones = self.board.stones()
        rows, cols = np.nonzero(stones * own < 0)
        dead = [coords.to_gtp((int(r), int(c))) for r, c in zip(rows, cols)]
        self._dead_cache = (key, dead)
        return dead

    def cmd_final_score(self, args: list[str]) -> str:
        return self.board.result(self.rules, self.dead_stones())

    def cmd_final_status_list(self, args: list[str]) -> str:
        _nargs(args, 1)
        status = args[0].lower()
        if status not in ("alive", "dead", "seki"):
            raise GtpError("syntax error")
        if status == "seki":
            return ""
        dead = set(self.dead_stones())
        stones = self.board.stones()
        rows, cols = np.nonzero(stones)
        vertices = [coords.to_gtp((int(r), int(c))) for r, c in zip(rows, cols)]
        chosen = [v for v in vertices if (v in dead) == (status == "dead")]
        return "\n".join(chosen)  # GTP wants one chain per line; one stone per line is accepted by controllers

    def _check_empty(self) -> None:
        if self.moves or np.any(self.board.stones()):
            raise GtpError("board not empty")

    def cmd_fixed_handicap(self, args: list[str]) -> str:
        _nargs(args, 1)
        n = _int(args[0])
        self._check_empty()
        try:
            points = fixed_handicap_points(self.size, n)
        except ValueError:
            raise GtpError("invalid number of stones") from None
        return self._place(points)

    def _place(self, points: list[coords.Point]) -> str:
        self.record, self.record_moves = None, 0
        self.handicap = list(points)
        self.rebuild()
        return " ".join(coords.to_gtp(p) for p in points)

    def cmd_place_free_handicap(self, args: list[str]) -> str:
        _nargs(args, 1)
        n = _int(args[0])
        self._check_empty()
        if not 2 <= n < self.size * self.size:
            raise GtpError("invalid number of stones")
        try:
            points = fixed_handicap_points(self.size, n)
        except ValueError:  # more than the fixed points, or a small board: the fixed ones, then centre-out
            points = []
            for k in range(min(n, 9), 1, -1):
                try:
                    points = fixed_handicap_points(self.size, k)
                    break
                except ValueError:
                    continue
            centre = (self.size - 1) / 2
            rest = sorted(((r, c) for r in range(self.size) for c in range(self.size) if (r, c) not in points),
                          key=lambda p: (abs(p[0] - centre) + abs(p[1] - centre), p))
            # skip neighbours of chosen stones where possible, so the stones stay apart
            spread = [p for p in rest if all(abs(p[0] - q[0]) + abs(p[1] - q[1]) > 1 for q in points)]
            points = list(points) + (spread + [p for p in rest if p not in spread])[: n - len(points)]
        return self._place(points)

    def cmd_set_free_handicap(self, args: list[str]) -> str:
        points = [self._vertex(v) for v in args]
        self._check_empty()
        if len(points) < 2 or None in points or len(set(points)) != len(points) \
                or len(points) >= self.size * self.size:
            raise GtpError("bad vertex list")
        self._place(points)  # type: ignore[arg-type]
        return ""

    def cmd_time_settings(self, args: list[str]) -> str:
        _nargs(args, 3)
        try:
            self.time = TimeControl.from_gtp(_float(args[0]), _float(args[1]), _int(args[2]))
        except ValueError:
            raise GtpError("syntax error") from None
        return ""

    def cmd_kgs_time_settings(self, args: list[str]) -> str:
        if not args:
            raise GtpError("syntax error")
        system = args[0].lower()
        try:
            if system == "none":
                _nargs(args, 1)
                self.time = TimeControl("none")
            elif system == "absolute":
                _nargs(args, 2)
                self.time = TimeControl.from_gtp(_float(args[1]), 0, 0)
            elif system == "byoyomi":
                _nargs(args, 4)
                main, period, periods = _float(args[1]), _float(args[2]), _int(args[3])
                if main < 0 or period < 0 or periods < 0:
                    raise ValueError
                if period == 0 or periods == 0:
                    self.time = TimeControl.from_gtp(main, 0, 0)
                else:
                    self.time = TimeControl("byoyomi", main, period, periods=periods)
            elif system == "canadian":
                _nargs(args, 4)
                self.time = TimeControl.from_gtp(_float(args[1]), _float(args[2]), _int(args[3]))
            else:
                raise GtpError("syntax error")
        except ValueError:
            raise GtpError("syntax error") from None
        return ""

    def cmd_time_left(self, args: list[str]) -> str:
        _nargs(args, 3)
        colour = _colour(args[0])
        self.time.update(colour, _float(args[1]), _int(args[2]))
        return ""

    def cmd_loadsgf(self, args: list[str]) -> str:
        """``loadsgf file [n]``: the position of the file's first game before its move ``n`` (after all moves without
        ``n``), every setup node on the way applied, the next recorded colour to move. The record is replayed as
        history (see the module docstring); one that is malformed, does not replay, or has more than
        :data:`MAX_RECORD_MOVES` moves leaves the session as it was. Notes on the record (a node with two moves)
        go to stderr."""
        _nargs(args, 1, 2)
        upto = _int(args[1]) if len(args) == 2 else None
        if upto is not None and upto < 1:
            raise GtpError("syntax error")  # move numbers start at 1
        try:
            games = sgf.load(args[0])
        except OSError:
            raise GtpError("cannot load file") from None
        except ValueError as e:
            raise GtpError(f"cannot load file: {e}".splitlines()[0]) from None
        if not games:
            raise GtpError("cannot load file: no game")
        game = games[0]
        if self.player is not None:
            if not self.player.supports(game.size):
                raise GtpError("unacceptable size")
            self.player.prepare(game.size)
        if len(game.moves) > MAX_RECORD_MOVES:
            raise GtpError(f"cannot load file: {len(game.moves)} moves, more than the {MAX_RECORD_MOVES} "
                           "this engine replays")
        moves = game.moves if upto is None else game.moves[: upto - 1]
        saved = (self.size, self.komi, self.handicap, self.record, self.record_moves, self.moves, self.board)
        self.size, self.komi, self.handicap = game.size, game.komi, []
        self.record, self.record_moves, self.moves = game, len(moves), list(moves)
        try:
            self.rebuild()
        except IllegalMove as e:
            (self.size, self.komi, self.handicap, self.record, self.record_moves, self.moves,
             self.board) = saved
            raise GtpError(f"cannot load file: illegal move in the record ({e})".splitlines()[0]) from None
        for note in game.warnings:
            log(f"gogame-gtp: {note}")
        return ""

    def to_sgf(self) -> str:
        """The game as SGF: the loaded record up to the loaded position (its nodes as they were), or the
        handicap, then the moves since."""
        if self.record is not None:
            game = self.record.continued(self.record_moves, self.moves[self.record_moves:], komi=self.komi)
        else:
            game = sgf.Game.from_moves(self.moves, size=self.size, komi=self.komi, handicap=len(self.handicap),
                                       setup=(self.handicap, ()), properties={"AP": "gogame"})
        return sgf.dumps(game)

    def cmd_printsgf(self, args: list[str]) -> str:
        _nargs(args, 0, 1)
        text = self.to_sgf()
        if args:
            try:
                Path(args[0]).write_text(text, encoding="utf-8")
            except OSError:
                raise GtpError("cannot write file") from None
            return ""
        return text

    def cmd_list_stones(self, args: list[str]) -> str:
        _nargs(args, 1)
        sign = 1 if _colour(args[0]) == "B" else -1
        rows, cols = np.nonzero(self.board.stones() == sign)
        return " ".join(coords.to_gtp((int(r), int(c))) for r, c in zip(rows, cols))

    def cmd_captures(self, args: list[str]) -> str:
        _nargs(args, 1)
        return str(self.board.captures(_colour(args[0])))

    # -- GoGui's analyze views (gfx replies: INFLUENCE shades points, + black; LABEL writes on them) ----------

    def _vertices(self) -> list[str]:
        """GTP vertices in ``row * size + col`` order (row 0 at the bottom)."""
        return [coords.to_gtp((r, c)) for r in range(self.size) for c in range(self.size)]

    def cmd_gogame_wait_ready(self, args: list[str]) -> str:
        """Answer once the search is ready. A match asks it before a game, so that no move it times is the
        policy net's alone while the search still compiles in the background (the first start after an install)."""
        _nargs(args, 0)
        self._need_player().wait_ready()
        return ""

    def cmd_gogame_policy(self, args: list[str]) -> str:
        """The policy net's move probabilities: shading by probability relative to the best, percent labels."""
        p = np.asarray(self._need_player().policy(self.board.copy()), dtype=np.float64)
        sign = 1.0 if self.board.to_move == "B" else -1.0
        points, pass_p = p[:-1], p[-1]
        top = points.max() or 1.0
        vertices = self._vertices() + ["pass"]
        shown = [(v, q) for v, q in zip(vertices, points) if q >= 0.005]
        best = np.argsort(-p, kind="stable")[:3]
        names = [vertices[i] for i in best]
        return "\n".join([
            "INFLUENCE " + " ".join(f"{v} {sign * q / top:.3f}" for v, q in shown),
            "LABEL " + " ".join(f"{v} {round(100 * q)}" for v, q in shown),
            f"TEXT {_colour_name(self.board.to_move)}: " + ", ".join(
                f"{n} {100 * p[i]:.1f}%" for n, i in zip(names, best)) + f" (pass {100 * pass_p:.1f}%)",
        ])

    def cmd_gogame_winrates(self, args: list[str]) -> str:
        """A search's candidates labelled with their win rate (percent, side to move) and the best line."""
        if self.board.consecutive_passes >= 2:
            raise GtpError("the game is over")
        infos = self._need_player().analyze(self.board.copy(), self.seconds or GOGUI_SEARCH_SECONDS)
        if not infos:
            return "TEXT no candidates"
        best = infos[0]
        colours = [self.board.to_move, coords.opponent(self.board.to_move)]
        variation = " ".join(f"{colours[k % 2].lower()} {m}" for k, m in enumerate(best.pv or [best.move]))
        return "\n".join([
            "LABEL " + " ".join(f"{i.move} {round(100 * i.winrate)}" for i in infos if i.move != "pass"),
            f"VAR {variation}",
            f"TEXT {_colour_name(self.board.to_move)}: {best.move} {100 * best.winrate:.1f}% "
            f"({sum(i.visits for i in infos)} visits)",
        ])

    def cmd_gogame_ownership(self, args: list[str]) -> str:
        """Who owns each point at the end of the rollouts (+ black), and the area estimate they add up to."""
        owner = np.asarray(self._need_player().ownership(self.board.copy()), dtype=np.float64).ravel()
        lead = float(owner.sum()) - self.komi
        return "\n".join([
            "INFLUENCE " + " ".join(f"{v} {o:.2f}" for v, o in zip(self._vertices(), owner)),
            f"TEXT area estimate: {'B' if lead >= 0 else 'W'}+{abs(lead):.1f}",
        ])

    # -- analysis -------------------------------------------------------------------------------------------

    def cmd_analyze(self, args: list[str], flavour: str, genmove: bool) -> Stream:
        """``lz-analyze [colour] [interval]`` and friends (``interval`` in centiseconds; the keyword form
        ``interval N`` is read too, and for KataGo's commands ``ownership true``; other keywords and their values
        are ignored)."""
        colour = self.board.to_move
        interval = 100
        rest = list(args)
        if rest and rest[0].lower() in ("b", "w", "black", "white"):
            colour = _colour(rest.pop(0))
        elif genmove:
            raise GtpError("syntax error")
        seen_interval = False
        want_ownership = False
        while rest:
            word = rest.pop(0)
            if word.lower() == "interval" and rest:
                interval, seen_interval = _int(rest.pop(0)), True
            elif word.lower() == "ownership" and rest and flavour == "kata":
                want_ownership = rest.pop(0).lower() == "true"
            elif word.isdigit() and not seen_interval:
                interval, seen_interval = int(word), True
            elif rest:
                rest.pop(0)  # an option we do not support, with its value
        if interval < 0:
            raise GtpError("syntax error")
        player = self._need_player()
        board = self.board.copy()
        board.to_move = colour
        if board.consecutive_passes >= 2 and not genmove:  # genmove answers pass, as the plain genmove does
            raise GtpError("the game is over")
        seconds = max(interval, 5) / 100  # search in steps of the interval (at least 0.05s)

        ownership = ""  # the position does not change during an analysis: computed once, at its first line

        def line(infos: list[Info]) -> str:
            nonlocal ownership
            text = " ".join(_info(i, order, flavour) for order, i in enumerate(infos))
            if want_ownership:
                ownership = ownership or _ownership_field(player.ownership(board.copy()), colour)
                text += ownership
            return text

        if not genmove:
            def run(write: Callable[[str], None], stop: threading.Event) -> None:
                while not stop.is_set():
                    infos = player.analyze(board.copy(), seconds)
                    if infos and interval > 0:
                        write(line(infos))
            return Stream(run)

        def run_genmove(write: Callable[[str], None], stop: threading.Event) -> None:
            def report(infos: list[Info]) -> None:
                if infos and interval > 0:
                    write(line(infos))
            write(f"play {self._genmove([colour], report=report, report_seconds=seconds)}")
        return Stream(run_genmove, interruptible=False)


def _ownership_field(owner: np.ndarray, colour: str) -> str:
    """KataGo's ``ownership`` field: one value per point for the side to move, rows from the top, left to right."""
    sign = 1.0 if colour == "B" else -1.0
    return " ownership " + " ".join(f"{sign * v + 0.0:.4f}" for v in owner[::-1].ravel())


def _info(i: Info, order: int, flavour: str) -> str:
    """One ``info`` clause: Leela Zero's integers (x10000) or KataGo's floats; ``pv`` last.

    KataGo's score fields come from the rollouts' final margins; without rollouts there is no score estimate
    and they are left out (GUIs treat them as optional)."""
    pv = " ".join(i.pv or [i.move])
    if flavour == "lz":
        return (f"info move {i.move} visits {i.visits} winrate {round(10000 * i.winrate)} "
                f"prior {round(10000 * i.prior)} lcb {round(10000 * i.lcb)} order {order} pv {pv}")
    score = ""
    if not math.isnan(i.score_lead):
        score = (f"scoreMean {i.score_lead:.3f} scoreStdev {i.score_stdev:.3f} "
                 f"scoreLead {i.score_lead:.3f} ")
    return (f"info move {i.move} visits {i.visits} utility {2 * i.winrate - 1:.6f} winrate {i.winrate:.6f} "
            f"{score}prior {i.prior:.6f} lcb {i.lcb:.6f} order {order} pv {pv}")
