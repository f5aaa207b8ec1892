"""AlphaGo's asynchronous policy-and-value Monte Carlo tree search (APV-MCTS), batched, on flat arrays.

Scope: the search tree, the search loop and its seams to the networks (:class:`Evaluator`) and to rollouts
(:class:`Rollouts`). Nothing here knows GTP or files; :mod:`gogame.api` wraps it for users.

The search follows Silver et al. 2016 (Methods, "Search algorithm"), with the paper's names:

* *selection*: from the root, take ``a = argmax Q(s, a) + u(s, a)`` with
  ``u = c_puct * P(s, a) * sqrt(sum_b N(s, b)) / (1 + N(s, a))``; ``P`` are the priors, ``Q = W / N``, and an
  unvisited child has ``Q = fpu`` (0 by default, as in the paper; with ``fpu_reduction``, Leela Zero's rule: its
  parent's ``Q`` less a reduction, :func:`first_play_q`). While ``sum_b N(s, b)`` is 0 we take it as 1,
  so the first visit follows the priors instead of the child order (as Leela Zero and KataGo do);
* *evaluation*: the leaf ``s_L`` gets ``V = (1 - lambda) * v(s_L) + lambda * z``: ``v`` from the value network
  (computed once per node and cached), ``z`` the outcome (+1, 0, -1) of one rollout from ``s_L``. A leaf where
  both sides passed is scored exactly (area, every stone alive) instead;
* *expansion*: a leaf whose visit count ``N`` has reached ``expand_threshold`` (the paper's ``n_thr``; the root
  always) gets its children at once, one per legal move plus pass, with placeholder priors (uniform over the
  legal moves that do not fill an own eye); the policy network's priors replace them when the batch is evaluated;
* *backup*: ``N += 1`` and ``W += V`` along the path, the sign alternating.

Batching. A batch selects up to ``batch_size`` leaves one after another with *virtual loss*: each simulation in
flight counts as ``virtual_loss`` lost visits of every node on its path (``N + n_vl``, ``W - n_vl``), so the next
selection turns elsewhere. A selection that ends on a leaf already in the batch is a *collision*: it keeps its
virtual loss until the batch is backed up (so later selections avoid it too) and evaluates nothing. The distinct
leaves then go to each network in one forward pass while their rollouts run in other threads (the rollout kernels
release the GIL), and the batch is backed up together. Selection, board replay, expansion and backup are numba
kernels; only the network forward runs in Python (torch).

Departures from the paper. AlphaGo ran asynchronously (search threads, a GPU queue per network); here batches are
synchronous, as in minigo and Leela Zero, so a node's placeholder priors only ever steer the later selections of
the batch that expanded it. AlphaGo kept separate value and rollout statistics (``N_v, W_v`` and ``N_r, W_r``)
because the two arrived at different times; here both arrive together, so the leaf value is mixed at once, and a
leaf visited again before its expansion adds its cached ``v`` again with a new rollout. A leaf's feature planes
are computed once: those of a leaf valued before its expansion are kept (:class:`KeptPlanes`) for its priors.

Values. ``W`` and ``Q`` of a node are from the point of view of the player who moved *into* it, so a parent
maximises its children's ``Q`` directly; the root's own ``W`` is therefore from the opponent's view. Win rates
are ``(1 + Q) / 2``.

The tree lives in flat numpy arrays (:class:`Tree`): node ``i``'s parent, move, first child and child count,
``N``, ``W``, ``P``, virtual loss, cached value-network output and flags; the children of a node are contiguous.
The root is node 0. Advancing the root to a played move (:meth:`MCTS.set_root`) keeps that child's subtree and
compacts it to the front of the arrays. When the arrays are full the search goes on without expanding (as Leela
Zero does): leaves are then re-evaluated (new rollouts, the cached value), and no array grows.

Rules in the tree. The root's children obey the board's superko rule (:meth:`gogame.board.Board.is_legal`);
deeper in the tree only simple ko and suicide are checked (the :mod:`gogame.fastboard` rules), since a superko
cycle inside a search is rare and costs at worst a wasted branch. Pass at the root is governed by
:func:`pass_allowed` so the engine never passes a won game away under area scoring; below it, a pass that would
end the game lost as the board stands is banned (:func:`expand`).
"""

from __future__ import annotations

import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol

import numba as nb
import numpy as np

from gogame import coords
from gogame import fastboard as fb
from gogame import features
from gogame import rollout as ro
from gogame.board import Board
from gogame.coords import Move
from gogame.fastboard import BLACK, EMPTY, M_PASSES, M_SIZE, M_STRIDE, M_TO_MOVE, PASS, WHITE, FastBoard

# Node flags.
BANNED = 1  # a child that may not be chosen (at the root: superko, or a pass that pass_allowed forbids; below
# it: a pass that ends the game lost, see expand)
NET_PRIORS = 2  # the node's children carry the policy network's priors, not the placeholders

# What a batch entry is.
EVAL, TERMINAL = 0, 1

T_USED, T_FULL = 0, 1  # Tree.meta: nodes in use; 1 once an expansion found no room
PLANES = 49  # alphago49: the policy net reads the first 48 when it takes alphago48
KEPT_PLANES_BATCHES = 64  # KeptPlanes holds the planes of this many batches (19x19, batches of 16: 18 MB)
DECIDED_MIN_BATCHES = 4  # a time-limited search measures its rate over this many batches before stopping early


class Tree(NamedTuple):
    """The search tree's node arrays (capacity ``len(N)``); see the module docstring. Opaque outside numba."""

    parent: np.ndarray  # int32[M]: parent node, -1 for the root
    move: np.ndarray  # int32[M]: the move into the node (padded index, PASS = 0)
    first: np.ndarray  # int32[M]: first child, -1 while not expanded
    count: np.ndarray  # int32[M]: number of children (contiguous from `first`)
    N: np.ndarray  # int32[M]: visits
    W: np.ndarray  # float64[M]: total value, for the player who moved into the node
    S: np.ndarray  # float64[M]: total final area margin (rollouts, scored ends), for the player who moved in
    S2: np.ndarray  # float64[M]: total squared margin
    SN: np.ndarray  # int32[M]: margins summed in S
    P: np.ndarray  # float32[M]: prior of the move into the node
    vl: np.ndarray  # int32[M]: simulations in flight through the node (virtual losses)
    value: np.ndarray  # float32[M]: value net output for the side to move at the node; NaN until evaluated
    flags: np.ndarray  # uint8[M]: BANNED, NET_PRIORS
    meta: np.ndarray  # int64[2]: T_USED, T_FULL


