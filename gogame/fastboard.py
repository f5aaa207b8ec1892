"""The numba board: stones, chains, liberties, Zobrist hash and simple ko.

This is the lowest layer of the game state (after Leela Zero's ``FastBoard``
and KataGo's ``Board``). It knows nothing of superko, history or scoring
rules; :mod:`gogame.board` adds those. Every function here that takes a
:class:`FastBoard` is an ``njit(cache=True)`` kernel, callable from other numba
code (features, rollouts, tree search).

Layout. A ``size x size`` board lives in a padded 1-D array of
``(size + 2) ** 2`` cells with a one-cell wall border; the point ``(row, col)``
is at index ``(row + 1) * stride + col + 1`` with ``stride = size + 2``
(:func:`gogame.coords.to_padded`), so the
four neighbours of ``p`` are ``p - stride, p - 1, p + 1, p + stride``. Index
``PASS = 0`` is a wall corner, so a move is one small integer.

Chains are circular linked lists through ``nxt``; every stone records its
chain's head in ``head``, and the chain's stone count and exact liberty count
are stored at the head only. Playing a stone updates them incrementally: the
new stone takes one liberty from each distinct adjacent chain, a merge adds the
liberties of the smaller chain that the larger one did not have (relabelling
stone by stone, so each new liberty is counted once), and a capture gives one
liberty to each distinct chain next to each removed stone. No flood fill.

The empty points are kept in a list with O(1) removal (``empties`` and
``empty_pos``), so random playouts pick moves without scanning the board.

Colours are ``EMPTY = 0``, ``BLACK = 1``, ``WHITE = 2``, ``WALL = 3``; the
opponent of ``c`` is ``3 - c``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numba as nb
import numpy as np

from gogame import coords

EMPTY, BLACK, WHITE, WALL = 0, 1, 2, 3
PASS = 0
NO_POINT = -1

# meta[] slots: the board's scalar state, kept in one int64 array so that a
# FastBoard is a tuple of arrays that numba passes by reference.
M_SIZE = 0
M_STRIDE = 1
M_TO_MOVE = 2
M_KO = 3  # the point the side in M_KO_COLOUR may not play (simple ko), or NO_POINT
M_KO_COLOUR = 4
M_HASH = 5
M_CAPTURES = 6  # M_CAPTURES + c: stones captured *by* colour c (index 7 black, 8 white)
M_MOVES = 9  # moves played so far, passes included
M_LAST = 10  # the last move (PASS, a point, or NO_POINT at the start)
M_LAST2 = 11  # the move before it
M_NEMPTY = 12
M_PASSES = 13  # consecutive passes at the end of the game so far
M_ALLOW_SUICIDE = 14
N_META = 15


class FastBoard(NamedTuple):
    """The numba board's arrays. Treat as opaque outside numba kernels."""

    colour: np.ndarray  # int8[N]: EMPTY, BLACK, WHITE or WALL
    head: np.ndarray  # int32[N]: head of the chain a stone belongs to
    nxt: np.ndarray  # int32[N]: next stone of the chain (circular)
    chain_size: np.ndarray  # int32[N]: stones in the chain (valid at heads)
    libs: np.ndarray  # int32[N]: liberties of the chain (valid at heads)
    placed: np.ndarray  # int32[N]: M_MOVES when the stone was played
    empties: np.ndarray  # int32[N]: the empty points, first meta[M_NEMPTY] valid
    empty_pos: np.ndarray  # int32[N]: index of an empty point in `empties`
    meta: np.ndarray  # int64[N_META]: scalars, see M_*
    zobrist: np.ndarray  # int64[3, N]: hash keys by colour and point; shared, never written


@lru_cache(maxsize=None)
def zobrist_table(size: int) -> np.ndarray:
    """Fixed-seed Zobrist keys for a board size, so hashes are reproducible."""
    n = (size + 2) ** 2
    rng = np.random.default_rng(0x60_60 + size)
    table = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=(3, n), dtype=np.int64)
    table[EMPTY] = 0
    table.flags.writeable = False
    return table


