"""AlphaGo's fast rollout policy and tree policy (Nature 2016, Extended Data Table 4), in numba.

Scope: the pattern features, their incremental upkeep as stones are played, the softmax over legal moves, and
rollouts that play a position out to the end and score it by area. Learning the weights is
:mod:`training.stages.rollout`; the search that calls these is elsewhere.

Features of a candidate move ``q`` for the mover ``c`` (each a binary feature with one learned weight):

* *response*: ``q`` lies in the 12-point diamond (Manhattan distance 1 or 2) of the previous move;
* *save atari*: an own chain next to ``q`` is in atari and the move leaves the joined chain two or more liberties,
  counted from the 3x3 pattern (see :func:`_move_flags`: shared liberties may be counted twice);
* *neighbour*: ``q`` is one of the 8 points around the previous move;
* *nakade*: ``q`` is the vital point of an enclosed empty region of 3 to 6 points, one whose bordering stones are
  all of one colour; the vital point is the region's unique point with most neighbours in the region, which is
  the classical killing point of straight and bent three, pyramid four, bulky and crossed five and rabbity six,
  and there is none for the living shapes (straight or bent four, square four has none either);
* *response pattern*: the 12-point diamond around the previous move with the previous stone's liberties, and the
  place of ``q`` in it;
* *non-response pattern*: the 3x3 pattern around ``q``;
* tree policy only: *self-atari* (the move leaves its own chain one liberty and captures nothing), *last-move
  distance* (Manhattan distance to each of the last two moves, 0..15 and >= 16: 2 x 17 features) and the
  12-point diamond pattern around ``q``.

Patterns see each point as empty, wall, or a stone of the mover ("own") or the opponent with 1, 2 or >= 3
liberties (8 codes, 3 bits). A pattern's key is the minimum of its codes over the 8 board symmetries, with colours
taken relative to the mover, so it is invariant under rotation, reflection and colour swap; the kind of pattern
sits in bits 56 up. Known keys (those the training harvested) map to weights through an open-addressing hash
table; an unknown pattern has no weight. The weights of a policy are ``w`` (``N_FIXED`` fixed features, then one
per key in sorted order); a move's logit is the sum of the weights of its active features, and the policy is the
softmax of the logits over the legal moves (simple ko, no suicide; superko is the caller's).

Incremental scheme (:class:`PatternState`, kept beside a :class:`~gogame.fastboard.FastBoard`). ``cell`` holds
every point's code. The move-independent part of each empty point's weight, ``wexp = exp(pattern + save atari +
nakade weights)`` for either colour to move (0 where illegal or an own eye), and ``total``, their sum per colour,
depend only on the point's 3x3 codes and its nakade flag. After a move :func:`state_play` therefore re-codes only
the played stone, the captured stones and the stones of the chains whose liberty count moved between 1, 2 and
>= 3 (the played chain, the opponent chains beside the move, the chains beside the captured stones), marks the
empty points around every changed cell dirty, re-checks nakade only for regions that touch the move or the
captures (flood fills that stop after 6 points), and recomputes the dirty points' weights, updating ``total`` by
difference; a small direct-mapped memo from 3x3 codes to pattern index and move flags saves most of the symmetry
and hash work there. Sampling a move multiplies the weights of the (at most 12) empty points in the diamond of the previous
move by their response features, drops the ko point, draws from ``total`` plus those corrections and walks the
empty-point list: no board scan, no ``exp``.

Threads: the kernels take the board, its state and the tables as arguments and keep nothing global; the tables
are only read, and each call of :func:`rollouts_kernel` (which releases the GIL) makes its own board and state, so
several Python threads roll out at once.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numba as nb
import numpy as np

from gogame import coords, fastboard as fb
from gogame.atomic import write_atomically
from gogame.board import Board
from gogame.coords import Move
from gogame.fastboard import (
    BLACK, EMPTY, M_KO, M_KO_COLOUR, M_LAST, M_LAST2, M_NEMPTY, M_PASSES, M_STRIDE, M_TO_MOVE, NO_POINT, PASS,
    WALL, WHITE, FastBoard,
)

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_ROLLOUT = WEIGHTS_DIR / "rollout19.npz"
DEFAULT_TREE = WEIGHTS_DIR / "tree19.npz"
FORMAT_VERSION = 1

# Fixed features, then the pattern features.
F_RESPONSE, F_SAVE_ATARI, F_NEIGHBOUR, F_NAKADE, F_SELF_ATARI = range(5)
F_DISTANCE = 5  # F_DISTANCE + 17 * j + min(d, 16): distance d to the last (j=0) and second-last (j=1) move
N_DISTANCE = 17
N_FIXED = F_DISTANCE + 2 * N_DISTANCE
FIXED_NAMES = ("response", "save_atari", "neighbour", "nakade", "self_atari") + tuple(
    f"distance{j + 1}_{d}" for j in range(2) for d in range(N_DISTANCE))
MAX_FEATURES = 10  # active features of one candidate at most

# Pattern kinds, in bits 56 up of a key.
K_3X3, K_RESPONSE, K_DIAMOND = 1, 2, 3
KIND_SHIFT = 56
NO_KEY = -1

# Cell codes: empty, wall, black with 1/2/3+ liberties, white with 1/2/3+ liberties.
C_EMPTY, C_WALL = 0, 1
_SWAP = np.array([0, 1, 5, 6, 7, 2, 3, 4], np.int64)  # colour swap of a cell code

# Move flags for one colour.
LEGAL, EYE, SAVE = 1, 2, 4
NAKADE_MAX = 6

# Pattern geometry as (row, col) offsets.
OFFSETS_3X3 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
OFFSETS_DIAMOND = ((-2, 0), (-1, -1), (-1, 0), (-1, 1), (0, -2), (0, -1), (0, 1), (0, 2), (1, -1), (1, 0), (1, 1),
                   (2, 0))
ORTHOGONAL = (1, 3, 4, 6)  # the 4 neighbours among OFFSETS_3X3
_NEIGHBOUR12 = np.array([max(abs(r), abs(c)) == 1 for r, c in OFFSETS_DIAMOND], np.bool_)
SYMMETRIES = (
    lambda r, c: (r, c), lambda r, c: (r, -c), lambda r, c: (-r, c), lambda r, c: (-r, -c),
    lambda r, c: (c, r), lambda r, c: (c, -r), lambda r, c: (-c, r), lambda r, c: (-c, -r),
)


def _permutations(offsets: tuple[tuple[int, int], ...]) -> np.ndarray:
    """int64[8, n]: where symmetry t sends field i of a pattern."""
    return np.array([[offsets.index(sym(*off)) for off in offsets] for sym in SYMMETRIES], np.int64)


def _pattern_luts(perm: np.ndarray) -> np.ndarray:
    """int64[2, 8, chunks, 4096]: a pattern's code under symmetry t, 4 fields (12 bits) at a time.

    Index 0 keeps the colours (black to move), 1 swaps them (white to move); OR the chunks together.
    """
    chunks = perm.shape[1] // 4
    x = np.arange(4096, dtype=np.int64)
    out = np.zeros((2, 8, chunks, 4096), np.int64)
    for ci, relabel in enumerate((np.arange(8, dtype=np.int64), _SWAP)):
        for t in range(8):
            for h in range(chunks):
                for j in range(4):
                    out[ci, t, h] |= relabel[(x >> (3 * j)) & 7] << (3 * perm[t, 4 * h + j])
    return out


PERM_3X3 = _permutations(OFFSETS_3X3)
PERM_DIAMOND = _permutations(OFFSETS_DIAMOND)


class Tables(NamedTuple):
    """A policy's weights and pattern tables, read-only and shared by all threads."""

    w: np.ndarray  # float64[F]: feature weights (logits)
    expw: np.ndarray  # float64[F]: exp(w)
    hkeys: np.ndarray  # int64[H]: pattern keys by hash slot, NO_KEY in free slots (H a power of two)
    hvals: np.ndarray  # int32[H]: the feature index of each key
    lut3: np.ndarray  # int64[2, 8, 2, 4096]: see _pattern_luts
    lut12: np.ndarray  # int64[2, 8, 3, 4096]
    perm12: np.ndarray  # int64[8, 12]
    tree: bool  # the tree policy's extra features are active


