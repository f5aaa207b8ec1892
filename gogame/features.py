"""Input feature planes for the networks: AlphaGo's 48 (and 49) planes and AlphaGo Zero's 17.

Scope: turning a position (a :class:`gogame.board.Board`, or a
:class:`~gogame.fastboard.FastBoard` inside numba) into ``uint8`` planes of
shape ``(planes, size, size)`` in :meth:`Board.stones` orientation
(``[row, col]``, row 0 the bottom row); the board symmetries used for data
augmentation and tree search; and a legal-move mask for the networks. A
feature set is a list of named plane families (as in minigo's features.py):
:data:`FAMILIES` lists them, :data:`FEATURE_SETS` gives each set's plane count.

``alphago48`` (AlphaGo, Nature 2016, Extended Data Table 2), relative to the
player to move:

======  ====================  ==================================================
planes  family                meaning
======  ====================  ==================================================
0-2     stone_colour          own stone, opponent stone, empty
3       ones                  constant 1
4-11    turns_since           stones: moves since played, one-hot 1..>=8 (1: last move)
12-19   liberties             stones: liberties of the chain, one-hot 1..>=8
20-27   capture_size          opponent stones the move captures, one-hot 0..>=7
28-35   self_atari_size       own stones left in atari by the move, one-hot 1..>=8
36-43   liberties_after       liberties of the mover's chain after the move
                              (captures included), one-hot 1..>=8
44      ladder_capture        the move ataris a 2-liberty opponent chain that
                              then cannot escape the ladder
45      ladder_escape         the move saves an own chain in atari (joining it,
                              or capturing a chain beside it) from capture by
                              ladder
46      sensibleness          legal and not filling an own eye (``is_eyelike``)
47      zeros                 constant 0
======  ====================  ==================================================

``alphago49`` adds plane 48, player_colour: 1 when black is to move (the value
network's input). ``zero17`` is AlphaGo Zero's input: planes 0-7 the stones of
the player to move in the current position and the 7 before it (current
first), 8-15 the opponent's stones likewise, 16 ones when black is to move.
Positions before the first move (or before the last setup) are empty planes.

Planes 20-46 are set on legal empty points only, legal under the board's
simple ko and suicide rule: superko is ignored here (a superko-forbidden point
still gets planes; :func:`legal_mask` does check it). Planes 4-19 are set on
stones only. The move planes are computed from the chain and liberty data
without playing the move: the liberties after a move are the union of the
point's empty neighbours, the liberties of the own chains it joins, and the
stones of captured chains that touch the new chain, counted with a stamp
array and cut off at 8. Stones placed by setup keep the move counter that
:func:`gogame.fastboard.rebuild` leaves in ``placed`` (0 on a fresh board, so
they count as played at move 0).

Ladders are read by a depth-first search on copies of the colour array, one
per ply. The prey (a chain in atari, its owner to move) extends at its
liberty or captures an adjacent attacker chain in atari; with 3 or more
liberties it is free, with 1 it is lost, with 2 the attacker tries both
liberties (an atari after which the prey's escape point has 3 empty
neighbours is not tried). A read may play :data:`LADDER_NODES` moves and go
:data:`LADDER_DEPTH` plies deep; one that runs out counts as an escape (no
ladder capture, a ladder escape), so the planes err towards "no ladder".
"""

from __future__ import annotations

import functools
from typing import Sequence

import numba as nb
import numpy as np

from gogame import fastboard as fb
from gogame.board import Board
from gogame.fastboard import BLACK, EMPTY, M_MOVES, M_SIZE, M_STRIDE, M_TO_MOVE, WALL, FastBoard

FAMILIES: dict[str, tuple[tuple[str, int], ...]] = {
    "alphago48": (
        ("stone_colour", 3),
        ("ones", 1),
        ("turns_since", 8),
        ("liberties", 8),
        ("capture_size", 8),
        ("self_atari_size", 8),
        ("liberties_after", 8),
        ("ladder_capture", 1),
        ("ladder_escape", 1),
        ("sensibleness", 1),
        ("zeros", 1),
    ),
}
FAMILIES["alphago49"] = FAMILIES["alphago48"] + (("player_colour", 1),)
FAMILIES["zero17"] = (("own_stones", 8), ("opponent_stones", 8), ("black_to_move", 1))

FEATURE_SETS: dict[str, int] = {name: sum(n for _, n in fams) for name, fams in FAMILIES.items()}