def new_board(size: int, allow_suicide: bool = False) -> FastBoard:
    """An empty board of ``size`` (2 to 25), black to move."""
    stride = size + 2
    n = stride * stride
    colour = np.full(n, WALL, dtype=np.int8)
    for row in range(size):
        start = coords.to_padded(row, 0, size)
        colour[start : start + size] = EMPTY
    empties = np.flatnonzero(colour == EMPTY).astype(np.int32)
    empty_pos = np.full(n, -1, dtype=np.int32)
    empty_pos[empties] = np.arange(len(empties), dtype=np.int32)
    meta = np.zeros(N_META, dtype=np.int64)
    meta[M_SIZE] = size
    meta[M_STRIDE] = stride
    meta[M_TO_MOVE] = BLACK
    meta[M_KO] = NO_POINT
    meta[M_LAST] = NO_POINT
    meta[M_LAST2] = NO_POINT
    meta[M_NEMPTY] = len(empties)
    meta[M_ALLOW_SUICIDE] = int(allow_suicide)
    return FastBoard(
        colour,
        np.zeros(n, np.int32),
        np.zeros(n, np.int32),
        np.zeros(n, np.int32),
        np.zeros(n, np.int32),
        np.zeros(n, np.int32),
        np.concatenate([empties, np.zeros(n - len(empties), np.int32)]),
        empty_pos,
        meta,
        zobrist_table(size),
    )


@nb.njit(cache=True)
def copy_board(b: FastBoard) -> FastBoard:
    """An independent copy (the Zobrist table is shared)."""
    return FastBoard(
        b.colour.copy(),
        b.head.copy(),
        b.nxt.copy(),
        b.chain_size.copy(),
        b.libs.copy(),
        b.placed.copy(),
        b.empties.copy(),
        b.empty_pos.copy(),
        b.meta.copy(),
        b.zobrist,
    )


@nb.njit(cache=True)
def copy_into(dst: FastBoard, src: FastBoard) -> None:
    """Overwrite ``dst`` with ``src`` (same size) without allocating."""
    dst.colour[:] = src.colour
    dst.head[:] = src.head
    dst.nxt[:] = src.nxt
    dst.chain_size[:] = src.chain_size
    dst.libs[:] = src.libs
    dst.placed[:] = src.placed
    dst.empties[:] = src.empties
    dst.empty_pos[:] = src.empty_pos
    dst.meta[:] = src.meta


@nb.njit(cache=True, inline="always")
def neighbours(b: FastBoard, p: int) -> tuple[int, int, int, int]:
    s = b.meta[M_STRIDE]
    return p - s, p - 1, p + 1, p + s


@nb.njit(cache=True, inline="always")
def diagonals(b: FastBoard, p: int) -> tuple[int, int, int, int]:
    s = b.meta[M_STRIDE]
    return p - s - 1, p - s + 1, p + s - 1, p + s + 1


# The padded-index conversions of :mod:`gogame.coords`, compiled for kernels.
to_padded = nb.njit(cache=True, inline="always")(coords.to_padded)
from_padded = nb.njit(cache=True, inline="always")(coords.from_padded)


@nb.njit(cache=True, inline="always")
def is_stone(c: int) -> bool:
    return c == BLACK or c == WHITE


@nb.njit(cache=True)
def chain_liberties(b: FastBoard, p: int) -> int:
    """Liberties of the chain through the stone at ``p``."""
    return b.libs[b.head[p]]


@nb.njit(cache=True)
def chain_stones(b: FastBoard, p: int) -> np.ndarray:
    """The points of the chain through the stone at ``p``."""
    h = b.head[p]
    out = np.empty(b.chain_size[h], np.int32)
    q = h
    for i in range(out.size):
        out[i] = q
        q = b.nxt[q]
    return out


@nb.njit(cache=True)
def is_legal(b: FastBoard, p: int, c: int) -> bool:
    """Is ``p`` legal for colour ``c`` under simple ko (superko is the caller's)?

    Suicide is illegal unless the board allows it; a pass is always legal.
    """
    if p == PASS:
        return True
    if b.colour[p] != EMPTY:
        return False
    if p == b.meta[M_KO] and c == b.meta[M_KO_COLOUR]:
        return False
    if b.meta[M_ALLOW_SUICIDE]:
        return True
    return not is_suicide(b, p, c)


@nb.njit(cache=True)
def is_suicide(b: FastBoard, p: int, c: int) -> bool:
    """Would a stone of ``c`` at the empty point ``p`` have no liberties and capture nothing?"""
    for q in neighbours(b, p):
        cq = b.colour[q]
        if cq == EMPTY:
            return False
        if cq == c and b.libs[b.head[q]] > 1:
            return False
        if cq == 3 - c and b.libs[b.head[q]] == 1:
            return False
    return True