class PatternState(NamedTuple):
    """The incremental pattern state of one board; see the module docstring. Opaque outside numba."""

    cell: np.ndarray  # int8[N]: cell code of every point
    pat: np.ndarray  # int32[2, N]: feature index of the 3x3 pattern of an empty point, per colour to move, or -1
    flags: np.ndarray  # int8[2, N]: LEGAL | EYE | SAVE per colour to move
    wexp: np.ndarray  # float64[2, N]: rollout weight of an empty point before response features
    total: np.ndarray  # float64[2]: sum of wexp per colour
    region_of: np.ndarray  # int32[N]: vital point of the nakade region holding an empty point, else -1
    region_pts: np.ndarray  # int32[N, NAKADE_MAX]: points of the nakade region, indexed by its vital point
    region_n: np.ndarray  # int32[N]: size of that region
    stamp: np.ndarray  # int64[N]: dirty and sampling marks (epoch meta[S_EPOCH])
    seen: np.ndarray  # int64[N]: flood-fill marks (epoch meta[S_FILL])
    dirty: np.ndarray  # int32[N]: points to recompute, meta[S_NDIRTY] of them
    buf: np.ndarray  # int32[N]: stones captured by the move being played, then the nakade seeds
    fill: np.ndarray  # int32[N]: flood-fill list
    slot: np.ndarray  # int32[N]: a candidate's row in candidates()
    off: np.ndarray  # int64[20]: padded-index offsets of OFFSETS_3X3 then OFFSETS_DIAMOND
    ctx: np.ndarray  # int64[4, 12]: response context: point, key, feature index, is-neighbour
    ctxw: np.ndarray  # float64[12]: sampling weights of the response context's points
    symcode: np.ndarray  # int64[8]: a diamond pattern's code under each symmetry
    memo_raw: np.ndarray  # int64[MEMO]: a direct-mapped memo of 3x3 raw codes seen (-1: free) ...
    memo_pat: np.ndarray  # int32[2, MEMO]: ... with their pattern's feature index per colour to move
    memo_flags: np.ndarray  # int8[2, MEMO]: ... and their move flags
    meta: np.ndarray  # int64[3]: S_EPOCH, S_NDIRTY, S_FILL


S_EPOCH, S_NDIRTY, S_FILL = 0, 1, 2
MEMO_BITS = 12


# ------------------------------------------------------------------------------------------------ hash table

@nb.njit(cache=True, inline="always")
def _mix(key: int) -> int:
    h = key ^ (key >> 31)
    h *= -7046029254386353131  # 0x9E3779B97F4A7C15, wrapping
    return h ^ (h >> 29)