# First plane of each alphago48 family, as the kernels use them (tests pin them to FAMILIES).
_OWN, _OPP, _EMPTY, _ONES = 0, 1, 2, 3
_TURNS, _LIBS, _CAPTURE, _SELF_ATARI, _LIBS_AFTER = 4, 12, 20, 28, 36
_LADDER_CAPTURE, _LADDER_ESCAPE, _SENSIBLE, _COLOUR = 44, 45, 46, 48

LADDER_NODES = 400  # moves a ladder read may play
LADDER_DEPTH = 80  # plies per ladder read (a ladder across a 19x19 board takes 40 to 60)


def plane_slice(name: str, family: str) -> slice:
    """The planes of ``family`` in feature set ``name`` (KeyError for unknown names)."""
    start = 0
    for fam, n in FAMILIES[name]:
        if fam == family:
            return slice(start, start + n)
        start += n
    raise KeyError(f"feature set {name!r} has no family {family!r}")


# -- move effects without playing ------------------------------------------------
#
# Numba passes a FastBoard as ten arrays and reference-counts each one on every
# call that is not inlined, which costs more than the work per point here. So
# the per-point work runs in loops over many points inside one call.

# Columns of the table that _move_effects fills.
_E_CAPTURED, _E_LIBS, _E_STONES, _E_ATARIS, _E_TOUCHES_ATARI = 0, 1, 2, 3, 4


@nb.njit(cache=True)
def _move_effects(b: FastBoard, c: int, points: np.ndarray, cap: int, mark: np.ndarray, out: np.ndarray) -> None:
    """Effects of each legal move ``points[i]`` of colour ``c``, without playing it, into ``out[i]``.

    Columns: stones captured; liberties of the mover's chain after the move
    (exact below ``cap``, else ``cap``); that chain's stones; 1 if the move
    takes a liberty of an opponent chain with 2; 1 if it joins an own chain
    in atari. ``mark`` (int64[N]) is scratch: its cell 0 (the PASS corner,
    never a point) holds the last stamp used.
    """
    colour, head, nxt, chain_size, libs = b.colour, b.head, b.nxt, b.chain_size, b.libs
    s = b.meta[M_STRIDE]
    heads = np.empty(8, np.int64)  # distinct neighbour chains: own in 0..3, opponent in 4..7
    for i in range(points.size):
        p = points[i]
        n_own = 0
        n_opp = 4
        for q in (p - s, p - 1, p + 1, p + s):
            cq = colour[q]
            if cq == c or cq == 3 - c:
                h = head[q]
                lo, hi = (0, n_own) if cq == c else (4, n_opp)
                new = True
                for j in range(lo, hi):
                    new &= heads[j] != h
                if new and cq == c:
                    heads[n_own] = h
                    n_own += 1
                elif new:
                    heads[n_opp] = h
                    n_opp += 1
        stones = 1
        touches_atari = 0
        saturated = False
        for j in range(n_own):
            h = heads[j]
            stones += chain_size[h]
            touches_atari |= libs[h] == 1
            saturated |= libs[h] - 1 >= cap
        captured = 0
        ataris = 0
        for j in range(4, n_opp):
            h = heads[j]
            captured += chain_size[h] if libs[h] == 1 else 0
            ataris |= libs[h] == 2
        count = cap
        if not saturated and n_own == 0 and captured == 0:
            count = 0  # a lone stone: its empty neighbours
            for q in (p - s, p - 1, p + 1, p + s):
                count += colour[q] == EMPTY
        elif not saturated:
            # Count the union of p's empty neighbours, the own chains' liberties
            # and the captured stones that touch the new chain, stopping at cap.
            mark[0] += 1
            stamp = mark[0]
            mark[p] = stamp
            count = 0
            for q in (p - s, p - 1, p + 1, p + s):
                if colour[q] == EMPTY:
                    mark[q] = stamp
                    count += 1
            for j in range(n_own):
                h = heads[j]
                q = h
                while count < cap:
                    for e in (q - s, q - 1, q + 1, q + s):
                        if colour[e] == EMPTY and mark[e] != stamp:
                            mark[e] = stamp
                            count += 1
                    q = nxt[q]
                    if q == h:
                        break
            for j in range(4, n_opp):
                h = heads[j]
                q = h
                while libs[h] == 1 and count < cap:
                    for r in (q - s, q - 1, q + 1, q + s):
                        joined = r == p
                        for k in range(n_own):
                            joined |= colour[r] == c and head[r] == heads[k]
                        if joined:
                            count += 1
                            break
                    q = nxt[q]
                    if q == h:
                        break
        out[i, _E_CAPTURED] = captured
        out[i, _E_LIBS] = min(count, cap)
        out[i, _E_STONES] = stones
        out[i, _E_ATARIS] = ataris
        out[i, _E_TOUCHES_ATARI] = touches_atari


