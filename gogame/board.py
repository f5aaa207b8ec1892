"""The game board with its rules: superko, history, undo, handicap and scoring.

:class:`Board` wraps the numba :class:`~gogame.fastboard.FastBoard` (stones,
chains, liberties, hash, simple ko) and adds what a game needs on top: the
positional (or situational) superko rule, the move history, undo, passes,
resignation, handicap placement and area or territory scoring.

Moves are given as GTP vertices (``"D4"``, ``"pass"``, any case), as
``(row, col)`` points with row 0 the bottom row, or ``None`` for a pass; see
:mod:`gogame.coords`. State changes in place: :meth:`Board.play` mutates the
board, :meth:`Board.copy` gives an independent one, :meth:`Board.undo` takes
back the last move (it restores a snapshot, so undo after replay is exact).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

import numpy as np

from gogame import coords, fastboard as fb
from gogame.coords import Move

RULES = ("area", "territory")
SUPERKO = ("positional", "situational", "none")
MAX_KOMI = float(coords.MAX_SIZE ** 2)  # more points than the largest board holds would decide every game


def check_komi(komi: float) -> float:
    """``komi`` as a float; ValueError unless it is finite and at most :data:`MAX_KOMI` either way."""
    value = float(komi)
    if not math.isfinite(value) or abs(value) > MAX_KOMI:
        raise ValueError(f"komi must be a finite number from {-MAX_KOMI:g} to {MAX_KOMI:g}, not {komi!r}")
    return value


class IllegalMove(ValueError):
    """A move that the rules forbid; the message says why, the board is unchanged."""


_COLOUR_CODE = {"B": fb.BLACK, "W": fb.WHITE}
_CODE_COLOUR = {fb.BLACK: "B", fb.WHITE: "W"}


class Board:
    """A Go board of any size from 2 to 25 with komi, ko/superko, history and scoring.

    ``superko`` is ``"positional"`` (a move may not recreate any earlier
    position), ``"situational"`` (nor the same position with the same side
    to move) or ``"none"`` (simple ko only, as under Japanese rules, where a
    long cycle voids the game: for replaying such records); ``allow_suicide`` permits multi-stone suicide as in Tromp-Taylor
    and New Zealand rules. ``komi`` passes :func:`check_komi` (ValueError otherwise).
    """

    def __init__(
        self,
        size: int = 19,
        komi: float = 7.5,
        *,
        superko: str = "positional",
        allow_suicide: bool = False,
    ) -> None:
        if superko not in SUPERKO:
            raise ValueError(f"superko must be one of {SUPERKO}, not {superko!r}")
        self.size = coords.check_size(size)
        self.komi = check_komi(komi)
        self.superko = superko
        self.allow_suicide = bool(allow_suicide)
        self.history: list[tuple[str, Move]] = []
        self.handicap: list[coords.Point] = []
        self.resigned: str | None = None
        self._fast = fb.new_board(size, allow_suicide)
        self._seen: Counter[tuple[int, int]] = Counter()
        self._undo: list[fb.FastBoard] = []
        self._remember()

    # -- vertices ---------------------------------------------------------

    def _index(self, move: Move) -> int:
        return fb.PASS if move is None else coords.to_padded(move[0], move[1], self.size)

    def _point(self, index: int) -> Move:
        return None if index == fb.PASS else coords.from_padded(int(index), self.size)

    # -- state ------------------------------------------------------------

    @property
    def to_move(self) -> str:
        """The side to move, ``"B"`` or ``"W"``."""
        return _CODE_COLOUR[int(self._fast.meta[fb.M_TO_MOVE])]

    @to_move.setter
    def to_move(self, colour: str) -> None:
        self._fast.meta[fb.M_TO_MOVE] = _COLOUR_CODE[coords.parse_colour(colour)]

    @property
    def fast(self) -> fb.FastBoard:
        """The numba board underneath, for kernels (read it; do not play on it)."""
        return self._fast

    @property
    def zobrist_hash(self) -> int:
        """Hash of the stones on the board (not of the side to move)."""
        return int(self._fast.meta[fb.M_HASH])

    @property
    def ko_point(self) -> Move:
        """The point the side to move may not take because of simple ko, if any."""
        ko = int(self._fast.meta[fb.M_KO])
        if ko == fb.NO_POINT or self._fast.meta[fb.M_KO_COLOUR] != self._fast.meta[fb.M_TO_MOVE]:
            return None
        return self._point(ko)

    def captures(self, colour: str) -> int:
        """How many stones ``colour`` has captured so far."""
        return int(self._fast.meta[fb.M_CAPTURES + _COLOUR_CODE[coords.parse_colour(colour)]])

    def stones(self) -> np.ndarray:
        """int8 array ``[row, col]`` (row 0 at the bottom): +1 black, -1 white, 0 empty."""
        grid = coords.unpad(self._fast.colour, self.size)
        return np.where(grid == fb.WHITE, -1, grid).astype(np.int8)

    def colour_at(self, move: str | coords.Point) -> str | None:
        """``"B"``, ``"W"`` or None (empty) at a point."""
        point = coords.parse_move(move, self.size)
        if point is None:
            raise ValueError("pass has no colour")
        return _CODE_COLOUR.get(int(self._fast.colour[self._index(point)]))

    def chain(self, move: str | coords.Point) -> list[coords.Point]:
        """The points of the chain through the stone at ``move`` (empty list for an empty point)."""
        point = coords.parse_move(move, self.size)
        p = self._index(point)
        if point is None or not fb.is_stone(self._fast.colour[p]):
            return []
        return sorted(self._point(int(q)) for q in fb.chain_stones(self._fast, p))

    def liberties(self, move: str | coords.Point) -> int:
        """Liberties of the chain through the stone at ``move`` (0 for an empty point)."""
        point = coords.parse_move(move, self.size)
        p = self._index(point)
        if point is None or not fb.is_stone(self._fast.colour[p]):
            return 0
        return int(fb.chain_liberties(self._fast, p))

    # -- rules ------------------------------------------------------------

    def _key(self, stones_hash: int, next_to_move: int) -> tuple[int, int]:
        return stones_hash, (next_to_move if self.superko == "situational" else 0)

    def _remember(self) -> None:
        meta = self._fast.meta
        self._seen[self._key(int(meta[fb.M_HASH]), int(meta[fb.M_TO_MOVE]))] += 1

    def _why_illegal(self, p: int, c: int) -> str | None:
        """None if ``c`` may play at padded index ``p``, else the reason."""
        if self.resigned is not None:
            return "game is over"
        if p == fb.PASS:
            return None
        f = self._fast
        if f.colour[p] != fb.EMPTY:
            return "occupied"
        if not fb.is_legal(f, p, c):
            return "suicide" if fb.is_suicide(f, p, c) else "ko"
        if self.superko != "none" and self._key(fb.hash_after(f, p, c), 3 - c) in self._seen:
            return "superko"
        return None

    def is_legal(self, move: str | coords.Point | None, colour: str | None = None) -> bool:
        """May ``colour`` (default: the side to move) play ``move`` now?"""
        point = coords.parse_move(move, self.size)
        c = self._colour_code(colour)
        return self._why_illegal(self._index(point), c) is None

    def legal_moves(self, colour: str | None = None) -> list[str]:
        """The legal board moves of ``colour`` (default: side to move) as GTP vertices; pass not included."""
        c = self._colour_code(colour)
        if self.resigned is not None:
            return []
        moves = []
        for p in np.flatnonzero(self._fast.colour == fb.EMPTY):
            if self._why_illegal(int(p), c) is None:
                moves.append(coords.to_gtp(self._point(int(p))))
        return moves

    def _colour_code(self, colour: str | None) -> int:
        if colour is None:
            return int(self._fast.meta[fb.M_TO_MOVE])
        return _COLOUR_CODE[coords.parse_colour(colour)]

    def play(self, move: str | coords.Point | None, colour: str | None = None) -> int:
        """Play ``move`` for ``colour`` (default: the side to move); returns stones captured.

        Raises :class:`IllegalMove` (occupied, suicide, ko, superko, or the
        game was resigned) and leaves the board unchanged; raises ValueError
        for a malformed or off-board vertex. Play may go on after two passes
        (to settle a dispute, as GTP and SGF records allow): a stone resets
        the pass count.
        """
        point = coords.parse_move(move, self.size)
        c = self._colour_code(colour)
        p = self._index(point)
        why = self._why_illegal(p, c)
        if why is not None:
            raise IllegalMove(f"illegal move {coords.to_gtp(point)} for {_CODE_COLOUR[c]}: {why}")
        self._undo.append(fb.copy_board(self._fast))
        captured = fb.play(self._fast, p, c)
        self.history.append((_CODE_COLOUR[c], point))
        if point is not None:
            self._remember()
        return int(captured)

    def pass_move(self, colour: str | None = None) -> None:
        """Pass for ``colour`` (default: the side to move)."""
        self.play(None, colour)

    def resign(self, colour: str | None = None) -> None:
        """``colour`` (default: the side to move) resigns; the game is over."""
        self.resigned = _CODE_COLOUR[self._colour_code(colour)]

    def undo(self) -> None:
        """Take back a resignation, else the last move. IndexError if there is none."""
        if self.resigned is not None:
            self.resigned = None
            return
        if not self._undo:
            raise IndexError("no move to undo")
        _, move = self.history.pop()
        if move is not None:
            key = self._key(self.zobrist_hash, int(self._fast.meta[fb.M_TO_MOVE]))
            self._seen[key] -= 1
            if not self._seen[key]:
                del self._seen[key]
        self._fast = fb.copy_board(self._undo.pop())

    def is_over(self) -> bool:
        """Two consecutive passes (until another stone is played), or a resignation."""
        return self.resigned is not None or self._fast.meta[fb.M_PASSES] >= 2

    @property
    def consecutive_passes(self) -> int:
        return int(self._fast.meta[fb.M_PASSES])

    @property
    def move_number(self) -> int:
        """Moves played so far (passes included, setup excluded)."""
        return len(self.history)

    # -- setup and handicap --------------------------------------------------

    def setup(
        self,
        black: Iterable[str | coords.Point] = (),
        white: Iterable[str | coords.Point] = (),
        empty: Iterable[str | coords.Point] = (),
    ) -> None:
        """Place or remove stones without captures (SGF AB/AW/AE, free handicap).

        Clears the undo stack and the simple-ko point; the position becomes the
        new starting position for superko.
        """
        for points, c in ((black, fb.BLACK), (white, fb.WHITE), (empty, fb.EMPTY)):
            for move in points:
                point = coords.parse_move(move, self.size)
                if point is None:
                    raise ValueError("setup needs points, not pass")
                p = self._index(point)
                self._fast.colour[p] = c
                # Setup stones were never played: they count as old (8 or more turns) in the features.
                self._fast.placed[p] = self._fast.meta[fb.M_MOVES] - 8
        fb.rebuild(self._fast)
        self._restart()

    def continue_under(self, superko: str) -> None:
        """Apply ``superko`` (see :class:`Board`) from now on, the current position the first one it remembers:
        positions before it do not count, and the undo stack is cleared, as after :meth:`setup`. For a record
        replayed under its own rules (simple ko) and continued under the engine's. ValueError for an unknown rule.
        """
        if superko not in SUPERKO:
            raise ValueError(f"superko must be one of {SUPERKO}, not {superko!r}")
        self.superko = superko
        self._restart()

    def _restart(self) -> None:
        self._undo.clear()
        self._seen.clear()
        self._remember()

    def place_handicap(self, points: Iterable[str | coords.Point]) -> None:
        """Put black handicap stones on an empty board; white moves next."""
        pts = [coords.parse_move(m, self.size) for m in points]
        if self.history or np.any(self.stones()):
            raise ValueError("handicap stones go on an empty board")
        if len(pts) < 2 or len(set(pts)) != len(pts) or None in pts:
            raise ValueError("handicap needs at least two distinct points")
        self.setup(black=pts)
        self.handicap = pts  # type: ignore[assignment]
        self.to_move = "W"

    def fixed_handicap(self, n: int) -> list[str]:
        """Place ``n`` stones at the GTP specification's fixed points; returns their vertices."""
        points = fixed_handicap_points(self.size, n)
        self.place_handicap(points)
        return [coords.to_gtp(p) for p in points]

    # -- scoring ----------------------------------------------------------

    def _dead_mask(self, dead: Iterable[str | coords.Point]) -> np.ndarray:
        """bool[N] over the padded board: the whole chain of each named stone."""
        mask = np.zeros(self._fast.colour.size, np.bool_)
        for move in dead:
            point = coords.parse_move(move, self.size)
            p = self._index(point)
            if point is None or not fb.is_stone(self._fast.colour[p]):
                raise ValueError(f"no stone at {move!r} to mark dead")
            mask[fb.chain_stones(self._fast, p)] = True
        return mask

    def score(self, rules: str = "area", dead: Iterable[str | coords.Point] = ()) -> float:
        """Black's margin minus komi: positive means black wins.

        ``rules="area"`` (Chinese, Tromp-Taylor): stones plus empty points
        surrounded by one colour. ``rules="territory"`` (Japanese): surrounded
        empty points plus prisoners (captures and dead stones); points in seki
        that touch both colours count for nobody. ``dead`` names stones to
        treat as dead (each one's whole chain); they are the opponent's area.
        """
        if rules not in RULES:
            raise ValueError(f"rules must be one of {RULES}, not {rules!r}")
        mask = self._dead_mask(dead)
        if rules == "area":
            black, white = fb.area_counts(self._fast, mask)
            return float(black - white - self.komi)
        owner = fb.territory_owner(self._fast, mask)
        empty_or_dead = (self._fast.colour == fb.EMPTY) | mask
        black = np.sum((owner == fb.BLACK) & empty_or_dead) + self.captures("B")
        white = np.sum((owner == fb.WHITE) & empty_or_dead) + self.captures("W")
        black += np.sum(mask & (self._fast.colour == fb.WHITE))
        white += np.sum(mask & (self._fast.colour == fb.BLACK))
        return float(black - white - self.komi)

    def ownership(self, dead: Iterable[str | coords.Point] = ()) -> np.ndarray:
        """int8 ``[row, col]``: +1 black area, -1 white area, 0 neither (area rules)."""
        owner = fb.territory_owner(self._fast, self._dead_mask(dead))
        grid = coords.unpad(owner, self.size)
        return np.where(grid == fb.WHITE, -1, grid).astype(np.int8)

    def result(self, rules: str = "area", dead: Iterable[str | coords.Point] = ()) -> str:
        """The result in SGF form: ``"B+3.5"``, ``"W+R"``, ``"0"`` for jigo."""
        if self.resigned is not None:
            return f"{coords.opponent(self.resigned)}+R"
        return format_result(self.score(rules, dead))

    # -- copying and display ------------------------------------------------

    def copy(self) -> "Board":
        """An independent copy (history and undo included)."""
        other = Board.__new__(Board)
        other.__dict__.update(self.__dict__)
        other._fast = fb.copy_board(self._fast)
        other.history = list(self.history)
        other.handicap = list(self.handicap)
        other._seen = Counter(self._seen)
        other._undo = list(self._undo)  # snapshots are never written, so sharing them is safe
        return other

    def __str__(self) -> str:
        cols = coords.GTP_COLUMNS[: self.size]
        grid = self.stones()
        lines = ["   " + " ".join(cols)]
        for row in range(self.size - 1, -1, -1):
            cells = " ".join(".XO"[v] for v in grid[row])
            lines.append(f"{row + 1:2d} {cells} {row + 1}")
        lines.append(lines[0])
        return "\n".join(lines)

    @classmethod
    def from_diagram(cls, diagram: str, komi: float = 7.5, to_move: str = "B", **rules) -> "Board":
        """A board from rows of ``X`` (black), ``O`` (white) and ``.``, top row first.

        Coordinate labels and spaces are ignored, so :func:`str` output reads back.
        """
        rows = []
        for line in diagram.strip().splitlines():
            cells = [ch for ch in line if ch in ".XOxo"]
            if cells:
                rows.append(cells)
        size = len(rows)
        if any(len(r) != size for r in rows):
            raise ValueError("diagram is not square")
        board = cls(size, komi, **rules)
        black, white = [], []
        for i, cells in enumerate(rows):
            for col, ch in enumerate(cells):
                if ch in "Xx":
                    black.append((size - 1 - i, col))
                elif ch in "Oo":
                    white.append((size - 1 - i, col))
        board.setup(black, white)
        board.to_move = to_move
        return board