@nb.njit(cache=True)
def build_hash(keys: np.ndarray, first_index: int) -> tuple[np.ndarray, np.ndarray]:
    """An open-addressing table mapping ``keys[i]`` (distinct, >= 0) to ``first_index + i``."""
    size = 2
    while size < 2 * keys.size:
        size *= 2
    hkeys = np.full(size, NO_KEY, np.int64)
    hvals = np.full(size, -1, np.int32)
    mask = size - 1
    for i in range(keys.size):
        h = _mix(keys[i]) & mask
        while hkeys[h] != NO_KEY:
            h = (h + 1) & mask
        hkeys[h] = keys[i]
        hvals[h] = first_index + i
    return hkeys, hvals


@nb.njit(cache=True)
def lookup(tb: Tables, key: int) -> int:
    """The feature index of a pattern key, or -1 if the key is unknown."""
    mask = tb.hkeys.size - 1
    h = _mix(key) & mask
    while True:
        k = tb.hkeys[h]
        if k == key:
            return tb.hvals[h]
        if k == NO_KEY:
            return -1
        h = (h + 1) & mask


def check_weights(keys: np.ndarray, weights: np.ndarray) -> None:
    """ValueError unless ``weights`` has one entry per fixed feature and per pattern key."""
    if np.shape(weights) != (N_FIXED + len(keys),):
        raise ValueError(f"expected {N_FIXED + len(keys)} weights, got {np.shape(weights)}")


def make_tables(keys: np.ndarray, weights: np.ndarray, tree: bool) -> Tables:
    """Tables for sorted distinct pattern ``keys`` and ``weights`` (float[N_FIXED + len(keys)])."""
    keys = np.ascontiguousarray(keys, np.int64)
    w = np.array(weights, np.float64)
    check_weights(keys, w)
    hkeys, hvals = build_hash(keys, N_FIXED)
    return Tables(w, np.exp(w), hkeys, hvals, _LUT3, _LUT12, PERM_DIAMOND, bool(tree))


_LUT3 = _pattern_luts(PERM_3X3)
_LUT12 = _pattern_luts(PERM_DIAMOND)


# ------------------------------------------------------------------------------------------------ patterns

@nb.njit(cache=True, inline="always")
def _stone_code(colour: int, libs: int) -> int:
    return 2 + 3 * (colour - 1) + min(libs, 3) - 1


@nb.njit(cache=True, inline="always")
def _cell_at(st: PatternState, q: int) -> int:
    """The cell code at padded index ``q``, wall beyond the array (two rows off the board)."""
    if q < 0 or q >= st.cell.size:
        return C_WALL
    return st.cell[q]


@nb.njit(cache=True)
def raw3(st: PatternState, q: int) -> int:
    """The 3x3 pattern around ``q`` in absolute colours: 8 cell codes, 3 bits each, in OFFSETS_3X3 order."""
    raw = 0
    for i in range(8):
        raw |= np.int64(st.cell[q + st.off[i]]) << (3 * i)
    return raw


@nb.njit(cache=True)
def raw12(st: PatternState, q: int) -> int:
    """The 12-point diamond around ``q`` in absolute colours, in OFFSETS_DIAMOND order."""
    raw = 0
    for k in range(12):
        raw |= np.int64(_cell_at(st, q + st.off[8 + k])) << (3 * k)
    return raw


@nb.njit(cache=True)
def key3(tb: Tables, raw: int, c: int) -> int:
    """The key of a 3x3 pattern for mover ``c``: the least code over the symmetries, colours relative to ``c``."""
    lut = tb.lut3[c - 1]
    lo = raw & 4095
    hi = raw >> 12
    best = lut[0, 0, lo] | lut[0, 1, hi]
    for t in range(1, 8):
        v = lut[t, 0, lo] | lut[t, 1, hi]
        if v < best:
            best = v
    return (K_3X3 << KIND_SHIFT) | best


@nb.njit(cache=True)
def _codes12(st: PatternState, tb: Tables, raw: int, c: int) -> int:
    """Fill ``st.symcode`` with a diamond's code under each symmetry for mover ``c``; returns the least."""
    lut = tb.lut12[c - 1]
    a = raw & 4095
    b = (raw >> 12) & 4095
    d = raw >> 24
    best = -1
    for t in range(8):
        v = lut[t, 0, a] | lut[t, 1, b] | lut[t, 2, d]
        st.symcode[t] = v
        if best < 0 or v < best:
            best = v
    return best


@nb.njit(cache=True)
def key12(st: PatternState, tb: Tables, raw: int, c: int) -> int:
    """The key of the 12-point diamond pattern around a candidate (tree policy)."""
    return (K_DIAMOND << KIND_SHIFT) | _codes12(st, tb, raw, c)


@nb.njit(cache=True)
def response_key(st: PatternState, tb: Tables, centre: int, k: int, c: int) -> int:
    """The key of a response at field ``k`` of the diamond around the previous stone (cell code ``centre``):
    the least (code, place) pair over the symmetries. Needs :func:`_codes12` of that diamond done first."""
    best = st.symcode[0]
    for t in range(1, 8):
        best = min(best, st.symcode[t])
    pos = 15
    for t in range(8):
        if st.symcode[t] == best:
            pos = min(pos, tb.perm12[t, k])
    rel = centre if c == BLACK else _SWAP[centre]
    return (K_RESPONSE << KIND_SHIFT) | (rel << 40) | (best << 4) | pos