def new_tree(max_nodes: int) -> Tree:
    """An empty tree with room for ``max_nodes`` nodes (about 60 bytes each), holding only the root."""
    if max_nodes < 2:
        raise ValueError(f"max_nodes must be at least 2, not {max_nodes}")
    m = int(max_nodes)
    t = Tree(np.empty(m, np.int32), np.empty(m, np.int32), np.empty(m, np.int32), np.empty(m, np.int32),
             np.empty(m, np.int32), np.empty(m, np.float64), np.empty(m, np.float64), np.empty(m, np.float64),
             np.empty(m, np.int32), np.empty(m, np.float32), np.empty(m, np.int32), np.empty(m, np.float32),
             np.empty(m, np.uint8), np.zeros(2, np.int64))
    reset_tree(t)
    return t


@nb.njit(cache=True)
def _init_node(t: Tree, i: int, parent: int, move: int, prior: float) -> None:
    t.parent[i] = parent
    t.move[i] = move
    t.first[i] = -1
    t.count[i] = 0
    t.N[i] = 0
    t.W[i] = 0.0
    t.S[i] = 0.0
    t.S2[i] = 0.0
    t.SN[i] = 0
    t.P[i] = prior
    t.vl[i] = 0
    t.value[i] = np.nan
    t.flags[i] = 0


@nb.njit(cache=True)
def reset_tree(t: Tree) -> None:
    """Drop every node but a fresh root."""
    _init_node(t, np.int64(0), np.int64(-1), np.int64(fb.NO_POINT), 1.0)
    t.meta[T_USED] = 1
    t.meta[T_FULL] = 0


# -- selection ------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def first_play_q(t: Tree, node: int, seen: float, fpu: float, fpu_reduction: float) -> float:
    """``Q`` of an unvisited child of the expanded ``node`` (first-play urgency), for the side to move at ``node``,
    given ``seen``, the summed priors of its children visited (or in flight).

    ``fpu_reduction`` below 0: the constant ``fpu``. Otherwise Leela Zero's rule: ``node``'s own ``Q`` for that
    side less ``fpu_reduction * sqrt(seen)``; ``fpu`` while ``node`` has no visits.
    """
    if fpu_reduction < 0 or t.N[node] == 0:
        return fpu
    return -t.W[node] / t.N[node] - fpu_reduction * math.sqrt(seen)


@nb.njit(cache=True)
def unvisited_q(t: Tree, node: int, n_vl: int, fpu: float, fpu_reduction: float) -> float:
    """:func:`first_play_q` of ``node``, its visited priors summed here (virtual losses weighted by ``n_vl``)."""
    f = t.first[node]
    seen = 0.0
    for j in range(f, f + t.count[node]):
        if not t.flags[j] & BANNED and t.N[j] + n_vl * t.vl[j] > 0:
            seen += t.P[j]
    return first_play_q(t, node, seen, fpu, fpu_reduction)


@nb.njit(cache=True)
def select_child(t: Tree, node: int, c_puct: float, n_vl: int, fpu: float, fpu_reduction: float) -> int:
    """The child of the expanded ``node`` maximising ``Q + u`` with virtual losses counted; -1 if all are banned.

    An unvisited child's ``Q`` is :func:`first_play_q`. Ties go to the first child in order (points in padded
    order, pass last).
    """
    f = t.first[node]
    k = t.count[node]
    total = 0
    seen = 0.0
    for j in range(f, f + k):
        if not t.flags[j] & BANNED:
            n = t.N[j] + n_vl * t.vl[j]
            total += n
            if n > 0:
                seen += t.P[j]
    sq = math.sqrt(max(total, 1))
    first_play = first_play_q(t, node, seen, fpu, fpu_reduction)
    best = -1
    best_score = -np.inf
    for j in range(f, f + k):
        if t.flags[j] & BANNED:
            continue
        n = t.N[j] + n_vl * t.vl[j]
        q = (t.W[j] - n_vl * t.vl[j]) / n if n > 0 else first_play
        score = q + c_puct * t.P[j] * sq / (1 + n)
        if score > best_score:
            best_score = score
            best = j
    return best


@nb.njit(cache=True)
def expand(t: Tree, node: int, b: FastBoard, komi: float) -> bool:
    """Give ``node`` (position ``b``) one child per legal move (simple ko, no suicide) and pass.

    Placeholder priors: uniform over the legal points that are not an own single-point eye (pass only if there
    are none). After the opponent's pass, a pass that ends the game lost as the board stands (area, every stone
    alive, komi ``komi``) is banned while there is a move to play instead: the tree's rule of
    :func:`pass_allowed`. Without it a net that passes where its opponent did (as expert games end) keeps the
    search on that pass, its exact loss still above the first-play value of the unvisited moves, and the dead
    stones counted alive make a won game look lost. Returns False, and sets ``meta[T_FULL]``, if the tree has no
    room for the children.
    """
    c = b.meta[M_TO_MOVE]
    s = b.meta[M_STRIDE]
    lo = s + 1
    hi = s * (b.meta[M_SIZE] + 1) - 1
    n = 1  # pass
    sensible = 0
    for p in range(lo, hi):
        if b.colour[p] == EMPTY and fb.is_legal(b, p, c):
            n += 1
            if not fb.is_eyelike(b, p, c):
                sensible += 1
    used = t.meta[T_USED]
    if used + n > t.N.size:
        t.meta[T_FULL] = 1
        return False
    prior = 1.0 / sensible if sensible else 0.0
    j = used
    for p in range(lo, hi):
        if b.colour[p] == EMPTY and fb.is_legal(b, p, c):
            _init_node(t, j, node, p, 0.0 if fb.is_eyelike(b, p, c) else prior)
            j += 1
    _init_node(t, j, node, np.int64(PASS), 0.0 if sensible else 1.0)
    if n > 1 and b.meta[M_PASSES] >= 1 and final_margin(b, komi) < 0:
        t.flags[j] = BANNED
    t.first[node] = used
    t.count[node] = n
    t.meta[T_USED] = used + n
    return True