def format_result(margin: float) -> str:
    """Black's margin minus komi -> ``"B+3.5"``, ``"W+0.5"``, ``"0"``."""
    if margin == 0:
        return "0"
    return f"{'B' if margin > 0 else 'W'}+{abs(margin):g}"


def fixed_handicap_points(size: int, n: int) -> list[coords.Point]:
    """The GTP 2 specification's fixed handicap placement (section 4.1.1).

    Boards of 7x7 and up; at most 9 stones on odd sizes from 9 up, else 4.
    Stones go on the 4th line from 13x13 up, the 3rd line below that.
    """
    coords.check_size(size)
    limit = 9 if size % 2 == 1 and size >= 9 else 4
    if size < 7:
        raise ValueError("no fixed handicap on boards under 7x7")
    if not 2 <= n <= limit:
        raise ValueError(f"invalid handicap {n} for a {size}x{size} board (2 to {limit} allowed)")
    lo = 3 if size >= 13 else 2
    hi = size - 1 - lo
    mid = size // 2
    corners = [(lo, lo), (hi, hi), (hi, lo), (lo, hi)]  # D4 Q16 D16 Q4 on 19x19
    sides = [(mid, lo), (mid, hi)]  # D10 Q10
    tops = [(lo, mid), (hi, mid)]  # K4 K16
    centre = [(mid, mid)]
    order = {
        2: corners[:2],
        3: corners[:3],
        4: corners,
        5: corners + centre,
        6: corners + sides,
        7: corners + sides + centre,
        8: corners + sides + tops,
        9: corners + sides + tops + centre,
    }
    return order[n]


def random_playouts(size: int, n: int, komi: float = 7.5, seed: int = 0) -> np.ndarray:
    """Outcomes of ``n`` uniformly random games from the empty board (the board's speed benchmark).

    Each game plays random legal moves that do not fill the mover's own
    single-point eye, until both sides pass. Returns float64[n]: black's area
    margin minus komi for each game (positive: black won).
    """
    return fb.random_playouts_kernel(fb.new_board(coords.check_size(size)), int(n), float(komi), int(seed))
