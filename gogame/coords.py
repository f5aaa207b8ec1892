"""Coordinates: the one place where the coordinate systems of the project meet.

A *point* is ``(row, col)`` with ``(0, 0)`` the bottom-left corner, as in GTP and
sgfmill. A *move* is a point, or ``None`` for a pass. A *colour* is ``"B"`` or
``"W"``.

==============  =======================  ==========================================
system          example (19x19)          notes
==============  =======================  ==========================================
point           ``(3, 3)``               row 0 is the bottom row
GTP vertex      ``"D4"``, ``"pass"``      column letters skip I; case-insensitive
SGF             ``"dp"``, ``""``          column a.. from the left, row a.. from the
                                         top; ``""`` (and ``"tt"`` up to 19x19) pass
flat index      ``3 * 19 + 3``            ``row * size + col``; ``size * size`` is
                                         pass (network outputs use this)
padded index    ``(row + 1) * (size + 2)``  the numba board's 1-D array with a wall
                ``+ col + 1``            border (see :mod:`gogame.fastboard`); 0 is
                                         pass (``fastboard.PASS``)
==============  =======================  ==========================================
"""

from __future__ import annotations

import numpy as np

Point = tuple[int, int]
Move = Point | None

GTP_COLUMNS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"
MIN_SIZE = 2
MAX_SIZE = len(GTP_COLUMNS)  # 25: GTP has no letter for a 26th column
COLOURS = ("B", "W")


def check_size(size: int) -> int:
    """Return ``size`` if it is a supported board size, else raise ValueError."""
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"board size must be an integer from {MIN_SIZE} to {MAX_SIZE}, not {size!r}")
    return size


def parse_colour(text: str) -> str:
    """``"b"``, ``"black"``, ``"W"``, ... -> ``"B"`` or ``"W"``; ValueError otherwise."""
    t = text.strip().lower()
    if t in ("b", "black"):
        return "B"
    if t in ("w", "white"):
        return "W"
    raise ValueError(f"invalid colour {text!r}")


def opponent(colour: str) -> str:
    return "W" if colour == "B" else "B"


def _check_point(point: Point, size: int) -> Point:
    row, col = point
    if not (0 <= row < size and 0 <= col < size):
        raise ValueError(f"point {point} is off a {size}x{size} board")
    return int(row), int(col)


def from_gtp(vertex: str, size: int) -> Move:
    """GTP vertex (``"D4"``, ``"pass"``) -> move. ValueError if malformed or off the board."""
    v = vertex.strip().upper()
    if v == "PASS":
        return None
    if len(v) < 2 or v[0] not in GTP_COLUMNS or not v[1:].isdigit():
        raise ValueError(f"invalid vertex {vertex!r}")
    col = GTP_COLUMNS.index(v[0])
    row = int(v[1:]) - 1
    if not (0 <= row < size and col < size):
        raise ValueError(f"vertex {vertex!r} is off a {size}x{size} board")
    return row, col


def to_gtp(move: Move) -> str:
    """Move -> GTP vertex (``(3, 3)`` -> ``"D4"``, ``None`` -> ``"pass"``)."""
    if move is None:
        return "pass"
    row, col = move
    return f"{GTP_COLUMNS[col]}{row + 1}"


def from_sgf(text: str, size: int) -> Move:
    """SGF point (``"dp"``) -> move; ``""`` and, up to 19x19, ``"tt"`` are a pass."""
    t = text.strip()
    if t == "" or (t == "tt" and size <= 19):
        return None
    if len(t) != 2 or not ("a" <= t[0] <= "z" and "a" <= t[1] <= "z"):
        raise ValueError(f"invalid SGF point {text!r}")
    col = ord(t[0]) - ord("a")
    row = size - 1 - (ord(t[1]) - ord("a"))
    return _check_point((row, col), size)


def to_sgf(move: Move, size: int) -> str:
    """Move -> SGF point; a pass is ``""`` (FF[4])."""
    if move is None:
        return ""
    row, col = _check_point(move, size)
    return "abcdefghijklmnopqrstuvwxyz"[col] + "abcdefghijklmnopqrstuvwxyz"[size - 1 - row]


def to_flat(move: Move, size: int) -> int:
    """Move -> ``row * size + col``; a pass is ``size * size``."""
    if move is None:
        return size * size
    row, col = move
    return row * size + col


def from_flat(index: int, size: int) -> Move:
    """``row * size + col`` (or ``size * size`` for pass) -> move."""
    if index == size * size:
        return None
    if not 0 <= index < size * size:
        raise ValueError(f"flat index {index} is off a {size}x{size} board")
    return divmod(int(index), size)


def to_padded(row: int, col: int, size: int) -> int:
    """The point ``(row, col)`` -> its padded index ``(row + 1) * (size + 2) + col + 1``.

    Plain arithmetic, so it takes numpy arrays too; :mod:`gogame.fastboard` compiles it for kernels."""
    return (row + 1) * (size + 2) + col + 1


def from_padded(index: int, size: int) -> Point:
    """A padded index of a point (not a wall) -> ``(row, col)``; the inverse of :func:`to_padded`."""
    stride = size + 2
    return index // stride - 1, index % stride - 1


def unpad(cells: np.ndarray, size: int) -> np.ndarray:
    """An array of one value per padded index -> the ``[row, col]`` grid of its points (a view, walls dropped)."""
    stride = size + 2
    return cells.reshape(stride, stride)[1:-1, 1:-1]


def parse_move(move: str | Point | None, size: int) -> Move:
    """Accept a GTP vertex string, a ``(row, col)`` pair or ``None`` (pass)."""
    if move is None:
        return None
    if isinstance(move, str):
        return from_gtp(move, size)
    return _check_point(tuple(move), size)