class Boards(NamedTuple):
    """A batch of boards of one size: the :class:`FastBoard` arrays stacked by row (see :func:`board_row`)."""

    colour: np.ndarray
    head: np.ndarray
    nxt: np.ndarray
    chain_size: np.ndarray
    libs: np.ndarray
    placed: np.ndarray
    empties: np.ndarray
    empty_pos: np.ndarray
    meta: np.ndarray
    zobrist: np.ndarray


def new_boards(b: FastBoard, rows: int) -> Boards:
    """``rows`` scratch boards shaped like ``b``."""
    return Boards(*(np.empty((rows, *a.shape), a.dtype) for a in b[:9]), b.zobrist)


@nb.njit(cache=True)
def board_row(bs: Boards, i: int) -> FastBoard:
    """Board ``i`` of the batch, as a FastBoard whose arrays are views into the batch."""
    return FastBoard(bs.colour[i], bs.head[i], bs.nxt[i], bs.chain_size[i], bs.libs[i], bs.placed[i],
                     bs.empties[i], bs.empty_pos[i], bs.meta[i], bs.zobrist)


@nb.njit(cache=True)
def final_margin(b: FastBoard, komi: float) -> float:
    """The area margin (every stone alive, komi included) for the side to move in ``b``."""
    black, white = fb.area_counts(b, np.zeros(b.colour.size, np.bool_))
    margin = black - white - komi
    return margin if b.meta[M_TO_MOVE] == BLACK else -margin


@nb.njit(cache=True)
def select_batch(t: Tree, root: FastBoard, bs: Boards, n: int, c_puct: float, n_vl: int, fpu: float,
                 fpu_reduction: float, expand_threshold: int, komi: float, leaves: np.ndarray, kinds: np.ndarray,
                 values: np.ndarray, margins: np.ndarray, expanded: np.ndarray,
                 collided: np.ndarray) -> tuple[int, int]:
    """Select up to ``n`` leaves with virtual loss, replaying each one's moves onto board row ``i`` of ``bs``.

    Entry ``i < count`` is ``leaves[i]`` of kind EVAL (to evaluate; ``expanded[i]`` if it was expanded now and
    needs policy priors) or TERMINAL (both sides passed; ``values[i]`` its exact outcome and ``margins[i]`` its
    area margin for the side to move).
    Leaves of collisions go to ``collided`` (length ``2 n``). Stops after ``2 n`` selections. Returns
    ``(count, collisions)``; every selection leaves a virtual loss on its path for :func:`backup_batch`.
    """
    count = np.int64(0)
    n_coll = 0
    for _ in range(2 * n):
        if count == n:
            break
        b = board_row(bs, count)
        fb.copy_into(b, root)
        node = np.int64(0)
        t.vl[0] += 1
        while t.first[node] >= 0:
            child = select_child(t, node, c_puct, n_vl, fpu, fpu_reduction)
            if child < 0:
                break
            fb.play(b, np.int64(t.move[child]), b.meta[M_TO_MOVE])
            node = child
            t.vl[node] += 1
        if b.meta[M_PASSES] >= 2:
            kinds[count] = TERMINAL
            margins[count] = final_margin(b, komi)
            values[count] = np.sign(margins[count])
        elif t.vl[node] > 1 and t.first[node] < 0:
            collided[n_coll] = node
            n_coll += 1
            continue
        else:
            kinds[count] = EVAL
        leaves[count] = node
        expanded[count] = False
        if kinds[count] == EVAL and t.first[node] < 0 and (node == 0 or t.N[node] >= expand_threshold):
            expanded[count] = expand(t, node, b, komi)
        count += 1
    return count, n_coll


# -- backup ---------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def backup_batch(t: Tree, leaves: np.ndarray, values: np.ndarray, margins: np.ndarray, n: int,
                 collided: np.ndarray, n_coll: int) -> None:
    """Back up ``values[i]`` and ``margins[i]`` (for the side to move at ``leaves[i]``; a NaN margin is none) for
    ``i < n``; drop all virtual losses."""
    for i in range(n):
        v = -values[i]  # the leaf's W is for the player who moved into it
        m = -margins[i]
        scored = not np.isnan(m)
        node = leaves[i]
        while node >= 0:
            t.vl[node] -= 1
            t.N[node] += 1
            t.W[node] += v
            if scored:
                t.S[node] += m
                t.S2[node] += m * m
                t.SN[node] += 1
            v = -v
            m = -m
            node = t.parent[node]
    for i in range(n_coll):
        node = collided[i]
        while node >= 0:
            t.vl[node] -= 1
            node = t.parent[node]


@nb.njit(cache=True)
def set_priors(t: Tree, nodes: np.ndarray, logits: np.ndarray, size: int, temperature: float) -> None:
    """Replace the children priors of ``nodes[i]`` by ``softmax(logits[i] / temperature)`` over its children.

    ``logits[i]`` is indexed by flat move (``row * size + col``, pass ``size * size``); banned children get 0.
    """
    for i in range(nodes.size):
        node = nodes[i]
        f = t.first[node]
        k = t.count[node]
        top = -np.inf
        for j in range(f, f + k):
            if not t.flags[j] & BANNED:
                top = max(top, logits[i, _flat(t.move[j], size)])
        total = 0.0
        for j in range(f, f + k):
            e = 0.0
            if not t.flags[j] & BANNED and top > -np.inf:
                e = math.exp((logits[i, _flat(t.move[j], size)] - top) / temperature)
            t.P[j] = e
            total += e
        if total > 0:
            for j in range(f, f + k):
                t.P[j] /= total
        t.flags[node] |= NET_PRIORS


@nb.njit(cache=True, inline="always")
def _flat(p: int, size: int) -> int:
    """A padded point, or PASS -> the flat move ``row * size + col`` (``size * size``: pass)."""
    if p == PASS:
        return size * size
    row, col = fb.from_padded(p, size)
    return row * size + col