@nb.njit(cache=True)
def _move_flags(raw: int, c: int) -> int:
    """LEGAL, EYE and SAVE for mover ``c`` at the centre of the 3x3 pattern ``raw``.

    LEGAL: not suicide (an empty neighbour, an own neighbour with two or more liberties, or an opponent neighbour
    in atari). EYE: :func:`gogame.fastboard.is_eyelike`. SAVE: an own neighbour is in atari and the joined chain
    keeps at least two liberties, counting one per empty neighbour, one per captured opponent neighbour and the
    liberties other than this point of the other own neighbours (1 for two liberties, 2 for three or more).
    """
    own = 2 if c == BLACK else 5
    opp = 7 - own
    legal = False
    atari = False
    libs = 0
    eye = True
    for i in (1, 3, 4, 6):
        f = (raw >> (3 * i)) & 7
        if f == C_EMPTY:
            legal = True
            libs += 1
            eye = False
        elif own <= f < own + 3:
            if f == own:
                atari = True
            else:
                legal = True
                libs += f - own
        elif f != C_WALL:
            eye = False
            if f == opp:
                legal = True
                libs += 1
    if eye:
        bad = 0
        walls = 0
        for i in (0, 2, 5, 7):
            f = (raw >> (3 * i)) & 7
            if f == C_WALL:
                walls = 1
            elif opp <= f < opp + 3:
                bad += 1
        eye = bad + walls < 2
    flags = 0
    if legal:
        flags |= LEGAL
    if eye:
        flags |= EYE
    if atari and libs >= 2:
        flags |= SAVE
    return flags


# ------------------------------------------------------------------------------------------------ state

@nb.njit(cache=True)
def new_state(b: FastBoard) -> PatternState:
    """An uninitialised state for boards of ``b``'s size; fill it with :func:`init_state`."""
    n = b.colour.size
    return PatternState(
        np.zeros(n, np.int8), np.full((2, n), -1, np.int32), np.zeros((2, n), np.int8), np.zeros((2, n)),
        np.zeros(2), np.full(n, -1, np.int32), np.zeros((n, NAKADE_MAX), np.int32), np.zeros(n, np.int32),
        np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int32), np.zeros(n, np.int32),
        np.zeros(n, np.int32), np.zeros(n, np.int32), np.zeros(20, np.int64), np.zeros((4, 12), np.int64),
        np.zeros(12), np.zeros(8, np.int64), np.full(1 << MEMO_BITS, -1, np.int64),
        np.zeros((2, 1 << MEMO_BITS), np.int32), np.zeros((2, 1 << MEMO_BITS), np.int8), np.zeros(3, np.int64),
    )


@nb.njit(cache=True)
def copy_state_into(dst: PatternState, src: PatternState) -> None:
    """Overwrite ``dst`` with ``src`` (same size) without allocating.

    Scratch arrays and the memo are not copied: the memo stays valid while both states serve the same tables.
    """
    dst.cell[:] = src.cell
    dst.pat[:] = src.pat
    dst.flags[:] = src.flags
    dst.wexp[:] = src.wexp
    dst.total[:] = src.total
    dst.region_of[:] = src.region_of
    dst.region_pts[:] = src.region_pts
    dst.region_n[:] = src.region_n
    dst.stamp[:] = src.stamp
    dst.seen[:] = src.seen
    dst.off[:] = src.off
    dst.meta[:] = src.meta


@nb.njit(cache=True)
def _mark(st: PatternState, q: int) -> None:
    if st.stamp[q] != st.meta[S_EPOCH]:
        st.stamp[q] = st.meta[S_EPOCH]
        st.dirty[st.meta[S_NDIRTY]] = q
        st.meta[S_NDIRTY] += 1


@nb.njit(cache=True)
def _mark_around(st: PatternState, b: FastBoard, q: int) -> None:
    """Mark dirty the empty points among the 8 around ``q``."""
    for i in range(8):
        r = q + st.off[i]
        if b.colour[r] == EMPTY:
            _mark(st, r)


@nb.njit(cache=True)
def _memo_fill(st: PatternState, tb: Tables, raw: int, slot: int) -> None:
    """Put the 3x3 pattern ``raw``'s feature index and move flags for both colours in memo ``slot``."""
    st.memo_raw[slot] = raw
    for ci in range(2):
        st.memo_pat[ci, slot] = lookup(tb, key3(tb, raw, ci + 1))
        st.memo_flags[ci, slot] = _move_flags(raw, ci + 1)


@nb.njit(cache=True)
def _refresh_dirty(st: PatternState, tb: Tables, b: FastBoard) -> None:
    """Recompute the pattern, flags and rollout weights of the dirty points for both colours, updating ``total``.

    One call per move, all points in one loop, the arrays bound to local names first: numba reference-counts
    the arrays of a tuple argument on entry to a kernel like this one, and on every fetch from the tuple inside
    a branchy loop (atomic operations that would cost more than the work).
    """
    colour, cell, off, dirty = b.colour, st.cell, st.off, st.dirty
    pat, flags, wexp, total, region_of = st.pat, st.flags, st.wexp, st.total, st.region_of
    memo_raw, memo_pat, memo_flags, expw = st.memo_raw, st.memo_pat, st.memo_flags, tb.expw
    for i in range(st.meta[S_NDIRTY]):
        q = dirty[i]
        if colour[q] != EMPTY:
            for ci in range(2):
                total[ci] -= wexp[ci, q]
                wexp[ci, q] = 0.0
                pat[ci, q] = -1
                flags[ci, q] = 0
            continue
        raw = np.int64(0)
        for k in range(8):
            raw |= np.int64(cell[q + off[k]]) << (3 * k)
        slot = (_mix(raw) >> 7) & ((1 << MEMO_BITS) - 1)
        if memo_raw[slot] != raw:
            _memo_fill(st, tb, raw, slot)
        nakade = region_of[q] == q
        for ci in range(2):
            idx = memo_pat[ci, slot]
            fl = memo_flags[ci, slot]
            pat[ci, q] = idx
            flags[ci, q] = fl
            w = 0.0
            if fl & LEGAL and not fl & EYE:
                w = 1.0
                if idx >= 0:
                    w *= expw[idx]
                if fl & SAVE:
                    w *= expw[F_SAVE_ATARI]
                if nakade:
                    w *= expw[F_NAKADE]
            total[ci] += w - wexp[ci, q]
            wexp[ci, q] = w