# -- ladders ---------------------------------------------------------------------
#
# Ladders are read on bare colour arrays, one per ply: copying a row of int8
# costs far less than copying and playing on a FastBoard, and the few chains a
# ladder involves are flood filled as needed. The rules are the board's
# (captures, simple ko), except that suicide is never played. The scratch
# space, allocated once per position:
#   cols  int8 (LADDER_DEPTH, N): the colour array at each ply;
#   buf   int64 (3, N): flood-fill marks (cell 0 holds the last stamp, as in
#         _move_effects), and two lists of chain stones;
#   work  int64 (LADDER_DEPTH + 1, 12): per ply, liberties in columns 0-2 and
#         the prey's tries in 3-10; work[LADDER_DEPTH, 0] is the node budget.

_ILLEGAL = -2  # _play_local's answer to an illegal move
# The ladder kernels below call each other with one argument type per parameter (int64: a constant is a
# literal type to numba, and an int32 read from the board another type), so that numba compiles each kernel
# once and not once per distinct type: seconds of the first start after an install.
_TRIES = 3  # first column of the prey's tries in a row of work


@nb.njit(cache=True)
def _chain_liberties(col: np.ndarray, s: int, p: int, cap: int, mark: np.ndarray, chain: np.ndarray,
                     libs: np.ndarray) -> tuple[int, int]:
    """Flood fill the chain through the stone at ``p`` on the colour array ``col`` (row stride ``s``).

    Returns ``(liberties, stones)``, stopping once ``cap`` liberties are
    found (the stone count is then partial). The stones go to ``chain`` and
    the first ``cap`` liberties to ``libs``.
    """
    mark[0] += 1
    stamp = mark[0]
    c = col[p]
    mark[p] = stamp
    chain[0] = p
    size = 1
    n = 0
    i = 0
    while i < size and n < cap:
        q = chain[i]
        i += 1
        for r in (q - s, q - 1, q + 1, q + s):
            if mark[r] != stamp and (col[r] == c or col[r] == EMPTY):
                mark[r] = stamp
                if col[r] == c:
                    chain[size] = r
                    size += 1
                elif n < cap:
                    libs[n] = r
                    n += 1
    return n, size


@nb.njit(cache=True)
def _play_local(col: np.ndarray, s: int, p: int, c: int, ko: int, buf: np.ndarray, libs: np.ndarray) -> int:
    """Play ``c`` at ``p`` on the colour array ``col``, ``ko`` being the point ``c`` may not take.

    Returns the point the opponent may not take afterwards (``NO_POINT`` for
    none), or ``_ILLEGAL`` for an occupied point, the ko point or a suicide
    (``col`` is then spoilt). Uses ``buf[0]``, ``buf[1]`` and ``libs``.
    """
    if col[p] != EMPTY or p == ko:
        return _ILLEGAL
    col[p] = c
    mark, chain = buf[0], buf[1]
    captured = 0
    taken = fb.NO_POINT
    for r in (p - s, p - 1, p + 1, p + s):
        if col[r] == 3 - c:
            n, stones = _chain_liberties(col, s, r, np.int64(1), mark, chain, libs)
            if n == 0:
                for i in range(stones):
                    col[chain[i]] = EMPTY
                captured += stones
                taken = r
    n, stones = _chain_liberties(col, s, p, np.int64(2), mark, chain, libs)
    if n == 0:
        return _ILLEGAL
    return taken if captured == 1 and n == 1 and stones == 1 else fb.NO_POINT