@nb.njit(cache=True)
def reroot(t: Tree, new_root: int) -> None:
    """Keep only the subtree of ``new_root``, moved to the front of the arrays with ``new_root`` as node 0."""
    cap = t.N.size
    order = np.empty(cap, np.int64)
    new_index = np.full(cap, -1, np.int32)
    order[0] = new_root
    new_index[new_root] = 0
    m = 1
    head = 0
    while head < m:  # breadth first: each node's children are allocated together, so they stay contiguous
        o = order[head]
        head += 1
        f = t.first[o]
        if f < 0:
            continue
        for j in range(f, f + t.count[o]):
            order[m] = j
            new_index[j] = m
            m += 1
    order = order[:m]
    parent = t.parent[order]
    first = t.first[order]
    t.move[:m] = t.move[order]
    t.count[:m] = t.count[order]
    t.N[:m] = t.N[order]
    t.W[:m] = t.W[order]
    t.S[:m] = t.S[order]
    t.S2[:m] = t.S2[order]
    t.SN[:m] = t.SN[order]
    t.P[:m] = t.P[order]
    t.vl[:m] = t.vl[order]
    t.value[:m] = t.value[order]
    t.flags[:m] = t.flags[order]
    for i in range(m):
        t.parent[i] = new_index[parent[i]] if i > 0 else -1
        t.first[i] = new_index[first[i]] if first[i] >= 0 else -1
    t.flags[0] &= ~np.uint8(BANNED)
    t.meta[T_USED] = m
    t.meta[T_FULL] = 0


# -- features and rollouts ----------------------------------------------------------------------------------
#
# The kernels cached here embed only gogame.fastboard code. Feature planes and rollout-policy playouts are called
# through their own modules' kernels, one call per board: numba's cache does not notice when a function from
# another file changes, so a kernel of ours that inlined them could run stale code.


def row_board(bs: Boards, i: int) -> FastBoard:
    """Board ``i`` of the batch as a FastBoard of views (Python side of :func:`board_row`)."""
    return FastBoard(*(a[i] for a in bs[:9]), bs.zobrist)


def batch_planes(bs: Boards, rows: np.ndarray, out: np.ndarray, at: np.ndarray) -> None:
    """``out[i]`` for each ``i`` in ``at``: the alphago49 planes of board row ``rows[i]`` (uint8
    ``(len(rows), 49, size, size)``)."""
    for i in at:
        features.compute_alphago(row_board(bs, int(rows[i])), out[i], True)


class KeptPlanes:
    """The planes of leaves valued before their expansion, kept for the policy net when they are expanded at a
    later visit (a leaf's planes are computed once): a ring of ``capacity`` rows, the oldest overwritten, indexed
    by node. Node numbers hold within one tree: :meth:`clear` when the tree is reset or rerooted."""

    def __init__(self, max_nodes: int, capacity: int, size: int) -> None:
        self.slot = np.full(max_nodes, -1, np.int32)  # node -> its row, -1 when none is kept
        self.owner = np.full(capacity, -1, np.int64)  # row -> its node
        self.shape = (capacity, PLANES, size, size)
        self.planes: np.ndarray | None = None  # allocated on first use (searches without a value net never keep)
        self.next = 0

    def find(self, nodes: np.ndarray) -> np.ndarray:
        """The row of each of ``nodes``, -1 where none is kept."""
        return self.slot[nodes]

    def keep(self, nodes: np.ndarray, planes: np.ndarray) -> None:
        """Keep ``planes[i]`` for ``nodes[i]`` (new nodes), overwriting the oldest rows."""
        nodes, planes = nodes[-len(self.owner):], planes[-len(self.owner):]  # at most a ring's worth: the newest
        if not len(nodes):
            return
        if self.planes is None:
            self.planes = np.empty(self.shape, np.uint8)
        rows = (self.next + np.arange(len(nodes))) % len(self.owner)
        old = self.owner[rows]
        self.slot[old[old >= 0]] = -1
        self.owner[rows] = nodes
        self.slot[nodes] = rows
        self.planes[rows] = planes
        self.next = int(rows[-1] + 1) % len(self.owner)

    def clear(self) -> None:
        self.slot[self.owner[self.owner >= 0]] = -1
        self.owner[:] = -1


@nb.njit(cache=True, nogil=True)
def uniform_rollouts(bs: Boards, rows: np.ndarray, komi: float, seeds: np.ndarray, max_moves: int,
                     out: np.ndarray) -> None:
    """``out[i]``: black's area margin minus ``komi`` after a uniform random playout from row ``rows[i]``.

    Moves are uniform over the legal points that do not fill an own eye (:func:`gogame.fastboard.playout`);
    numba's generator is reseeded with ``seeds[i]`` (per thread, so results do not depend on the threads).
    """
    b = fb.copy_board(board_row(bs, rows[0]))
    no_dead = np.zeros(b.colour.size, np.bool_)
    for i in range(rows.size):
        fb.copy_into(b, board_row(bs, rows[i]))
        np.random.seed(seeds[i])
        fb.playout(b, max_moves)
        black, white = fb.area_counts(b, no_dead)
        out[i] = black - white - komi


@nb.njit(cache=True, nogil=True)
def _owner_sum(b: FastBoard, out: np.ndarray) -> None:
    owner = fb.territory_owner(b, np.zeros(b.colour.size, np.bool_))
    for p in range(owner.size):
        if owner[p] == BLACK:
            out[p] += 1.0
        elif owner[p] == WHITE:
            out[p] -= 1.0


@nb.njit(cache=True, nogil=True)
def uniform_ownership(start: FastBoard, seeds: np.ndarray, max_moves: int) -> np.ndarray:
    """float64[N]: the sum over playouts (one per seed) of +1 black area / -1 white area at the end."""
    out = np.zeros(start.colour.size)
    b = fb.copy_board(start)
    for i in range(seeds.size):
        fb.copy_into(b, start)
        np.random.seed(seeds[i])
        fb.playout(b, max_moves)
        _owner_sum(b, out)
    return out


@nb.njit(cache=True, nogil=True)
def replay_ownership(start: FastBoard, moves: np.ndarray, out: np.ndarray) -> None:
    """Add the final owners (+1 black, -1 white) after playing ``moves`` (padded points) from ``start``."""
    b = fb.copy_board(start)
    for p in moves:
        fb.play(b, np.int64(p), b.meta[M_TO_MOVE])
    _owner_sum(b, out)