@nb.njit(cache=True)
def _scan_regions(st: PatternState, b: FastBoard, seeds: np.ndarray, nseeds: int, cap: int) -> None:
    """Flood-fill the empty region of each seed and flag its vital point if it is a nakade shape (marks it dirty).

    Skips seeds that are not empty or already in a flagged region. A fill gives up once its region has more than
    ``cap`` points; such an abandoned fill's marks would wall in the next one, so with a ``cap`` every fill takes
    fresh marks, while without one (``cap`` at least the board) a seed in a region already filled is skipped.
    """
    colour, seen, pts, region_of, region_pts, off = b.colour, st.seen, st.fill, st.region_of, st.region_pts, st.off
    whole = cap >= colour.size
    st.meta[S_FILL] += 1
    for j in range(nseeds):
        s = seeds[j]
        if colour[s] != EMPTY or region_of[s] >= 0 or whole and seen[s] == st.meta[S_FILL]:
            continue
        if not whole:
            st.meta[S_FILL] += 1
        fe = st.meta[S_FILL]
        pts[0] = s
        seen[s] = fe
        n = 1
        i = 0
        border = 0
        while i < n and n <= cap:
            q = pts[i]
            i += 1
            for d in ORTHOGONAL:
                r = q + off[d]
                col = colour[r]
                if col == EMPTY:
                    if seen[r] != fe:
                        seen[r] = fe
                        pts[n] = r
                        n += 1
                elif col != WALL:
                    border |= col
        if n < 3 or n > NAKADE_MAX or (border != BLACK and border != WHITE):
            continue
        best = np.int64(-1)
        best_degree = 1
        unique = False
        for k in range(n):
            degree = 0
            for d in ORTHOGONAL:
                if colour[pts[k] + off[d]] == EMPTY:
                    degree += 1
            if degree > best_degree:
                best, best_degree, unique = pts[k], degree, True
            elif degree == best_degree:
                unique = False
        if unique:
            for k in range(n):
                region_of[pts[k]] = best
                region_pts[best, k] = pts[k]
            st.region_n[best] = n
            _mark(st, best)


@nb.njit(cache=True)
def _drop_region_at(st: PatternState, q: int) -> None:
    v = np.int64(st.region_of[q])
    if v >= 0:
        for j in range(st.region_n[v]):
            st.region_of[st.region_pts[v, j]] = -1
        _mark(st, v)


@nb.njit(cache=True)
def init_state(st: PatternState, tb: Tables, b: FastBoard) -> None:
    """Compute the whole pattern state of ``b`` from scratch."""
    stride = b.meta[M_STRIDE]
    for i in range(8):
        st.off[i] = OFFSETS_3X3[i][0] * stride + OFFSETS_3X3[i][1]
    for k in range(12):
        st.off[8 + k] = OFFSETS_DIAMOND[k][0] * stride + OFFSETS_DIAMOND[k][1]
    n = b.colour.size
    for q in range(n):
        col = b.colour[q]
        if col == WALL:
            st.cell[q] = C_WALL
        elif col == EMPTY:
            st.cell[q] = C_EMPTY
        else:
            st.cell[q] = _stone_code(col, b.libs[b.head[q]])
    st.region_of[:] = -1
    st.memo_raw[:] = -1
    st.meta[S_EPOCH] += 1
    st.meta[S_NDIRTY] = 0
    _scan_regions(st, b, b.empties, b.meta[M_NEMPTY], n)
    st.total[:] = 0.0
    st.wexp[:] = 0.0
    st.pat[:] = -1
    st.flags[:] = 0
    for i in range(b.meta[M_NEMPTY]):
        _mark(st, np.int64(b.empties[i]))
    _refresh_dirty(st, tb, b)


@nb.njit(cache=True)
def _sync_chain(st: PatternState, b: FastBoard, h: int, always: bool) -> None:
    """Re-code the stones of the chain at head ``h`` after its liberties changed, marking around changed cells.

    Unless ``always``, trusts that the chain's stones share one code and stops if the head's code is right.
    """
    code = _stone_code(b.colour[h], b.libs[h])
    if not always and st.cell[h] == code:
        return
    q = h
    while True:
        if st.cell[q] != code:
            st.cell[q] = code
            _mark_around(st, b, q)
        q = b.nxt[q]
        if q == h:
            break