@nb.njit(cache=True)
def _copy_row(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[:] = src``, which numba compiles to a slower loop."""
    for i in range(src.size):
        dst[i] = src[i]


@nb.njit(cache=True, inline="always")
def _contains(a: np.ndarray, start: int, stop: int, v: int) -> bool:
    for i in range(start, stop):
        if a[i] == v:
            return True
    return False


@nb.njit(cache=True)
def _edge_line(s: int, p: int) -> int:
    """The line of ``p`` counted from the nearest edge (0 on the first line)."""
    size = s - 2
    row, col = fb.from_padded(p, size)
    return min(row, col, size - 1 - row, size - 1 - col)


@nb.njit(cache=True, inline="always")
def _empty_around(col: np.ndarray, s: int, p: int, other: int) -> int:
    """Empty neighbours of ``p`` other than ``other``."""
    n = 0
    for r in (p - s, p - 1, p + 1, p + s):
        n += col[r] == EMPTY and r != other
    return n


@nb.njit(cache=True)
def _ladder_captured(cols: np.ndarray, d: int, s: int, prey: int, prey_to_move: bool, ko: int,
                     buf: np.ndarray, work: np.ndarray) -> bool:
    """Is the chain through ``prey`` on the colour array ``cols[d]`` captured by ladder?

    ``ko`` is the point the side to move may not take. Attacker to move: 1
    liberty is captured, 3 or more are free, with 2 it tries both, first the
    one leaving fewer empty points around the prey's escape point, then the
    one driving the prey towards the edge. Prey to move (in atari): it
    extends at its liberty or captures an adjacent attacker chain in atari,
    and is captured if every try is. Each move played costs one from the
    budget; a read over budget or over :data:`LADDER_DEPTH` answers False.
    """
    if work[LADDER_DEPTH, 0] <= 0 or d + 1 >= LADDER_DEPTH:
        return False
    col = cols[d]
    child = cols[d + 1]
    row = work[d]
    pc = np.int64(col[prey])
    n, size = _chain_liberties(col, s, prey, np.int64(3), buf[0], buf[1], row)
    if not prey_to_move:
        if n != 2:
            return n == 1 and row[0] != ko
        # The attacker takes one liberty and the prey extends at the other, its escape point.
        move0, escape0 = row[1], _empty_around(col, s, row[0], row[1])
        move1, escape1 = row[0], _empty_around(col, s, row[1], row[0])
        if (escape1, -_edge_line(s, move1)) < (escape0, -_edge_line(s, move0)):
            move0, escape0, move1, escape1 = move1, escape1, move0, escape0
        for move, escape in ((move0, escape0), (move1, escape1)):
            if escape >= 3:
                continue  # 3 empty points around the escape point: the prey gets out
            _copy_row(child, col)
            new_ko = _play_local(child, s, move, 3 - pc, ko, buf, row)
            if new_ko != _ILLEGAL:
                work[LADDER_DEPTH, 0] -= 1
                if _ladder_captured(cols, d + 1, s, prey, not prey_to_move, new_ko, buf, work):
                    return True
        return False
    if row[0] != ko and _empty_around(col, s, row[0], row[0]) >= 3:
        return False  # extending gives 3 liberties at least
    row[_TRIES] = row[0]
    tries = _TRIES + 1
    chain = buf[1]
    for i in range(size):
        for r in (chain[i] - s, chain[i] - 1, chain[i] + 1, chain[i] + s):
            # An attacker stone with 2 empty neighbours is in a chain with 2 liberties: no flood fill.
            if col[r] != 3 - pc or _empty_around(col, s, r, 0) >= 2:
                continue
            if _chain_liberties(col, s, r, np.int64(2), buf[0], buf[2], row)[0] == 1 and tries < row.size:
                if not _contains(row, _TRIES, tries, row[0]):
                    row[tries] = row[0]
                    tries += 1
    for i in range(_TRIES, tries):
        _copy_row(child, col)
        new_ko = _play_local(child, s, row[i], pc, ko, buf, row)
        if new_ko != _ILLEGAL:
            work[LADDER_DEPTH, 0] -= 1
            if not _ladder_captured(cols, d + 1, s, prey, not prey_to_move, new_ko, buf, work):
                return False
    return True


@nb.njit(cache=True)
def _read_ladder(b: FastBoard, move: int, prey: int, cols: np.ndarray, buf: np.ndarray, work: np.ndarray) -> bool:
    """After the side to move in ``b`` plays the legal ``move``, is the chain through ``prey`` captured by ladder?"""
    s = b.meta[M_STRIDE]
    c = b.meta[M_TO_MOVE]
    _copy_row(cols[0], b.colour)
    ko = _play_local(cols[0], s, move, c, fb.NO_POINT, buf, work[0])
    prey_to_move = cols[0, prey] != c
    if ko == _ILLEGAL:  # a suicide the board allows: no ladder either way
        return not prey_to_move
    work[LADDER_DEPTH, 0] = LADDER_NODES - 1
    # One signature only: numba's cache mishandles a recursive function compiled for several.
    return _ladder_captured(cols, np.int64(0), s, np.int64(prey), prey_to_move, np.int64(ko), buf, work)


@nb.njit(cache=True)
def _neighbour_chains(b: FastBoard, p: int, colour: int, libs: int) -> np.ndarray:
    """Heads of the distinct chains of ``colour`` beside ``p`` with ``libs`` liberties."""
    heads = np.empty(4, np.int64)
    n = 0
    for q in fb.neighbours(b, p):
        h = b.head[q]
        if b.colour[q] == colour and b.libs[h] == libs and not _contains(heads, 0, n, h):
            heads[n] = h
            n += 1
    return heads[:n]


@nb.njit(cache=True)
def _ladder_capture(b: FastBoard, p: int, c: int, cols: np.ndarray, buf: np.ndarray, work: np.ndarray) -> bool:
    """Does ``c`` at ``p`` atari a 2-liberty opponent chain that cannot escape the ladder?"""
    for prey in _neighbour_chains(b, p, 3 - c, np.int64(2)):
        if _read_ladder(b, p, prey, cols, buf, work):
            return True
    return False


@nb.njit(cache=True)
def _ladder_escape(b: FastBoard, p: int, c: int, after: int, cols: np.ndarray, buf: np.ndarray,
                   work: np.ndarray) -> bool:
    """Does ``c`` at ``p`` save an own chain in atari from capture by ladder?

    The move may join the chain (``after``, the liberties of the chain
    through ``p`` after the move, judges that) or capture an opponent chain
    beside it.
    """
    joined = _neighbour_chains(b, p, c, np.int64(1))
    if joined.size and (after >= 3 or not _read_ladder(b, p, p, cols, buf, work)):
        return True
    for h in _neighbour_chains(b, p, 3 - c, np.int64(1)):
        q = h
        while True:
            for r in fb.neighbours(b, q):
                hr = b.head[r]
                if b.colour[r] == c and b.libs[hr] == 1 and not _contains(joined, 0, joined.size, hr):
                    if not _read_ladder(b, p, np.int64(hr), cols, buf, work):
                        return True
            q = b.nxt[q]
            if q == h:
                break
    return False


# -- feature kernels ------------------------------------------------------------


@nb.njit(cache=True)
def compute_alphago(b: FastBoard, out: np.ndarray, with_colour_plane: bool) -> None:
    """Write the ``alphago48`` planes (``alphago49`` with ``with_colour_plane``) of ``b`` into ``out``.

    ``out``: uint8 ``(48 or 49, size, size)``, overwritten entirely, ``[row, col]``
    with row 0 the bottom row; planes relative to the side to move in ``b``.
    """
    colour, head, libs, placed = b.colour, b.head, b.libs, b.placed
    size = b.meta[M_SIZE]
    s = b.meta[M_STRIDE]
    c = b.meta[M_TO_MOVE]
    moves = b.meta[M_MOVES]
    out[:] = 0
    out[_ONES] = 1
    if with_colour_plane and c == BLACK:
        out[_COLOUR] = 1
    legal = np.empty(size * size, np.int64)
    n = 0
    in_atari = False  # has the side to move a chain in atari (so ladder escapes are possible)?
    for row in range(size):
        for col in range(size):
            p = fb.to_padded(row, col, size)
            cp = colour[p]
            if cp != EMPTY:
                out[_OWN if cp == c else _OPP, row, col] = 1
                out[_TURNS + min(max(moves - placed[p], 1), 8) - 1, row, col] = 1
                out[_LIBS + min(libs[head[p]], 8) - 1, row, col] = 1
                in_atari |= cp == c and libs[head[p]] == 1
                continue
            out[_EMPTY, row, col] = 1
            if fb.is_legal(b, p, c):
                legal[n] = p
                n += 1
    legal = legal[:n]
    effects = np.empty((n, 5), np.int64)
    buf = np.zeros((3, colour.size), np.int64)  # marks for _move_effects and the ladders, chain lists
    _move_effects(b, c, legal, 8, buf[0], effects)
    cols = np.empty((LADDER_DEPTH, colour.size), np.int8)
    work = np.empty((LADDER_DEPTH + 1, 12), np.int64)
    for i in range(n):
        p = legal[i]
        row, col = fb.from_padded(p, size)
        captured, after, stones, ataris, touches_atari = effects[i]
        out[_CAPTURE + min(captured, 7), row, col] = 1
        if after == 1:
            out[_SELF_ATARI + min(stones, 8) - 1, row, col] = 1
        if after >= 1:
            out[_LIBS_AFTER + after - 1, row, col] = 1
        if ataris and _ladder_capture(b, p, c, cols, buf, work):
            out[_LADDER_CAPTURE, row, col] = 1
        saves = touches_atari or (in_atari and captured > 0)
        if saves and _ladder_escape(b, p, c, after, cols, buf, work):
            out[_LADDER_ESCAPE, row, col] = 1
        # is_eyelike only when every neighbour is own or wall: a call costs more than this test.
        surrounded = True
        for q in (p - s, p - 1, p + 1, p + s):
            surrounded &= colour[q] == c or colour[q] == WALL
        if not (surrounded and fb.is_eyelike(b, p, c)):
            out[_SENSIBLE, row, col] = 1


@nb.njit(cache=True)
def compute_zero17(history: np.ndarray, to_move: int, out: np.ndarray) -> None:
    """Write the ``zero17`` planes into ``out`` (uint8 ``(17, size, size)``, overwritten).

    ``history``: int8 ``(T, N)``, the ``colour`` arrays of the current
    position and up to 7 before it, newest first (T <= 8; missing ones are
    empty planes); ``to_move``: BLACK or WHITE, the side to move now.
    """
    size = out.shape[1]
    out[:] = 0
    if to_move == BLACK:
        out[16] = 1
    for t in range(min(history.shape[0], 8)):
        for row in range(size):
            for col in range(size):
                cp = history[t, fb.to_padded(row, col, size)]
                if cp == to_move:
                    out[t, row, col] = 1
                elif cp == 3 - to_move:
                    out[8 + t, row, col] = 1


@nb.njit(cache=True)
def _legal_points(b: FastBoard) -> tuple[np.ndarray, np.ndarray]:
    """``(legal, hashes)`` over flat points: legal for the side to move under simple ko,
    and the hash after the move where legal."""
    size = b.meta[M_SIZE]
    c = b.meta[M_TO_MOVE]
    legal = np.zeros(size * size, np.bool_)
    hashes = np.zeros(size * size, np.int64)
    for i in range(size * size):
        p = fb.to_padded(i // size, i % size, size)
        if fb.is_legal(b, p, c):
            legal[i] = True
            hashes[i] = fb.hash_after(b, p, c)
    return legal, hashes


# -- Python API -------------------------------------------------------------------


def _check_name(name: str) -> int:
    if name not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {name!r}; known: {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[name]


def _fill(board: Board, name: str, out: np.ndarray) -> None:
    f = board.fast
    if name == "zero17":
        history = np.stack([f.colour] + [s.colour for s in board._undo[: -8 : -1]])
        compute_zero17(history, int(f.meta[M_TO_MOVE]), out)
    else:
        compute_alphago(f, out, name == "alphago49")


def planes(board: Board, name: str = "alphago48") -> np.ndarray:
    """The feature planes of ``board`` for the side to move: uint8 ``(FEATURE_SETS[name], size, size)``.

    ValueError for an unknown feature set name.
    """
    out = np.empty((_check_name(name), board.size, board.size), np.uint8)
    _fill(board, name, out)
    return out


def planes_batch(boards: Sequence[Board], name: str = "alphago48") -> np.ndarray:
    """:func:`planes` of boards of one size, stacked: uint8 ``(len(boards), planes, size, size)``."""
    n = _check_name(name)
    sizes = {b.size for b in boards}
    if len(sizes) > 1:
        raise ValueError(f"boards of different sizes {sorted(sizes)}")
    size = sizes.pop() if sizes else 19
    out = np.empty((len(boards), n, size, size), np.uint8)
    for board, dst in zip(boards, out):
        _fill(board, name, dst)
    return out


def legal_mask(board: Board) -> np.ndarray:
    """bool ``(size * size,)``, flat index ``row * size + col``: the side to move's legal board moves.

    Simple ko, suicide and the board's superko rule are all applied; pass is
    not included, and no move is legal once the game is over.
    """
    if board.is_over():
        return np.zeros(board.size * board.size, np.bool_)
    legal, hashes = _legal_points(board.fast)
    seen = np.fromiter((key[0] for key in board._seen), np.int64, len(board._seen))
    for i in np.flatnonzero(legal & np.isin(hashes, seen)):
        legal[i] = board.is_legal(divmod(int(i), board.size))
    return legal


# -- symmetries ------------------------------------------------------------------

SYMMETRIES: tuple[str, ...] = (
    "identity",
    "flip_rows",
    "flip_cols",
    "rotate_180",
    "transpose",
    "rotate_90_ccw",
    "rotate_90_cw",
    "anti_transpose",
)
"""The 8 symmetries of the square by index ``k``: bit 0 flips rows (row ``r`` to
``size - 1 - r``), then bit 1 flips columns, then bit 2 transposes. Rotations
are as seen with row 0 at the bottom."""


def transform_planes(planes: np.ndarray, k: int) -> np.ndarray:
    """Symmetry ``k`` applied to the last two axes ``[row, col]`` of ``planes`` (a view where possible)."""
    if k & 1:
        planes = planes[..., ::-1, :]
    if k & 2:
        planes = planes[..., :, ::-1]
    if k & 4:
        planes = np.swapaxes(planes, -1, -2)
    return planes


def transform_flat_move(index, size: int, k: int):
    """Symmetry ``k`` applied to flat move index(es) ``row * size + col``; pass (``size * size``) is kept.

    Takes an int or an integer array; a point at index ``i`` in planes is at
    ``transform_flat_move(i, size, k)`` in ``transform_planes(planes, k)``.
    """
    index = np.asarray(index)
    row, col = np.divmod(index, size)
    if k & 1:
        row = size - 1 - row
    if k & 2:
        col = size - 1 - col
    if k & 4:
        row, col = col, row
    out = np.where(index == size * size, index, row * size + col)
    return int(out) if out.ndim == 0 else out


def inverse(k: int) -> int:
    """The symmetry that undoes symmetry ``k``."""
    return (k & 4) | ((k & 1) << 1) | ((k & 2) >> 1) if k & 4 else k


@functools.cache
def _symmetry_maps(size: int) -> np.ndarray:
    """int64 ``(8, size * size)``: row ``k`` is :func:`transform_flat_move` of every point under symmetry ``k``."""
    points = np.arange(size * size)
    maps = np.stack([transform_flat_move(points, size, k) for k in range(8)])
    maps.flags.writeable = False
    return maps


_INVERSES = np.array([inverse(k) for k in range(8)])


@nb.njit(cache=True)
def _gather_points(src: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """``out[r, c, t] = src[r, c, index[r, t]]`` for arrays ``(R, C, P)``, ``(R, P)`` and ``(R, C, P)``."""
    for r in range(src.shape[0]):
        for c in range(src.shape[1]):
            for t in range(index.shape[1]):
                out[r, c, t] = src[r, c, index[r, t]]


def transform_planes_batch(planes: np.ndarray, ks, dtype=None) -> np.ndarray:
    """Symmetry ``ks[r]`` applied to row ``r`` of ``planes`` ``(R, C, size, size)``: what stacking
    :func:`transform_planes` of each row gives, in one pass. A new array of ``dtype`` (default ``planes``')."""
    rows, channels, size = planes.shape[0], planes.shape[1], planes.shape[-1]
    gather = _symmetry_maps(size)[_INVERSES[np.asarray(ks, np.int64)]]  # (R, S*S): board point each point reads
    out = np.empty((rows, channels, size * size), dtype or planes.dtype)
    _gather_points(np.ascontiguousarray(planes).reshape(rows, channels, size * size), gather, out)
    return out.reshape(planes.shape)


def moves_to_board(values: np.ndarray, ks, size: int) -> np.ndarray:
    """Undo symmetry ``ks[r]`` on row ``r`` of per-move ``values`` ``(R, size*size + 1)`` (a network's output
    for transformed planes): the points return to the board's orientation, pass stays last. A new array."""
    values = np.ascontiguousarray(values)
    out = np.array(values)
    gather = _symmetry_maps(size)[np.asarray(ks, np.int64)]  # (R, S*S): where each board point is in the output
    _gather_points(values[:, None, : size * size], gather, out[:, None, : size * size])
    return out