class Rollouts:
    """Playouts to the end of the game, run in ``threads`` threads (the kernels release the GIL).

    With a :class:`gogame.rollout.RolloutPolicy` the moves come from AlphaGo's fast rollout policy
    (:func:`gogame.rollout.rollouts_kernel`); with None, from the uniform policy over legal moves that do not fill
    an own eye. A playout stops after two passes or ``3 * size * size`` moves and is scored by area with every
    stone alive.
    """

    def __init__(self, policy: ro.RolloutPolicy | None = None, threads: int = 1) -> None:
        if policy is not None and policy.tree:
            raise ValueError("rollouts need a rollout policy, not a tree policy")
        self.policy = policy
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def _map(self, fn, parts: list) -> list:
        if self._pool is None or len(parts) == 1:
            return [fn(part) for part in parts]
        return list(self._pool.map(fn, parts))

    def _margins(self, bs: Boards, rows: np.ndarray, komi: float, seeds: np.ndarray) -> np.ndarray:
        size = int(bs.meta[0, M_SIZE])
        max_moves = 3 * size * size
        out = np.empty(rows.size)
        if self.policy is None:
            uniform_rollouts(bs, rows, komi, seeds, max_moves, out)
        else:
            for i, r in enumerate(rows):
                out[i] = ro.rollouts_kernel(row_board(bs, int(r)), self.policy.tables, komi, seeds[i:i + 1],
                                            max_moves)[0]
        return out

    def start(self, bs: Boards, rows: np.ndarray, komi: float, seeds: np.ndarray):
        """Begin rollouts from board rows ``rows``; returns a callable that waits and gives the margins.

        The margins (float64[len(rows)]) are black's area minus white's minus ``komi``; rollout ``i`` is seeded
        with ``seeds[i]``. ``bs`` must not change until the result is taken.
        """
        chunks = np.array_split(np.arange(rows.size), min(self.threads, rows.size))
        if self._pool is None:
            out = self._margins(bs, rows, komi, seeds)
            return lambda: out
        futures = [self._pool.submit(self._margins, bs, rows[idx], komi, seeds[idx]) for idx in chunks]
        return lambda: np.concatenate([f.result() for f in futures])

    def margins(self, board: Board, n: int, seed: int = 0) -> np.ndarray:
        """float64[n]: black's area minus white's minus ``board.komi`` after each of ``n`` playouts from
        ``board``, playout ``i`` seeded with ``seed + i`` (what the search's rollouts give a leaf)."""
        if n == 0:
            return np.zeros(0)
        bs = new_boards(board.fast, 1)
        fb.copy_into(board_row(bs, 0), board.fast)
        return self.start(bs, np.zeros(n, np.int64), board.komi, np.arange(seed, seed + n, dtype=np.int64))()

    def ownership(self, board: Board, n: int, seed: int = 0) -> np.ndarray:
        """float64 ``[row, col]`` in [-1, 1]: the mean final owner (+1 black) over ``n`` playouts from ``board``."""
        max_moves = 3 * board.size * board.size
        parts = np.array_split(np.arange(seed, seed + n, dtype=np.int64), min(self.threads, max(n, 1)))
        start = board.fast

        def work(seeds: np.ndarray) -> np.ndarray:
            if self.policy is None:
                return uniform_ownership(start, seeds, max_moves)
            out = np.zeros(start.colour.size)
            for s in seeds:
                replay_ownership(start, ro.playout_kernel(start, self.policy.tables, int(s), max_moves), out)
            return out

        return coords.unpad(np.sum(self._map(work, parts), axis=0) / max(n, 1), board.size)


# -- evaluators -----------------------------------------------------------------------------------------------


class Evaluator(Protocol):
    """What the search asks of the networks. ``planes`` are uint8 alphago49 ``(B, 49, size, size)``.

    ``uses_planes`` False (optional attribute) tells the search to skip computing the planes. ``policy_value``
    (optional attribute): None, or a callable ``planes -> (logits (B, size * size + 1), values (B,), areas (B,))``
    that gives them from one evaluation (a dual network); the search then makes one call per batch for the union
    of the leaves that need priors and those that need a value, instead of one call to each of the two methods.
    ``areas`` is the expected final area margin for the side to move, komi not counted (the ownership head's sum
    over the points): where no rollouts run, the search reports it as the leaf's score.
    """

    size: int
    has_value: bool

    def policy(self, planes: np.ndarray) -> np.ndarray:
        """Logits (or log-probabilities) ``(B, size * size + 1)``, flat index ``row * size + col``, pass last."""

    def value(self, planes: np.ndarray) -> np.ndarray:
        """float ``(B,)`` in [-1, 1]: the expected outcome for the side to move."""


class UniformEvaluator:
    """A stand-in for the networks: uniform priors over the legal moves, a constant value (rollouts only)."""

    uses_planes = False

    def __init__(self, size: int, value: float | None = None) -> None:
        self.size = size
        self.has_value = value is not None
        self._value = 0.0 if value is None else float(value)

    def policy(self, planes: np.ndarray) -> np.ndarray:
        return np.zeros((len(planes), self.size * self.size + 1), np.float32)

    def value(self, planes: np.ndarray) -> np.ndarray:
        return np.full(len(planes), self._value)


# -- root rules -----------------------------------------------------------------------------------------------


def area_margin_for(board: Board) -> float:
    """The side to move's area margin minus komi on the board as it stands (every stone alive: Tromp-Taylor)."""
    margin = board.score("area")
    return margin if board.to_move == "B" else -margin


def opponent_in_atari(board: Board) -> bool:
    """Has the opponent of the side to move a chain in atari (stones that can be captured at once)?"""
    f = board.fast
    opp = 3 - int(f.meta[M_TO_MOVE])
    stones = np.flatnonzero(f.colour == opp)
    return bool(np.any(f.libs[f.head[stones]] == 1))


def pass_allowed(board: Board, cleanup: bool = False) -> bool:
    """May the side to move pass without risking a won game under area scoring?

    Passing invites the opponent to pass and end the game with the board scored as it stands, every stone
    alive, so a pass is allowed only when that score does not lose. In ``cleanup`` mode (capture the dead
    stones before the game ends) it must win, and no opponent chain may be in atari.
    """
    margin = area_margin_for(board)
    if cleanup:
        return margin > 0 and not opponent_in_atari(board)
    return margin >= 0


def pass_wins(board: Board) -> bool:
    """Does passing end the game now (the opponent just passed) with a win for the side to move?"""
    return board.consecutive_passes >= 1 and area_margin_for(board) > 0