@nb.njit(cache=True)
def state_play(st: PatternState, tb: Tables, b: FastBoard, p: int, c: int) -> None:
    """Play ``c`` at ``p`` on ``b`` (:func:`gogame.fastboard.play`) and bring ``st`` up to date.

    ``p`` must be PASS or legal and not suicide.
    """
    if p == PASS:
        fb.play(b, p, c)
        return
    opp = 3 - c
    st.meta[S_FILL] += 1
    fe = st.meta[S_FILL]
    ncap = np.int64(0)
    for q in fb.neighbours(b, p):
        if b.colour[q] == opp:
            h = b.head[q]
            if b.libs[h] == 1 and st.seen[h] != fe:
                r = h
                while True:
                    st.seen[r] = fe
                    st.buf[ncap] = r
                    ncap += 1
                    r = b.nxt[r]
                    if r == h:
                        break
    fb.play(b, p, c)
    st.meta[S_EPOCH] += 1
    st.meta[S_NDIRTY] = 0
    _mark(st, p)
    for i in range(ncap):
        st.cell[st.buf[i]] = C_EMPTY
    for i in range(ncap):
        _mark(st, np.int64(st.buf[i]))
        _mark_around(st, b, st.buf[i])
    _sync_chain(st, b, b.head[p], np.bool_(True))
    for q in fb.neighbours(b, p):
        if b.colour[q] == opp:
            _sync_chain(st, b, b.head[q], np.bool_(False))
    for i in range(ncap):
        for r in fb.neighbours(b, st.buf[i]):
            if b.colour[r] == c:
                _sync_chain(st, b, b.head[r], np.bool_(False))
    # Nakade: drop the flagged regions the move or the captures touched, then re-check the regions there.
    _drop_region_at(st, p)
    for q in fb.neighbours(b, p):
        _drop_region_at(st, q)
    for i in range(ncap):
        _drop_region_at(st, np.int64(st.buf[i]))
        for r in fb.neighbours(b, st.buf[i]):
            _drop_region_at(st, r)
    for q in fb.neighbours(b, p):
        st.buf[ncap] = q  # the seeds: the captured stones, then the neighbours of the move
        ncap += 1
    _scan_regions(st, b, st.buf, ncap, np.int64(NAKADE_MAX))
    _refresh_dirty(st, tb, b)


# ------------------------------------------------------------------------------------------------ move features

@nb.njit(cache=True)
def response_context(st: PatternState, tb: Tables, b: FastBoard, c: int) -> int:
    """Fill ``st.ctx`` with the empty points of the diamond around the previous move, for mover ``c``.

    Row 0 the point, 1 its response key, 2 that key's feature index (or -1), 3 whether it is one of the 8
    neighbours. Returns how many; 0 after a pass or at the start.
    """
    m = b.meta[M_LAST]
    if m <= 0 or not fb.is_stone(b.colour[m]):
        return 0
    raw = raw12(st, m)
    _codes12(st, tb, raw, c)
    n = 0
    for k in range(12):
        q = m + st.off[8 + k]
        if q < 0 or q >= b.colour.size or b.colour[q] != EMPTY:
            continue
        key = response_key(st, tb, st.cell[m], k, c)
        st.ctx[0, n] = q
        st.ctx[1, n] = key
        st.ctx[2, n] = lookup(tb, key)
        st.ctx[3, n] = _NEIGHBOUR12[k]
        n += 1
    return n


@nb.njit(cache=True)
def self_atari(b: FastBoard, q: int, c: int) -> bool:
    """Would ``c`` at the empty point ``q`` capture nothing and leave its chain exactly one liberty?"""
    lib1 = -1
    lib2 = -1
    for r in fb.neighbours(b, q):
        col = b.colour[r]
        if col == EMPTY:
            if lib1 < 0:
                lib1 = r
            elif r != lib1:
                return False
        elif col == 3 - c and b.libs[b.head[r]] == 1:
            return False
    for r in fb.neighbours(b, q):
        if b.colour[r] != c:
            continue
        h = b.head[r]
        if b.libs[h] >= 3:
            return False
        s = h
        while True:
            for e in fb.neighbours(b, s):
                if b.colour[e] == EMPTY and e != q and e != lib1:
                    if lib1 < 0:
                        lib1 = e
                    else:
                        lib2 = e
            if lib2 >= 0:
                return False
            s = b.nxt[s]
            if s == h:
                break
    return lib1 >= 0