@nb.njit(cache=True)
def is_eyelike(b: FastBoard, p: int, c: int) -> bool:
    """Is the empty point ``p`` a single-point eye of ``c``?

    All four neighbours are ``c`` or wall, and the diagonals hold at most one
    opponent stone in the centre, none on the edge or in the corner (the usual
    playout rule: such a point is never filled by its owner).
    """
    for q in neighbours(b, p):
        cq = b.colour[q]
        if cq != c and cq != WALL:
            return False
    bad = 0
    walls = 0
    for q in diagonals(b, p):
        cq = b.colour[q]
        if cq == WALL:
            walls = 1
        elif cq == 3 - c:
            bad += 1
    return bad + walls < 2


@nb.njit(cache=True)
def _remove_empty(b: FastBoard, p: int) -> None:
    n = b.meta[M_NEMPTY] - 1
    i = b.empty_pos[p]
    last = b.empties[n]
    b.empties[i] = last
    b.empty_pos[last] = i
    b.empty_pos[p] = -1
    b.meta[M_NEMPTY] = n


@nb.njit(cache=True)
def _add_empty(b: FastBoard, p: int) -> None:
    n = b.meta[M_NEMPTY]
    b.empties[n] = p
    b.empty_pos[p] = n
    b.meta[M_NEMPTY] = n + 1


@nb.njit(cache=True)
def _adjacent_to_chain(b: FastBoard, e: int, h: int) -> bool:
    for r in neighbours(b, e):
        if is_stone(b.colour[r]) and b.head[r] == h:
            return True
    return False


@nb.njit(cache=True)
def _merge(b: FastBoard, h1: int, h2: int) -> int:
    """Merge two chains of one colour; returns the head of the result."""
    if b.chain_size[h1] < b.chain_size[h2]:
        h1, h2 = h2, h1
    # Walk the smaller chain h2, counting its liberties that h1 lacks, and
    # relabel each stone at once: a liberty shared by two stones of h2 is then
    # already adjacent to h1 when the second stone sees it.
    q = h2
    while True:
        for e in neighbours(b, q):
            if b.colour[e] == EMPTY and not _adjacent_to_chain(b, e, h1):
                b.libs[h1] += 1
        b.head[q] = h1
        q = b.nxt[q]
        if q == h2:
            break
    # Splice the circular lists.
    n1 = b.nxt[h1]
    b.nxt[h1] = b.nxt[h2]
    b.nxt[h2] = n1
    b.chain_size[h1] += b.chain_size[h2]
    return h1


@nb.njit(cache=True)
def _remove_chain(b: FastBoard, h: int) -> int:
    """Take the chain at head ``h`` off the board; returns its stone count."""
    c = b.colour[h]
    q = h
    while True:
        b.colour[q] = EMPTY
        b.meta[M_HASH] ^= b.zobrist[c, q]
        _add_empty(b, q)
        n0, n1, n2, n3 = neighbours(b, q)
        # Each removed stone is a new liberty of every distinct chain beside it.
        h0 = b.head[n0] if is_stone(b.colour[n0]) else -1
        h1 = b.head[n1] if is_stone(b.colour[n1]) else -1
        h2 = b.head[n2] if is_stone(b.colour[n2]) else -1
        h3 = b.head[n3] if is_stone(b.colour[n3]) else -1
        if h0 != -1 and h0 != h:
            b.libs[h0] += 1
        if h1 != -1 and h1 != h and h1 != h0:
            b.libs[h1] += 1
        if h2 != -1 and h2 != h and h2 != h0 and h2 != h1:
            b.libs[h2] += 1
        if h3 != -1 and h3 != h and h3 != h0 and h3 != h1 and h3 != h2:
            b.libs[h3] += 1
        q = b.nxt[q]
        if q == h:
            break
    return b.chain_size[h]


@nb.njit(cache=True)
def _place(b: FastBoard, p: int, c: int) -> None:
    """Put a stone of ``c`` on the empty point ``p`` and fix chains and liberties."""
    _remove_empty(b, p)
    b.colour[p] = c
    b.meta[M_HASH] ^= b.zobrist[c, p]
    b.placed[p] = b.meta[M_MOVES]
    b.head[p] = p
    b.nxt[p] = p
    b.chain_size[p] = 1
    libs = 0
    n0, n1, n2, n3 = neighbours(b, p)
    h0 = b.head[n0] if is_stone(b.colour[n0]) else -1
    h1 = b.head[n1] if is_stone(b.colour[n1]) else -1
    h2 = b.head[n2] if is_stone(b.colour[n2]) else -1
    h3 = b.head[n3] if is_stone(b.colour[n3]) else -1
    for q in (n0, n1, n2, n3):
        if b.colour[q] == EMPTY:
            libs += 1
    b.libs[p] = libs
    # p was a liberty of every distinct chain beside it.
    if h0 != -1:
        b.libs[h0] -= 1
    if h1 != -1 and h1 != h0:
        b.libs[h1] -= 1
    if h2 != -1 and h2 != h0 and h2 != h1:
        b.libs[h2] -= 1
    if h3 != -1 and h3 != h0 and h3 != h1 and h3 != h2:
        b.libs[h3] -= 1
    for q in (n0, n1, n2, n3):
        if b.colour[q] == c and b.head[q] != b.head[p]:
            _merge(b, b.head[q], b.head[p])