# -- the search -----------------------------------------------------------------------------------------------


@dataclass
class SearchConfig:
    """Search constants (the paper's values where it gives them)."""

    c_puct: float = 5.0  # exploration constant; AlphaGo used 5
    lambda_: float = 0.5  # leaf value mix: 0 value network only, 1 rollouts only; AlphaGo 0.5
    # rollouts mix in (by lambda_) once the moves played reach this share of the board's points; before that the
    # value network alone values the leaves (lambda 0). 0: from the first move, as in AlphaGo
    rollouts_from: float = 0.0
    batch_size: int = 16  # leaves per network forward (8 and 32: 0.84-1.08x the visits/s on 2 cores, journal 12-02)
    virtual_loss: int = 3  # n_vl; AlphaGo used 3
    expand_threshold: int = 1  # n_thr: visits a leaf needs before it is expanded (the root always is)
    fpu: float = 0.0  # Q of an unvisited child (first-play urgency); 0 is a draw, as in the paper
    fpu_reduction: float | None = None  # r: an unvisited child's Q is its parent's less r * sqrt(visited priors)
    policy_temperature: float = 1.0  # softmax temperature of the priors (AlphaGo's beta was 0.67)
    max_nodes: int = 1_000_000  # tree capacity; about 40 bytes a node
    threads: int = 2  # rollout threads (1: 0.74x the visits/s on 9x9, 1.09x on 19x19 on 2 cores, journal 12-02)
    dirichlet_alpha: float | None = None  # root noise for self-play: Dir(alpha) mixed in with weight epsilon
    dirichlet_epsilon: float = 0.25
    cleanup: bool = False  # see pass_allowed
    seed: int | None = None  # seeds rollouts, symmetries and noise; None: from the OS

    def __post_init__(self) -> None:
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"lambda_ must be in [0, 1], not {self.lambda_}")
        if not 0.0 <= self.rollouts_from < math.inf:
            raise ValueError(f"rollouts_from must be a finite share, at least 0, not {self.rollouts_from}")
        if self.batch_size < 1 or self.virtual_loss < 0 or self.expand_threshold < 0:
            raise ValueError("batch_size must be positive, virtual_loss and expand_threshold not negative")
        if self.c_puct < 0 or self.policy_temperature <= 0:
            raise ValueError("c_puct must not be negative and policy_temperature must be positive")
        if self.fpu_reduction is not None and self.fpu_reduction < 0:
            raise ValueError(f"fpu_reduction must not be negative, not {self.fpu_reduction}")

    @property
    def values_leaves(self) -> bool:
        """Whether a value network values leaves in some searches (``lambda_`` below 1, or ``rollouts_from``)."""
        return self.lambda_ < 1 or self.rollouts_from > 0

    def leaf_lambda(self, moves_played: int, size: int) -> float:
        """The leaf value mix of a search from a position after ``moves_played`` moves on a ``size`` board:
        ``lambda_``, or 0 before the moves reach ``rollouts_from`` of the points."""
        return self.lambda_ if moves_played >= self.rollouts_from * size * size else 0.0

    @property
    def kernel_fpu_reduction(self) -> float:
        """``fpu_reduction`` as :func:`first_play_q` takes it: -1 for none (the constant ``fpu``)."""
        return -1.0 if self.fpu_reduction is None else self.fpu_reduction


@dataclass
class SearchStats:
    """What one :meth:`MCTS.search` call did. Seconds are wall-clock, split by stage."""

    simulations: int = 0  # leaves backed up (collisions not counted)
    collisions: int = 0
    batches: int = 0
    seconds: float = 0.0
    tree_seconds: float = 0.0  # the numba tree kernels: selection with replay and expansion, priors, backup
    feature_seconds: float = 0.0
    net_seconds: float = 0.0
    rollout_wait_seconds: float = 0.0  # waiting for rollouts after the networks were done
    stopped: str = ""  # "visits", "time" or "decided"
    full: bool = False  # the tree has run out of room (the search went on without expanding)


@dataclass(frozen=True)
class ChildStats:
    """A root child: its move, visits, ``Q`` and prior for the side to move at the root, and the mean and standard
    deviation of the final area margins seen below it, for that side too: the rollouts' and scored game ends',
    or where no rollouts run the dual net's expected margins (from its ownership head); NaN when none was seen
    (no rollouts and no dual net)."""

    move: Move
    visits: int
    q: float
    prior: float
    score: float = math.nan
    score_stdev: float = math.nan