@nb.njit(cache=True, inline="always")
def _distance(stride: int, p: int, q: int) -> int:
    return abs(p // stride - q // stride) + abs(p % stride - q % stride)


@nb.njit(cache=True)
def candidates(st: PatternState, tb: Tables, b: FastBoard, c: int, rows: np.ndarray, feats: np.ndarray,
               nfeat: np.ndarray) -> int:
    """The legal moves of ``c`` (simple ko, no suicide, own eyes included) and their active features.

    Fills ``rows[i]`` with the i-th move's point, ``feats[i, :nfeat[i]]`` with its feature indices; returns the
    number of moves (passes are not candidates).
    """
    ci = c - 1
    ko = b.meta[M_KO] if b.meta[M_KO_COLOUR] == c else NO_POINT
    stride = b.meta[M_STRIDE]
    last = (b.meta[M_LAST], b.meta[M_LAST2])
    n = 0
    for i in range(b.meta[M_NEMPTY]):
        q = b.empties[i]
        fl = st.flags[ci, q]
        if not fl & LEGAL or q == ko:
            continue
        rows[n] = q
        st.slot[q] = n
        k = 0
        if st.pat[ci, q] >= 0:
            feats[n, k] = st.pat[ci, q]
            k += 1
        if fl & SAVE:
            feats[n, k] = F_SAVE_ATARI
            k += 1
        if st.region_of[q] == q:
            feats[n, k] = F_NAKADE
            k += 1
        if tb.tree:
            if self_atari(b, q, c):
                feats[n, k] = F_SELF_ATARI
                k += 1
            for j in range(2):
                if last[j] > 0:
                    feats[n, k] = F_DISTANCE + N_DISTANCE * j + min(_distance(stride, q, last[j]), N_DISTANCE - 1)
                    k += 1
            idx = lookup(tb, key12(st, tb, raw12(st, q), c))
            if idx >= 0:
                feats[n, k] = idx
                k += 1
        nfeat[n] = k
        n += 1
    for j in range(response_context(st, tb, b, c)):
        q = st.ctx[0, j]
        if not st.flags[ci, q] & LEGAL or q == ko:
            continue
        r = st.slot[q]
        k = nfeat[r]
        feats[r, k] = F_RESPONSE
        k += 1
        if st.ctx[2, j] >= 0:
            feats[r, k] = st.ctx[2, j]
            k += 1
        if st.ctx[3, j]:
            feats[r, k] = F_NEIGHBOUR
            k += 1
        nfeat[r] = k
    return n


@nb.njit(cache=True)
def logits(tb: Tables, feats: np.ndarray, nfeat: np.ndarray, n: int, out: np.ndarray) -> None:
    """``out[i]``: the sum of the weights of the features of candidate ``i < n``."""
    for i in range(n):
        z = 0.0
        for k in range(nfeat[i]):
            z += tb.w[feats[i, k]]
        out[i] = z


@nb.njit(cache=True)
def probabilities_kernel(b: FastBoard, tb: Tables) -> np.ndarray:
    """float64[N] over padded points: the policy's move probabilities for the side to move (0 elsewhere)."""
    n = b.colour.size
    st = new_state(b)
    init_state(st, tb, b)
    rows = np.empty(n, np.int64)
    feats = np.empty((n, MAX_FEATURES), np.int64)
    nfeat = np.empty(n, np.int64)
    m = candidates(st, tb, b, b.meta[M_TO_MOVE], rows, feats, nfeat)
    z = np.empty(max(m, 1))
    logits(tb, feats, nfeat, m, z)
    out = np.zeros(n)
    if m:
        e = np.exp(z[:m] - z[:m].max())
        out[rows[:m]] = e / e.sum()
    return out


# ------------------------------------------------------------------------------------------------ rollouts

@nb.njit(cache=True)
def sample_move(st: PatternState, tb: Tables, b: FastBoard, c: int) -> int:
    """Draw ``c``'s next rollout move from the policy (own eyes and the ko point excluded); PASS if none."""
    # Local names for the arrays the walk reads: numba reference-counts every fetch of an array from a tuple, and
    # inside a branchy loop those atomic counts would cost more than the walk itself.
    wexp, stamp, ctx, ctxw, expw, empties = st.wexp, st.stamp, st.ctx, st.ctxw, tb.expw, b.empties
    ci = c - 1
    ko = b.meta[M_KO] if b.meta[M_KO_COLOUR] == c else NO_POINT
    nctx = response_context(st, tb, b, c)
    st.meta[S_EPOCH] += 1
    ep = st.meta[S_EPOCH]
    total = st.total[ci]
    for j in range(nctx):
        q = ctx[0, j]
        a = wexp[ci, q]
        stamp[q] = ep
        w = 0.0
        if a > 0.0 and q != ko:
            w = a * expw[F_RESPONSE]
            if ctx[2, j] >= 0:
                w *= expw[ctx[2, j]]
            if ctx[3, j]:
                w *= expw[F_NEIGHBOUR]
        ctxw[j] = w
        total += w - a
    if ko != NO_POINT and stamp[ko] != ep:
        stamp[ko] = ep
        total -= wexp[ci, ko]
    if total <= 0.0:
        return PASS
    u = np.random.random() * total
    acc = 0.0
    move = PASS
    for j in range(nctx):
        if ctxw[j] > 0.0:
            acc += ctxw[j]
            move = ctx[0, j]
            if acc > u:
                return move
    for i in range(b.meta[M_NEMPTY]):
        q = empties[i]
        w = wexp[ci, q]
        if w > 0.0 and stamp[q] != ep:
            acc += w
            move = q
            if acc > u:
                return move
    return move  # rounding left u past the last weight


@nb.njit(cache=True)
def rollout_kernel(st: PatternState, tb: Tables, b: FastBoard, moves: np.ndarray) -> int:
    """Play policy moves on ``b`` (and ``st``) until two passes in a row or ``moves.size`` moves.

    Records the moves played (PASS included) in ``moves``; returns how many.
    """
    for i in range(moves.size):
        if b.meta[M_PASSES] >= 2:
            return i
        c = b.meta[M_TO_MOVE]
        p = sample_move(st, tb, b, c)
        state_play(st, tb, b, p, c)
        moves[i] = p
    return moves.size


@nb.njit(cache=True)
def area_margin(b: FastBoard, komi: float) -> float:
    """Black's area (stones and surrounded points, every stone alive) minus white's, minus ``komi``."""
    black, white = fb.area_counts(b, np.zeros(b.colour.size, np.bool_))
    return black - white - komi


@nb.njit(cache=True, nogil=True)
def rollouts_kernel(start: FastBoard, tb: Tables, komi: float, seeds: np.ndarray, max_moves: int) -> np.ndarray:
    """float64[n]: :func:`area_margin` after one rollout from ``start`` per seed (numba's RNG seeded with it)."""
    st0 = new_state(start)
    init_state(st0, tb, start)
    st = new_state(start)
    b = fb.copy_board(start)
    moves = np.empty(max_moves, np.int32)
    out = np.empty(seeds.size)
    for i in range(seeds.size):
        fb.copy_into(b, start)
        copy_state_into(st, st0)
        np.random.seed(seeds[i])
        rollout_kernel(st, tb, b, moves)
        out[i] = area_margin(b, komi)
    return out


@nb.njit(cache=True, nogil=True)
def playout_kernel(start: FastBoard, tb: Tables, seed: int, max_moves: int) -> np.ndarray:
    """The moves (padded points, PASS = 0) of the rollout from ``start`` that :func:`rollouts_kernel` plays for
    ``seed``."""
    st = new_state(start)
    init_state(st, tb, start)
    b = fb.copy_board(start)
    moves = np.empty(max_moves, np.int32)
    np.random.seed(seed)
    return moves[: rollout_kernel(st, tb, b, moves)].copy()


# ------------------------------------------------------------------------------------------------ Python API

class RolloutPolicy:
    """A rollout policy (or, with ``tree``, a tree policy): sorted pattern keys and their weights.

    ``weights`` is float[N_FIXED + len(keys)] (see the module docstring); ``info`` holds scalars saved with the
    weights (such as the held-out accuracy). The pattern features do not depend on the board size, so weights
    learned on 19x19 serve any size.
    """

    def __init__(self, keys: np.ndarray, weights: np.ndarray, *, tree: bool = False,
                 info: dict[str, float] | None = None) -> None:
        keys = np.asarray(keys, np.int64)
        if keys.ndim != 1 or np.any(keys[1:] <= keys[:-1]) or (keys.size and keys[0] < 0):
            raise ValueError("pattern keys must be distinct, sorted and non-negative")
        self.keys = keys
        self.weights = np.asarray(weights, np.float64)
        self.tree = bool(tree)
        self.info = dict(info or {})
        check_weights(self.keys, self.weights)

    @functools.cached_property
    def tables(self) -> Tables:
        """The kernels' tables, built at first use (building compiles a kernel: not at load, which must be quick)."""
        return make_tables(self.keys, self.weights, self.tree)

    @classmethod
    def load(cls, path: str | Path | None = None, *, tree: bool = False) -> RolloutPolicy:
        """Read weights saved by :meth:`save`; ``path=None`` is the shipped 19x19 rollout (or ``tree``) policy.

        Raises OSError if the file cannot be read and ValueError if it is not a policy file of this version.
        """
        if path is None:
            path = DEFAULT_TREE if tree else DEFAULT_ROLLOUT
        with np.load(path, allow_pickle=False) as data:
            if "version" not in data or int(data["version"]) != FORMAT_VERSION:
                raise ValueError(f"{path}: not a version {FORMAT_VERSION} rollout policy file")
            kind = str(data["kind"])
            if kind not in ("rollout", "tree"):
                raise ValueError(f"{path}: unknown policy kind {kind!r}")
            info = {name: float(data[name]) for name in data.files if name not in ("version", "kind", "keys",
                                                                                    "weights")}
            return cls(data["keys"], data["weights"], tree=kind == "tree", info=info)

    def save(self, path: str | Path) -> None:
        """Write the keys, weights and ``info`` to an ``.npz`` (atomically: a temporary file, then a rename)."""
        write_atomically(path, lambda f: np.savez_compressed(
            f, version=FORMAT_VERSION, kind="tree" if self.tree else "rollout", keys=self.keys,
            weights=self.weights.astype(np.float32), **{k: np.float64(v) for k, v in self.info.items()}))

    def probabilities(self, board: Board) -> np.ndarray:
        """float64[size * size + 1], flat indices (see :mod:`gogame.coords`): the policy for the side to move.

        Legal means simple ko and no suicide (superko is not checked); own eyes are included and pass is 0.
        """
        return np.append(coords.unpad(probabilities_kernel(board.fast, self.tables), board.size).ravel(), 0.0)

    def _check_rollout(self) -> None:
        if self.tree:
            raise ValueError("a tree policy's features are not kept up incrementally; roll out with a rollout policy")

    def rollouts(self, board: Board, n: int, threads: int = 1, komi: float | None = None, seed: int = 0,
                 max_moves: int | None = None) -> np.ndarray:
        """float64[n]: black's area margin minus komi (default ``board.komi``) after each of ``n`` rollouts.

        Rollout ``i`` is seeded with ``seed + i``, so the results do not depend on ``threads`` (the kernel
        releases the GIL). A rollout ends after two passes or ``max_moves`` (default ``3 * size * size``) moves;
        every stone left is counted alive.
        """
        self._check_rollout()
        komi = board.komi if komi is None else float(komi)
        max_moves = 3 * board.size * board.size if max_moves is None else int(max_moves)
        chunks = np.array_split(np.arange(seed, seed + n, dtype=np.int64), max(1, min(int(threads), n)))
        if len(chunks) == 1:
            return rollouts_kernel(board.fast, self.tables, komi, chunks[0], max_moves)
        with ThreadPoolExecutor(len(chunks)) as pool:
            parts = pool.map(lambda s: rollouts_kernel(board.fast, self.tables, komi, s, max_moves), chunks)
            return np.concatenate(list(parts))

    def rollout(self, board: Board, komi: float | None = None, seed: int = 0) -> float:
        """The outcome of one rollout, as :meth:`rollouts` gives it for rollout ``seed``."""
        return float(self.rollouts(board, 1, komi=komi, seed=seed)[0])

    def playout(self, board: Board, seed: int = 0, max_moves: int | None = None) -> list[tuple[str, Move]]:
        """The ``(colour, move)`` list of the rollout that :meth:`rollout` plays for ``seed`` (passes included)."""
        self._check_rollout()
        max_moves = 3 * board.size * board.size if max_moves is None else int(max_moves)
        moves = playout_kernel(board.fast, self.tables, int(seed), max_moves)
        colour = board.to_move
        out: list[tuple[str, Move]] = []
        for p in moves:
            out.append((colour, board._point(int(p))))
            colour = "W" if colour == "B" else "B"
        return out