@nb.njit(cache=True)
def play(b: FastBoard, p: int, c: int) -> int:
    """Play colour ``c`` at ``p`` (or pass); the move must be legal (:func:`is_legal`).

    Captures, updates the simple-ko point, the hash and the move counters, and
    gives the turn to the opponent. Returns the number of stones captured (a
    permitted suicide removes the mover's own chain and returns 0).
    """
    b.meta[M_LAST2] = b.meta[M_LAST]
    b.meta[M_LAST] = p
    b.meta[M_TO_MOVE] = 3 - c
    b.meta[M_KO] = NO_POINT
    if p == PASS:
        b.meta[M_PASSES] += 1
        b.meta[M_MOVES] += 1
        return 0
    b.meta[M_PASSES] = 0
    _place(b, p, c)
    b.meta[M_MOVES] += 1
    captured = 0
    ko = NO_POINT
    for q in neighbours(b, p):
        if b.colour[q] == 3 - c and b.libs[b.head[q]] == 0:
            captured += _remove_chain(b, b.head[q])
            ko = q
    b.meta[M_CAPTURES + c] += captured
    h = b.head[p]
    if b.libs[h] == 0:
        b.meta[M_CAPTURES + 3 - c] += _remove_chain(b, h)
    elif captured == 1 and b.chain_size[h] == 1 and b.libs[h] == 1:
        b.meta[M_KO] = ko
        b.meta[M_KO_COLOUR] = 3 - c
    return captured


@nb.njit(cache=True)
def _chain_key(b: FastBoard, h: int) -> int:
    """XOR of the Zobrist keys of the chain at head ``h``."""
    key = 0
    c = b.colour[h]
    q = h
    while True:
        key ^= b.zobrist[c, q]
        q = b.nxt[q]
        if q == h:
            return key


@nb.njit(cache=True)
def hash_after(b: FastBoard, p: int, c: int) -> int:
    """The Zobrist hash after ``c`` plays the legal move ``p``, without playing it."""
    h = b.meta[M_HASH]
    if p == PASS:
        return h
    h ^= b.zobrist[c, p]
    nbrs = neighbours(b, p)
    heads = np.full(4, -1, np.int64)
    captures = False
    for i in range(4):
        q = nbrs[i]
        if b.colour[q] == 3 - c and b.libs[b.head[q]] == 1 and b.head[q] not in heads:
            heads[i] = b.head[q]
            h ^= _chain_key(b, b.head[q])
            captures = True
    if not captures and is_suicide(b, p, c):
        # A permitted suicide takes the stone and the chains it joins off again.
        h ^= b.zobrist[c, p]
        for i in range(4):
            q = nbrs[i]
            if b.colour[q] == c and b.head[q] not in heads:
                heads[i] = b.head[q]
                h ^= _chain_key(b, b.head[q])
    return h


@nb.njit(cache=True)
def set_stone(b: FastBoard, p: int, c: int) -> None:
    """Setup: make ``p`` hold colour ``c`` (EMPTY removes), with no captures.

    Rebuilds all chains from scratch (setup is rare; moves use :func:`play`).
    The simple-ko point is cleared.
    """
    b.colour[p] = c
    rebuild(b)