class MCTS:
    """APV-MCTS over one position at a time, reusing the tree as the game goes on.

    ``evaluator`` gives priors and values (see :class:`Evaluator`); ``rollouts`` plays leaves out (required
    unless ``lambda_ == 0``; default: uniform playouts). Call :meth:`set_root`, then :meth:`search`; read the
    result with :meth:`children`, :meth:`root_q` and :meth:`principal_variation`.
    """

    def __init__(self, evaluator: Evaluator, config: SearchConfig | None = None,
                 rollouts: Rollouts | None = None) -> None:
        self.evaluator = evaluator
        self.config = config or SearchConfig()
        if self.config.values_leaves and not evaluator.has_value:
            raise ValueError("lambda_ < 1 mixes in a value network (rollouts_from above 0 starts with one), but "
                             "the evaluator has none")
        self.rollouts = rollouts if rollouts is not None else Rollouts(None, self.config.threads)
        self.size = evaluator.size
        if self.config.max_nodes < self.size * self.size + 2:
            raise ValueError(f"max_nodes must hold at least the root and its {self.size * self.size + 1} children")
        self.board: Board | None = None
        self._rng = np.random.default_rng(self.config.seed)
        self._next_seed = int(self._rng.integers(1 << 40))
        self._noised = False
        b = self.config.batch_size
        self._leaves = np.empty(b, np.int32)
        self._kinds = np.empty(b, np.int8)
        self._values = np.empty(b, np.float64)
        self._margins = np.empty(b, np.float64)
        self._expanded = np.empty(b, np.bool_)
        self._collided = np.empty(2 * b, np.int32)
        self._boards: Boards | None = None
        self._planes = np.empty((b, PLANES, self.size, self.size), np.uint8)
        self._kept = KeptPlanes(self.config.max_nodes, KEPT_PLANES_BATCHES * b, self.size)

    @functools.cached_property
    def tree(self) -> Tree:
        """The search tree, allocated at first use (its kernel compiles on an empty cache: not in the constructor,
        which the GTP engine runs before it answers)."""
        return new_tree(self.config.max_nodes)

    # -- root -------------------------------------------------------------------------------------------------

    def set_root(self, board: Board) -> bool:
        """Search ``board`` next (a copy is kept). Returns True if the old tree was reused.

        The tree is reused when ``board`` continues the position searched before (same rules, the same history
        plus zero or more moves) and the tree holds those moves: the subtree of the new position is kept.
        """
        if board.size != self.size:
            raise ValueError(f"board is {board.size}x{board.size} but the search is for {self.size}x{self.size}")
        path = self._continuation(board)
        node = 0
        for move in path if path is not None else ():
            node = self._child(node, board._index(move))
            if node < 0:
                break
        self.board = board.copy()
        if self._boards is None:
            self._boards = new_boards(board.fast, self.config.batch_size)
        if path is None or node < 0:
            reset_tree(self.tree)
        elif node > 0:
            reroot(self.tree, node)
        else:
            return True
        self._kept.clear()
        self._noised = False
        return path is not None and node >= 0

    def _continuation(self, board: Board) -> list[Move] | None:
        """The moves that lead from the searched position to ``board``, or None if it does not continue it."""
        old = self.board
        if old is None or (old.komi, old.superko, old.allow_suicide) != (board.komi, board.superko,
                                                                         board.allow_suicide):
            return None
        k = len(old.history)
        if board.history[:k] != old.history:
            return None
        trial = old.copy()
        for colour, move in board.history[k:]:
            if colour != trial.to_move or not trial.is_legal(move):
                return None  # a move out of turn is not in the tree, whose edges alternate colours
            trial.play(move)
        if (trial.zobrist_hash, trial.to_move, trial.ko_point) != (board.zobrist_hash, board.to_move, board.ko_point):
            return None
        return [move for _, move in board.history[k:]]

    def _child(self, node: int, move: int) -> int:
        t = self.tree
        f = int(t.first[node])
        if f < 0:
            return -1
        hit = np.flatnonzero(t.move[f:f + t.count[node]] == move)
        return f + int(hit[0]) if hit.size else -1

    def _prepare_root(self) -> None:
        """Ban the root children the rules forbid, renormalise their priors, add Dirichlet noise once."""
        board = self.board
        t = self.tree
        f, k = int(t.first[0]), int(t.count[0])
        moves = t.move[f:f + k]
        allowed = np.zeros(k, np.bool_)
        legal = features.legal_mask(board)  # superko included
        points = moves != PASS
        rows, cols = coords.from_padded(moves[points], self.size)
        flat = rows * self.size + cols
        allowed[points] = legal[flat]
        if not allowed.any() or pass_allowed(board, self.config.cleanup):
            allowed[~points] = True  # nothing else to play, or passing cannot lose
        flags = t.flags[f:f + k]
        t.flags[f:f + k] = np.where(allowed, flags & ~np.uint8(BANNED), flags | BANNED)
        prior = np.where(allowed, t.P[f:f + k], 0.0)
        if prior.sum() <= 0:
            prior = allowed.astype(np.float64)
        prior = prior / prior.sum()
        alpha = self.config.dirichlet_alpha
        if alpha and not self._noised and t.flags[0] & NET_PRIORS:
            eps = self.config.dirichlet_epsilon
            noise = np.zeros(k)
            noise[allowed] = self._rng.dirichlet(np.full(int(allowed.sum()), alpha))
            prior = (1 - eps) * prior + eps * noise
            self._noised = True
        t.P[f:f + k] = prior

    # -- search -----------------------------------------------------------------------------------------------

    def search(self, visits: int | None = None, seconds: float | None = None,
               stop_when_decided: bool = False, report: Callable[[], None] | None = None,
               report_seconds: float = 1.0) -> SearchStats:
        """Search until the root has ``visits`` visits (reused ones count) or ``seconds`` passed, whichever first.

        ``report``: called between batches once ``report_seconds`` have passed since the start or its last call,
        to read the tree while it grows (analysis streams); it must not change the search.

        ``stop_when_decided``: stop as soon as the most visited root move can no longer be overtaken in visits
        within the limits (the visits left, or the current rate of simulations over the time left), so that the
        move a full search would play is played sooner (``stopped == "decided"``). The time limit is checked
        between batches, so a search may overrun it by one batch. Raises ValueError without a limit, or before
        :meth:`set_root`, or if the root position is over (two passes).
        """
        if visits is None and seconds is None:
            raise ValueError("give visits, seconds or both")
        if self.board is None:
            raise ValueError("set_root() first")
        if self.board.consecutive_passes >= 2:
            raise ValueError("the game is over (both sides passed)")
        stats = SearchStats()
        start = time.perf_counter()
        deadline = start + seconds if seconds is not None else math.inf
        reported = start
        t = self.tree
        if t.first[0] < 0:
            self._batch(1, stats)
        self._prepare_root()
        while True:
            root_n = int(t.N[0])
            if visits is not None and root_n >= visits:
                stats.stopped = "visits"
                break
            now = time.perf_counter()
            if now >= deadline:
                stats.stopped = "time"
                break
            if stop_when_decided and self._decided(visits, root_n, stats.simulations, now - start, deadline - now):
                stats.stopped = "decided"
                break
            if report is not None and now - reported >= report_seconds:
                report()
                reported = time.perf_counter()
            n = self.config.batch_size if visits is None else min(self.config.batch_size, visits - root_n)
            self._batch(n, stats)
        stats.seconds = time.perf_counter() - start
        stats.full = bool(t.meta[T_FULL])
        return stats

    def _decided(self, visits: int | None, root_n: int, simulations: int, elapsed: float, time_left: float) -> bool:
        """True when the most visited root child leads the next one by more visits than the search has left."""
        left = math.inf if visits is None else visits - root_n
        if math.isfinite(time_left):
            if simulations < self.config.batch_size * DECIDED_MIN_BATCHES:
                return False  # too few batches for a rate
            left = min(left, simulations / elapsed * time_left)
        t = self.tree
        f, k = int(t.first[0]), int(t.count[0])
        if k < 2:
            return k == 1
        second, first = np.partition(t.N[f:f + k], k - 2)[k - 2:]
        return first - second > left

    def _batch(self, n: int, stats: SearchStats) -> None:
        """One batch: select, evaluate (networks here, rollouts in threads at the same time), back up."""
        cfg = self.config
        t = self.tree
        bs = self._boards
        t0 = time.perf_counter()
        count, n_coll = select_batch(t, self.board.fast, bs, n, cfg.c_puct, cfg.virtual_loss, cfg.fpu,
                                     cfg.kernel_fpu_reduction, cfg.expand_threshold, self.board.komi,
                                     self._leaves, self._kinds, self._values, self._margins, self._expanded,
                                     self._collided)
        t1 = time.perf_counter()
        stats.tree_seconds += t1 - t0
        leaves = self._leaves[:count]
        values = self._values[:count]
        margins = self._margins[:count]
        evals = np.flatnonzero(self._kinds[:count] == EVAL)
        expand = np.flatnonzero(self._expanded[:count])
        lambda_ = cfg.leaf_lambda(self.board.move_number, self.size)
        need_value = evals[np.isnan(t.value[leaves[evals]])] if lambda_ < 1 else evals[:0]
        wait = None
        if lambda_ > 0 and evals.size:
            seeds = np.arange(self._next_seed, self._next_seed + evals.size, dtype=np.int64)
            self._next_seed += evals.size
            wait = self.rollouts.start(bs, evals.astype(np.int64), self.board.komi, seeds)
        wanted = np.zeros(count, np.bool_)
        wanted[need_value] = True
        wanted[expand] = True
        rows = np.flatnonzero(wanted)  # entries whose planes a network reads
        slot = np.cumsum(wanted) - 1  # entry -> its row in `planes`
        planes = self._planes[:rows.size]
        t2 = time.perf_counter()
        if rows.size and getattr(self.evaluator, "uses_planes", True):
            kept = self._kept.find(leaves[rows])
            fresh = kept < 0
            batch_planes(bs, rows, planes, np.flatnonzero(fresh))
            if not fresh.all():
                planes[~fresh] = self._kept.planes[kept[~fresh]]
            later = fresh & ~self._expanded[rows]  # valued now, expanded at a later visit
            self._kept.keep(leaves[rows[later]], planes[later])
        t3 = time.perf_counter()
        stats.feature_seconds += t3 - t2
        fused = getattr(self.evaluator, "policy_value", None)
        areas = None  # the net's area margins of need_value's leaves, for the side to move, komi not counted
        if fused is not None and rows.size:  # one forward for priors and values
            all_logits, all_values, all_areas = fused(planes)
            logits = all_logits[slot[expand]]
            if need_value.size:
                t.value[leaves[need_value]] = all_values[slot[need_value]]
                areas = all_areas[slot[need_value]]
        else:
            logits = self.evaluator.policy(planes[slot[expand]]) if expand.size else None
            if need_value.size:
                t.value[leaves[need_value]] = self.evaluator.value(planes[slot[need_value]])
        t4 = time.perf_counter()
        stats.net_seconds += t4 - t3
        if evals.size:
            v = t.value[leaves[evals]].astype(np.float64) if lambda_ < 1 else 0.0
            z = 0.0
            margins[evals] = np.nan
            sign = np.where(bs.meta[:count, M_TO_MOVE] == BLACK, 1.0, -1.0)  # +1 where black is to move, -1 white
            if wait is not None:  # black's margins, turned to the side to move's
                margins[evals] = wait() * sign[evals]
                z = np.sign(margins[evals])
            elif areas is not None:  # no playouts: the ownership head's margin (a re-valued leaf has none)
                margins[need_value] = areas - self.board.komi * sign[need_value]
            values[evals] = (1 - lambda_) * v + lambda_ * z
        t5 = time.perf_counter()
        stats.rollout_wait_seconds += t5 - t4
        if expand.size:
            set_priors(t, leaves[expand].astype(np.int64), np.ascontiguousarray(logits, np.float32), self.size,
                       cfg.policy_temperature)
        backup_batch(t, leaves, values, margins, count, self._collided, n_coll)
        stats.tree_seconds += time.perf_counter() - t5
        stats.simulations += count
        stats.collisions += n_coll
        stats.batches += 1

    # -- results ----------------------------------------------------------------------------------------------

    @property
    def root_visits(self) -> int:
        return int(self.tree.N[0])

    def root_q(self) -> float:
        """``Q`` of the root for the side to move there: the mean of all values backed up through it."""
        t = self.tree
        return float(-t.W[0] / t.N[0]) if t.N[0] else 0.0

    def children(self, node: int = 0, include_banned: bool = False) -> list[ChildStats]:
        """The children of ``node`` (default: the root) with visits, ``Q`` and prior, most visited first."""
        t = self.tree
        f, k = int(t.first[node]), int(t.count[node])
        first_play = float(unvisited_q(t, node, 0, self.config.fpu, self.config.kernel_fpu_reduction))
        out = []
        for j in range(f, f + k if f >= 0 else f):
            if t.flags[j] & BANNED and not include_banned:
                continue
            n = int(t.N[j])
            q = float(t.W[j] / n) if n else first_play
            score = stdev = math.nan
            if t.SN[j]:
                score = float(t.S[j] / t.SN[j])
                stdev = math.sqrt(max(0.0, float(t.S2[j] / t.SN[j]) - score * score))
            out.append(ChildStats(self.board._point(int(t.move[j])), n, q, float(t.P[j]), score, stdev))
        out.sort(key=lambda c: (-c.visits, -c.q, -c.prior))
        return out

    def principal_variation(self, move: Move, max_length: int = 20) -> list[Move]:
        """``move`` and then, from the root child it names, the most visited child repeatedly."""
        node = self._child(0, self.board._index(move))
        pv = [move]
        while node >= 0 and len(pv) < max_length:
            t = self.tree
            f, k = int(t.first[node]), int(t.count[node])
            if f < 0 or not t.N[f:f + k].any():
                break
            node = f + int(np.argmax(t.N[f:f + k]))
            pv.append(self.board._point(int(t.move[node])))
        return pv

    @property
    def nodes(self) -> int:
        return int(self.tree.meta[T_USED])