@nb.njit(cache=True)
def rebuild(b: FastBoard) -> None:
    """Recompute chains, liberties, the empty list and the hash from ``colour`` alone."""
    n = b.colour.size
    b.meta[M_HASH] = 0
    b.meta[M_NEMPTY] = 0
    b.meta[M_KO] = NO_POINT
    b.empty_pos[:] = -1
    done = np.zeros(n, np.bool_)
    mark = np.zeros(n, np.int32)  # liberty marks, by chain serial number
    stack = np.empty(n, np.int32)
    serial = 0
    for p in range(n):
        c = b.colour[p]
        if c == EMPTY:
            _add_empty(b, p)
            continue
        if c == WALL or done[p]:
            continue
        serial += 1
        # Flood fill the chain of p, linking it into a circular list.
        top = 0
        stack[top] = p
        top += 1
        done[p] = True
        prev = p
        size = 0
        libs = 0
        while top:
            top -= 1
            q = stack[top]
            b.meta[M_HASH] ^= b.zobrist[c, q]
            b.head[q] = p
            if q != p:
                b.nxt[prev] = q
                prev = q
            size += 1
            for r in neighbours(b, q):
                cr = b.colour[r]
                if cr == c and not done[r]:
                    done[r] = True
                    stack[top] = r
                    top += 1
                elif cr == EMPTY and mark[r] != serial:
                    mark[r] = serial
                    libs += 1
        b.nxt[prev] = p
        b.chain_size[p] = size
        b.libs[p] = libs


@nb.njit(cache=True)
def territory_owner(b: FastBoard, dead: np.ndarray) -> np.ndarray:
    """For each cell, the colour whose area it is under area scoring, else EMPTY.

    Live stones are their colour's. Stones at points where ``dead`` (bool[N])
    is true count as empty: an empty region (dead stones included) belongs to
    a colour when it touches stones of that colour only; dame and seki
    liberties that touch both belong to nobody.
    """
    n = b.colour.size
    owner = np.zeros(n, np.int8)
    seen = np.zeros(n, np.bool_)
    stack = np.empty(n, np.int32)
    region = np.empty(n, np.int32)
    for p in range(n):
        c = b.colour[p]
        if c == WALL or seen[p]:
            continue
        if is_stone(c) and not dead[p]:
            owner[p] = c
            continue
        top = 0
        stack[top] = p
        top += 1
        seen[p] = True
        size = 0
        touches = 0
        while top:
            top -= 1
            q = stack[top]
            region[size] = q
            size += 1
            for r in neighbours(b, q):
                cr = b.colour[r]
                if cr == WALL or seen[r]:
                    continue
                if cr == EMPTY or dead[r]:
                    seen[r] = True
                    stack[top] = r
                    top += 1
                else:
                    touches |= cr
        if touches == BLACK or touches == WHITE:
            for i in range(size):
                owner[region[i]] = touches
    return owner


@nb.njit(cache=True)
def area_counts(b: FastBoard, dead: np.ndarray) -> tuple[int, int]:
    """``(black_area, white_area)``: stones plus surrounded points, see :func:`territory_owner`."""
    owner = territory_owner(b, dead)
    return np.sum(owner == BLACK), np.sum(owner == WHITE)


@nb.njit(cache=True)
def seed(value: int) -> None:
    """Seed numba's random generator (separate from NumPy's in Python) in this thread."""
    np.random.seed(value)


@nb.njit(cache=True)
def random_move(b: FastBoard, c: int) -> int:
    """A uniformly chosen legal move for ``c`` that does not fill its own eye, else PASS.

    Starts at a random place in the empty-point list and takes the first
    acceptable point from there, wrapping around (the usual playout scheme).
    """
    n = b.meta[M_NEMPTY]
    if n == 0:
        return PASS
    start = np.random.randint(n)
    for i in range(n):
        p = b.empties[(start + i) % n]
        if not is_eyelike(b, p, c) and is_legal(b, p, c):
            return p
    return PASS


@nb.njit(cache=True)
def playout(b: FastBoard, max_moves: int) -> None:
    """Play uniformly random moves (see :func:`random_move`) until two passes or ``max_moves``."""
    for _ in range(max_moves):
        c = b.meta[M_TO_MOVE]
        play(b, random_move(b, c), c)
        if b.meta[M_PASSES] >= 2:
            return


@nb.njit(cache=True)
def random_playouts_kernel(start: FastBoard, n: int, komi: float, seed: int) -> np.ndarray:
    """Black's area margin minus komi after each of ``n`` random playouts from ``start``."""
    np.random.seed(seed)  # numba's generator, as in :func:`seed`
    out = np.empty(n, np.float64)
    b = copy_board(start)
    no_dead = np.zeros(b.colour.size, np.bool_)
    cap = 3 * b.meta[M_SIZE] * b.meta[M_SIZE]
    for i in range(n):
        copy_into(b, start)
        playout(b, cap)
        black, white = area_counts(b, no_dead)
        out[i] = black - white - komi
    return out
