"""APV-MCTS: exact N, W, Q and U with a dummy network, virtual loss, backup, reuse, limits and the pass rules."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from gogame import Board
from gogame import fastboard as fb
from gogame import mcts
from gogame import rollout as ro
from gogame.coords import from_gtp, to_gtp


class Dummy:
    """A network stand-in: the same priors in every position, ``vb`` when black is to move and ``vw`` for white.

    ``priors`` maps GTP vertices to probabilities; every other point gets ``rest``, pass ``pass_prior``.
    Counts its calls; raises if the search asks for a value it should not need.
    """

    uses_planes = True

    def __init__(self, size: int, priors: dict[str, float] | None = None, rest: float = 1.0,
                 pass_prior: float = 0.0, vb: float = 0.6, vw: float = -0.2, has_value: bool = True) -> None:
        self.size = size
        self.has_value = has_value
        p = np.full(size * size + 1, rest)
        for vertex, prob in (priors or {}).items():
            row, col = from_gtp(vertex, size)
            p[row * size + col] = prob
        p[-1] = pass_prior
        with np.errstate(divide="ignore"):
            self.logits = np.log(p).astype(np.float32)
        self.vb, self.vw = vb, vw
        self.policy_calls = self.value_calls = 0

    def policy(self, planes: np.ndarray) -> np.ndarray:
        self.policy_calls += 1
        return np.tile(self.logits, (len(planes), 1))

    def value(self, planes: np.ndarray) -> np.ndarray:
        if not self.has_value:
            raise AssertionError("value network used with lambda_ = 1")
        self.value_calls += 1
        black_to_move = planes[:, 48].any(axis=(1, 2))  # alphago49's player-colour plane
        return np.where(black_to_move, self.vb, self.vw)


class NoRollouts(mcts.Rollouts):
    def start(self, *args, **kwargs):
        raise AssertionError("rollouts used with lambda_ = 0")


def search(board: Board, evaluator, rollouts=None, **config) -> mcts.MCTS:
    config.setdefault("max_nodes", 100_000)
    s = mcts.MCTS(evaluator, mcts.SearchConfig(**config), rollouts)
    s.set_root(board)
    return s


def child(s: mcts.MCTS, node: int, vertex: str) -> int:
    return s._child(node, s.board._index(from_gtp(vertex, s.size)))


def puct_choice(t: mcts.Tree, node: int, c_puct: float, fpu: float = 0.0, fpu_reduction: float | None = None) -> int:
    """argmax Q + u by the paper's formula in plain numpy (no virtual loss), first child on ties; with
    ``fpu_reduction``, an unvisited child's Q is the parent's less it times the root of the visited priors."""
    f, k = t.first[node], t.count[node]
    ok = (t.flags[f:f + k] & mcts.BANNED) == 0
    n = t.N[f:f + k].astype(float)
    if fpu_reduction is not None:
        fpu = -t.W[node] / t.N[node] - fpu_reduction * math.sqrt(t.P[f:f + k][ok & (n > 0)].sum())
    q = np.where(n > 0, t.W[f:f + k] / np.maximum(n, 1), fpu)
    u = c_puct * t.P[f:f + k] * math.sqrt(max(n[ok].sum(), 1)) / (1 + n)
    return f + int(np.argmax(np.where(ok, q + u, -np.inf)))


# Black has 10 points of area, white 15: black is behind by 5.5 as the board stands.
SPLIT = """
. X O . .
. X O . .
. X O . .
. X O . .
. X O . .
"""

# Both sides alive with three eyes each: every playout ends with this split.
ALIVE = """
. X O . .
X X O O O
. X O . .
X X O O O
. X O . .
"""

DIRTY = """
. X O . .
. X O . .
. X O O O
. X O X O
. X O . .
"""

# White's A3-B3 are in atari: black captures at C3, white saves them at C3 (found by rollouts in this position).
FIGHT = """
. O . . O
X X . . X
O O . O O
X X . . .
. X . . .
"""


# -- exact values with a dummy network ---------------------------------------------------------------------


def test_four_simulations_pin_n_w_q_and_u():
    """3x3, c_puct 1, lambda 0, expand at once; priors B2 0.4 and 0.075 elsewhere; v = 0.6 (black), -0.2 (white).

    1: root (black to move) V = 0.6, so W(root) = -0.6 (W is for the player who moved into a node).
    2: no visits yet, so u = P: B2. V = -0.2 for white there: W(B2) = +0.2, W(root) = -0.8.
    3: B2 scores 0.2 + 0.4 * 1 / 2 = 0.4 against 0.075: B2 again, then its first child A1 (priors all 0.125):
       V = 0.6 for black: W(A1) = -0.6, W(B2) = 0.8, W(root) = -1.4.
    4: B2 scores 0.4 + 0.4 * sqrt(2) / 3 = 0.589 against 0.075 * sqrt(2) = 0.106; inside B2, A1 scores
       -0.6 + 0.125 / 2 against 0.125: B1. W(B1) = -0.6, W(B2) = 1.4, W(root) = -2.0.
    """
    priors = {v: 0.075 for v in ("A1", "B1", "C1", "A2", "C2", "A3", "B3", "C3")} | {"B2": 0.4}
    s = search(Board(3, komi=0.5), Dummy(3, priors), NoRollouts(), c_puct=1.0, lambda_=0.0, batch_size=1,
               expand_threshold=0)
    stats = s.search(visits=4)
    t = s.tree
    b2, a1, b1 = child(s, 0, "B2"), child(s, child(s, 0, "B2"), "A1"), child(s, child(s, 0, "B2"), "B1")
    assert (stats.simulations, t.N[0], t.N[b2], t.N[a1], t.N[b1]) == (4, 4, 3, 1, 1)
    assert t.W[0] == pytest.approx(-2.0) and s.root_q() == pytest.approx(0.5)
    assert t.W[b2] / t.N[b2] == pytest.approx(1.4 / 3)
    assert t.W[a1] == pytest.approx(-0.6) and t.W[b1] == pytest.approx(-0.6)
    assert t.P[b2] == pytest.approx(0.4) and t.P[a1] == pytest.approx(0.125)
    # Next: u(B2) = 0.4 * sqrt(3) / 4 = 0.1732 beats u(A2) = 0.075 * sqrt(3) = 0.1299; inside B2, C1 is next.
    assert mcts.select_child(t, 0, 1.0, 3, 0.0, -1.0) == b2
    assert mcts.select_child(t, b2, 1.0, 3, 0.0, -1.0) == child(s, b2, "C1")
    by_move = {to_gtp(c.move): c for c in s.children()}
    assert by_move["B2"].q == pytest.approx(1.4 / 3) and by_move["A2"].visits == 0


def test_puct_choice_follows_the_formula():
    s = search(Board(5, komi=0.5), Dummy(5, {"C3": 0.3, "B2": 0.1}, rest=0.02), c_puct=2.0, lambda_=0.5,
               batch_size=4, seed=1, expand_threshold=0)
    s.search(visits=120)
    t = s.tree
    expanded = [i for i in range(s.nodes) if t.first[i] >= 0 and t.N[i] > 3][:25]
    assert len(expanded) > 5
    for node in expanded:
        assert mcts.select_child(t, node, 2.0, 3, 0.0, -1.0) == puct_choice(t, node, 2.0)
        assert mcts.select_child(t, node, 2.0, 3, 0.0, 0.3) == puct_choice(t, node, 2.0, fpu_reduction=0.3)


def test_reduced_first_play_urgency_is_the_parents_q_less_the_visited_priors():
    # The root: 3 visits worth W = -1.2 for the opponent, so Q = 0.4 for black to move; children with priors
    # 0.5 (visited), 0.3 (visited) and the rest unvisited.
    t = mcts.new_tree(100)
    assert mcts.expand(t, 0, fb.new_board(3), 0.5)
    f, k = int(t.first[0]), int(t.count[0])
    t.P[f:f + k] = 0.2 / (k - 2)
    t.P[f], t.P[f + 1] = 0.5, 0.3
    t.N[0], t.W[0] = 3, -1.2
    t.N[f], t.W[f], t.N[f + 1], t.W[f + 1] = 2, 1.0, 1, 0.2
    assert mcts.unvisited_q(t, 0, 3, 0.0, -1.0) == 0.0
    assert mcts.unvisited_q(t, 0, 3, 0.0, 0.25) == pytest.approx(0.4 - 0.25 * math.sqrt(0.8))
    t.vl[f + 2] = 1  # a simulation in flight counts its child as visited
    assert mcts.unvisited_q(t, 0, 3, 0.0, 0.25) == pytest.approx(0.4 - 0.25 * math.sqrt(0.8 + t.P[f + 2]))
    t.N[0] = 0
    assert mcts.unvisited_q(t, 0, 3, -0.1, 0.25) == -0.1  # no visits of its own yet: the constant


def test_first_play_at_the_parents_q_widens_the_search_of_a_winning_side():
    # Every move wins for black (v = +0.2 after it, +0.6 at the root): an unvisited move valued at a draw looks
    # worse than any visited one; valued at the parent's Q (a reduction of 0) it looks better, so more get tried.
    def width(**fpu):
        s = search(Board(5, komi=0.5), Dummy(5, {"C3": 0.3, "B2": 0.1}, rest=0.02), c_puct=1.0,
                   lambda_=0.0, batch_size=1, seed=1, expand_threshold=0, rollouts=NoRollouts(), **fpu)
        s.search(visits=60)
        return sum(1 for c in s.children() if c.visits)

    assert width(fpu_reduction=0.0) > width()
    with pytest.raises(ValueError, match="fpu_reduction"):
        mcts.SearchConfig(fpu_reduction=-0.1)


def test_backup_signs_alternate():
    t = mcts.new_tree(100)
    b = fb.new_board(3)
    assert mcts.expand(t, 0, b, 0.5)
    a = int(t.first[0])
    fb.play(b, int(t.move[a]), fb.BLACK)
    assert mcts.expand(t, a, b, 0.5)
    c = int(t.first[a])
    t.vl[[0, a, c]] = 1  # one simulation in flight along root -> a -> c
    mcts.backup_batch(t, np.array([c], np.int32), np.array([1.0]), np.array([3.5]), 1, np.empty(0, np.int32), 0)
    # +1 for black to move at c: the mover into c (white) lost, the mover into a (black) won.
    assert (t.W[c], t.W[a], t.W[0]) == (-1.0, 1.0, -1.0)
    assert (t.S[c], t.S[a], t.S[0]) == (-3.5, 3.5, -3.5)
    assert (t.S2[c], t.SN[c], t.SN[0]) == (12.25, 1, 1)
    assert (t.N[c], t.N[a], t.N[0]) == (1, 1, 1) and not t.vl[:t.meta[mcts.T_USED]].any()
    t.vl[[0, a, c]] = 1
    mcts.backup_batch(t, np.array([c], np.int32), np.array([-1.0]), np.array([np.nan]), 1, np.empty(0, np.int32), 0)
    assert (t.W[c], t.N[c]) == (0.0, 2) and (t.S[c], t.SN[c]) == (-3.5, 1)  # no margin: values only


# -- batches and virtual loss -----------------------------------------------------------------------------


def test_virtual_loss_spreads_a_batch_over_distinct_leaves():
    s = search(Board(5, komi=0.5), Dummy(5), c_puct=1.0, lambda_=0.0, batch_size=4, expand_threshold=0,
               rollouts=NoRollouts())
    stats = s.search(visits=5)  # the root alone, then one batch of 4
    visited = [c for c in s.children() if c.visits]
    assert stats.batches == 2 and stats.collisions == 0
    assert len(visited) == 4 and all(c.visits == 1 for c in visited)
    assert not s.tree.vl[:s.nodes].any()


def test_collisions_evaluate_nothing_and_release_their_virtual_loss():
    # 2x2, never expanding below the root: a batch of 8 finds 4 distinct leaves (pass is banned: black is behind).
    s = search(Board(2, komi=0.5), Dummy(2), lambda_=0.0, batch_size=8, expand_threshold=100,
               rollouts=NoRollouts())
    stats = s.search(visits=9)
    assert stats.collisions > 0 and stats.simulations == 9
    assert sorted(c.visits for c in s.children()) == [2, 2, 2, 2]
    assert not s.tree.vl[:s.nodes].any()


def test_terminal_leaves_are_scored_exactly():
    board = Board.from_diagram(SPLIT, komi=0.5, to_move="B")
    board.pass_move()  # white to move after black's pass: white's pass ends the game, and white is ahead
    s = search(board, Dummy(5, pass_prior=1.0, vb=0.0, vw=0.0), lambda_=0.0, rollouts=NoRollouts())
    s.search(visits=30)
    p = s._child(0, fb.PASS)
    assert s.tree.N[p] > 0 and s.tree.W[p] == s.tree.N[p]  # every visit a win for white
    assert s.children()[0].move is None


# -- tree reuse, lambda, limits ---------------------------------------------------------------------------


def test_tree_reuse_keeps_the_played_childs_statistics():
    board = Board(5, komi=0.5)
    s = search(board, mcts.UniformEvaluator(5), lambda_=1.0, seed=3, batch_size=8)
    s.search(visits=300)
    t = s.tree
    best = s.children()[0].move
    x = child(s, 0, to_gtp(best))
    f, k = t.first[x], t.count[x]
    n_before, w_before = int(t.N[x]), float(t.W[x])
    kids = sorted(zip(t.move[f:f + k].tolist(), t.N[f:f + k].tolist()))
    board.play(best)
    assert s.set_root(board)
    f, k = t.first[0], t.count[0]
    assert (s.root_visits, t.W[0]) == (n_before, w_before)
    assert sorted(zip(t.move[f:f + k].tolist(), t.N[f:f + k].tolist())) == kids
    assert t.parent[0] == -1 and all(t.parent[j] == 0 for j in range(f, f + k))
    s.search(visits=n_before + 50)
    assert s.root_visits == n_before + 50
    assert not s.set_root(Board(5, komi=0.5)) and s.root_visits == 0  # not a continuation: a fresh tree


def test_lambda_zero_uses_the_value_net_only():
    ev = Dummy(5, vb=0.3, vw=0.1)
    s = search(Board(5, komi=0.5), ev, NoRollouts(), lambda_=0.0, expand_threshold=1)
    s.search(visits=60)
    t = s.tree
    leaves = [i for i in range(1, s.nodes) if t.N[i] == 1 and t.first[i] < 0]
    assert leaves and all(t.W[i] == pytest.approx(-t.value[i]) for i in leaves)
    assert ev.value_calls > 0


def test_rollouts_mix_in_only_once_the_moves_played_reach_rollouts_from():
    config = mcts.SearchConfig(lambda_=0.5, rollouts_from=0.25)
    assert config.values_leaves and not mcts.SearchConfig(lambda_=1.0).values_leaves
    assert [config.leaf_lambda(m, 4) for m in (0, 3, 4, 10)] == [0.0, 0.0, 0.5, 0.5]  # 4 of 16 points
    assert mcts.SearchConfig(lambda_=0.5).leaf_lambda(0, 9) == 0.5  # 0: from the first move, AlphaGo's rule
    board = Board(5, komi=0.5)
    ev = Dummy(5, vb=0.3, vw=0.1)
    s = search(board, ev, NoRollouts(), lambda_=1.0, rollouts_from=0.2, expand_threshold=1)  # 5 of 25 points
    s.search(visits=40)  # the empty board: the value net alone (NoRollouts fails if asked)
    t = s.tree
    leaves = [i for i in range(1, s.nodes) if t.N[i] == 1 and t.first[i] < 0]
    assert leaves and all(t.W[i] == pytest.approx(-t.value[i]) for i in leaves)
    for move in ((0, 0), (4, 4), (0, 4), (4, 0), (2, 2)):
        board.play(move)
    late = search(board, Dummy(5, vb=0.3, vw=0.1), lambda_=1.0, rollouts_from=0.2, seed=0)
    late.search(visits=40)
    w = late.tree.W[:late.nodes]
    assert np.all(w == np.round(w))  # 5 moves played: rollouts alone (lambda 1), sums of outcomes
    with pytest.raises(ValueError, match="value network"):
        mcts.MCTS(mcts.UniformEvaluator(5), mcts.SearchConfig(lambda_=1.0, rollouts_from=0.5))
    with pytest.raises(ValueError, match="rollouts_from"):
        mcts.SearchConfig(rollouts_from=-0.1)


class Recording(Dummy):
    """A Dummy that keeps every batch of planes the policy is asked about."""

    def __init__(self, size: int) -> None:
        super().__init__(size, vb=0.3, vw=-0.1)
        self.seen: list[np.ndarray] = []

    def policy(self, planes: np.ndarray) -> np.ndarray:
        self.seen.append(planes.copy())
        return super().policy(planes)


def test_a_leafs_planes_are_computed_once_and_kept_for_its_expansion(monkeypatch):
    """With a value net a leaf is valued at its first visit and expanded at its second: the planes computed for
    the value are the ones the policy gets (the same as computing them again), across a reroot too."""
    from gogame import features

    calls = [0]
    compute = features.compute_alphago

    def counting(*args):
        calls[0] += 1
        return compute(*args)

    monkeypatch.setattr(features, "compute_alphago", counting)

    def run() -> tuple[Recording, list[int], list[int]]:
        ev = Recording(5)
        s = search(Board(5, komi=0.5), ev, NoRollouts(), lambda_=0.0, expand_threshold=1, batch_size=4)
        counts = []
        for visits in (120, 200):
            calls[0] = 0
            s.search(visits=visits)
            t = s.tree
            counts.append(calls[0])
            if visits == 120:
                valued = int((~np.isnan(t.value[:s.nodes])).sum())
                expanded = int((t.first[:s.nodes] >= 0).sum())
                board = s.board.copy()
                board.play(s.children()[0].move)
                assert s.set_root(board)  # rerooted: the node numbers change
        return ev, counts, [valued, expanded]

    kept, kept_calls, (valued, expanded) = run()
    assert expanded > 10 and kept_calls[0] == valued  # once per leaf, the root included
    monkeypatch.setattr(mcts.KeptPlanes, "find", lambda self, nodes: np.full(len(nodes), -1))
    again, again_calls, _ = run()
    assert again_calls[0] == valued + expanded - 1  # the root needs both at its first visit, the others apart
    assert again_calls[1] > kept_calls[1]
    assert len(kept.seen) == len(again.seen)
    assert all(np.array_equal(a, b) for a, b in zip(kept.seen, again.seen))


def test_lambda_one_uses_rollouts_only():
    s = search(Board(5, komi=0.5), Dummy(5, has_value=False), lambda_=1.0, seed=0)
    s.search(visits=60)
    w = s.tree.W[:s.nodes]
    assert np.all(w == np.round(w))  # sums of rollout outcomes +1, 0, -1
    assert np.isnan(s.tree.value[:s.nodes]).all()


def test_scores_are_the_mean_rollout_margins_for_the_side_to_move():
    """An empty 5x5 board with komi 0.5: black to move. Every child's score is the mean area margin of the
    rollouts below it for black, between -25.5 and 24.5, and its sign agrees with its win rate."""
    s = search(Board(5, komi=0.5), Dummy(5, has_value=False), lambda_=1.0, seed=3)
    s.search(visits=200)
    children = [c for c in s.children() if c.visits >= 10]
    assert children
    for c in children:
        assert -25.5 <= c.score <= 24.5 and c.score_stdev >= 0
        if c.q > 0.5:
            assert c.score > 0
        if c.q < -0.5:
            assert c.score < 0
    t = s.tree
    j = next(j for j in range(1, s.nodes) if t.parent[j] == 0 and t.N[j] >= 10)
    assert t.SN[j] == t.N[j]  # with lambda 1 every visit brings a margin


def test_scores_are_nan_without_rollouts():
    s = search(Board(5, komi=0.5), Dummy(5, vb=0.3, vw=0.1), NoRollouts(), lambda_=0.0, expand_threshold=1)
    s.search(visits=30)
    assert all(math.isnan(c.score) and math.isnan(c.score_stdev) for c in s.children() if c.visits)


def test_lambda_below_one_needs_a_value_net():
    with pytest.raises(ValueError, match="value network"):
        mcts.MCTS(mcts.UniformEvaluator(5), mcts.SearchConfig(lambda_=0.5))
    with pytest.raises(ValueError, match="lambda_"):
        mcts.SearchConfig(lambda_=1.5)


def test_memory_bound_is_respected():
    s = search(Board(5, komi=0.5), mcts.UniformEvaluator(5), lambda_=1.0, max_nodes=60)
    stats = s.search(visits=300)
    assert s.nodes <= 60 and stats.full and s.root_visits == 300


def test_time_limit_is_respected():
    s = search(Board(5, komi=0.5), mcts.UniformEvaluator(5), lambda_=1.0, batch_size=8)
    start = time.perf_counter()
    stats = s.search(seconds=0.3)
    assert stats.stopped == "time" and time.perf_counter() - start >= 0.3  # not before its time; how long after
    # it depends on the machine's load, so no bound


def test_a_decided_search_stops_early_and_plays_the_full_searchs_move():
    """Seeded searches run the same batches, so the early stop is the full search cut short: once C3 leads the
    next move by more visits than are left, the full search's most visited move is C3 too."""
    board = Board.from_diagram(FIGHT, komi=0.5, to_move="B")
    full = search(board, mcts.UniformEvaluator(5), lambda_=1.0, seed=0, batch_size=8)
    assert full.search(visits=2000).stopped == "visits"
    early = search(board, mcts.UniformEvaluator(5), lambda_=1.0, seed=0, batch_size=8)
    stats = early.search(visits=2000, stop_when_decided=True)
    first, second = early.children()[:2]
    assert stats.stopped == "decided" and early.root_visits < 2000
    assert first.visits - second.visits > 2000 - early.root_visits
    assert first.visits - second.visits <= 2000 - early.root_visits + 8 * 2  # one batch earlier it was open
    assert first.move == full.children()[0].move == from_gtp("C3", 5)


def test_a_decided_timed_search_stops_before_its_time():
    """With 99% of the prior on C3 nearly every simulation goes there, so the lead passes what the rate can add in
    the time left at about half the time."""
    board = Board.from_diagram(FIGHT, komi=0.5, to_move="B")
    s = search(board, Dummy(5, {"C3": 99.0}, rest=0.01, has_value=False), lambda_=1.0, seed=0, batch_size=8)
    stats = s.search(seconds=4.0, stop_when_decided=True)
    assert stats.stopped == "decided"  # the decision, not the clock, ended it
    assert to_gtp(s.children()[0].move) == "C3" and stats.simulations >= 8 * mcts.DECIDED_MIN_BATCHES


def test_search_needs_a_limit_and_a_live_game():
    s = mcts.MCTS(mcts.UniformEvaluator(5), mcts.SearchConfig(lambda_=1.0, max_nodes=1000))
    with pytest.raises(ValueError, match="set_root"):
        s.search(visits=10)
    board = Board(5)
    board.pass_move()
    board.pass_move()
    s.set_root(board)
    with pytest.raises(ValueError, match="over"):
        s.search(visits=10)
    with pytest.raises(ValueError, match="visits"):
        s.search()


# -- root rules ---------------------------------------------------------------------------------------------


def test_pass_rules_score_the_board_as_it_stands():
    board = Board.from_diagram(SPLIT, komi=0.5, to_move="B")
    assert mcts.area_margin_for(board) == -5.5
    assert not mcts.pass_allowed(board) and not mcts.pass_wins(board)
    board.pass_move()  # now white, 5.5 ahead, after black's pass
    assert mcts.pass_allowed(board) and mcts.pass_wins(board)
    # White is 1.5 ahead as the board stands, but in cleanup mode black's D2 (in atari) must be taken first.
    dirty = Board.from_diagram(DIRTY, komi=0.5, to_move="W")
    assert mcts.area_margin_for(dirty) == 1.5
    assert mcts.pass_allowed(dirty) and not mcts.pass_allowed(dirty, cleanup=True)


def test_no_pass_when_passing_loses_on_area():
    board = Board.from_diagram(SPLIT, komi=0.5, to_move="W")
    board.pass_move()  # black to move after white's pass: passing now would lose by 5.5
    s = search(board, Dummy(5, pass_prior=1.0, vb=0.9, vw=-0.9), NoRollouts(), lambda_=0.0)
    s.search(visits=40)
    assert None not in [c.move for c in s.children()]
    assert None in [c.move for c in s.children(include_banned=True)]


def test_no_pass_into_a_lost_count_below_the_root():
    # White to move, 5.5 ahead as the board stands; the net passes wherever it can (as expert games end) and
    # values black to move at +0.9. Below white's pass black's pass would end the game lost: it is banned, so
    # black answers with a move, and white's pass is valued by the net (a loss for white), not by the count.
    board = Board.from_diagram(SPLIT, komi=0.5, to_move="W")
    s = search(board, Dummy(5, pass_prior=1.0, vb=0.9, vw=-0.9), NoRollouts(), lambda_=0.0, expand_threshold=0)
    s.search(visits=200)
    t = s.tree
    white_pass = s._child(0, fb.PASS)
    black_pass = s._child(white_pass, fb.PASS)
    assert t.N[white_pass] > 0 and t.first[white_pass] >= 0
    assert t.flags[black_pass] & mcts.BANNED and t.N[black_pass] == 0 and t.P[black_pass] == 0
    assert t.W[white_pass] / t.N[white_pass] < -0.5


@pytest.mark.parametrize("diagram, passer, banned", [
    (SPLIT, "B", False),  # white to move after black's pass, and ahead: passing back wins
    (SPLIT, "W", True),  # black to move after white's pass, and behind: passing back loses
    (".O\nO.", "W", False),  # black behind, but every point is suicide: pass is the only move
    (SPLIT, None, False),  # no pass before: the count does not end the game yet
])
def test_expansion_bans_only_a_pass_that_ends_the_game_lost(diagram, passer, banned):
    board = Board.from_diagram(diagram, komi=0.5, to_move=passer or "B")
    if passer:
        board.pass_move()
    t = mcts.new_tree(100)
    assert mcts.expand(t, 0, board.fast, 0.5)
    pass_child = int(t.first[0] + t.count[0] - 1)
    assert t.move[pass_child] == fb.PASS
    assert bool(t.flags[pass_child] & mcts.BANNED) == banned

    board = Board(3, komi=0.5)
    for move in ("A2", "B2", "B1", "B3", "A3", "A1"):
        board.play(move)
    # Black's A2 would capture A1 and repeat the position after B3: legal under simple ko, not superko.
    assert fb.is_legal(board.fast, board._index(from_gtp("A2", 3)), fb.BLACK) and not board.is_legal("A2")
    s = search(board, mcts.UniformEvaluator(3), lambda_=1.0)
    s.search(visits=50)
    assert "A2" not in [to_gtp(c.move) for c in s.children()]
    assert "A2" in [to_gtp(c.move) for c in s.children(include_banned=True)]


def test_dirichlet_noise_at_the_root_is_seeded():
    def priors(seed):
        s = search(Board(5, komi=0.5), Dummy(5), lambda_=0.0, rollouts=NoRollouts(), dirichlet_alpha=0.3,
                   seed=seed)
        s.search(visits=2)
        return np.array([c.prior for c in s.children(include_banned=True)])

    a, b = priors(7), priors(7)
    assert np.array_equal(a, b) and a.sum() == pytest.approx(1.0, abs=1e-5)
    assert a.std() > 0.005  # no longer the uniform 1/25
    assert not np.array_equal(a, priors(8))


@pytest.mark.parametrize("to_move", ["B", "W"])
def test_search_finds_the_capture_and_the_save(to_move):
    """Uniform priors, uniform rollouts: black captures A3-B3 at C3, white saves them at C3."""
    board = Board.from_diagram(FIGHT, komi=0.5, to_move=to_move)
    s = search(board, mcts.UniformEvaluator(5), lambda_=1.0, seed=0, batch_size=8)
    s.search(visits=400)
    best = s.children()
    assert to_gtp(best[0].move) == "C3" and best[0].visits > 2 * best[1].visits
    assert [to_gtp(m) for m in s.principal_variation(best[0].move)][0] == "C3"


def test_rollout_policy_playouts_drive_the_search_and_ownership():
    """The fast rollout policy's path (here with no patterns: every weight 0, so uniform moves)."""
    policy = ro.RolloutPolicy(np.zeros(0, np.int64), np.zeros(ro.N_FIXED))
    rollouts = mcts.Rollouts(policy, threads=2)
    board = Board.from_diagram(FIGHT, komi=0.5, to_move="B")
    s = search(board, mcts.UniformEvaluator(5), rollouts, lambda_=1.0, seed=0, batch_size=8)
    s.search(visits=300)
    assert to_gtp(s.children()[0].move) == "C3"
    own = rollouts.ownership(Board.from_diagram(ALIVE, komi=0.5), 20)
    assert own.shape == (5, 5) and np.all(own[:, :2] == 1) and np.all(own[:, 2:] == -1)



@pytest.mark.parametrize("policy", [None, ro.RolloutPolicy(np.zeros(0, np.int64), np.zeros(ro.N_FIXED))],
                         ids=["uniform", "rollout-policy"])
def test_margins_are_one_playout_each_seeded_by_its_number_whatever_the_threads(policy):
    settled = Board.from_diagram(ALIVE, komi=0.5)  # black 10 points, white 15, all alive
    assert np.all(mcts.Rollouts(policy, threads=2).margins(settled, 12) == 10 - 15 - 0.5)
    fight = Board.from_diagram(FIGHT, komi=0.5, to_move="B")
    before = fight.fast.colour.copy()
    one, two = mcts.Rollouts(policy, threads=1), mcts.Rollouts(policy, threads=2)
    margins = one.margins(fight, 16, seed=5)
    assert margins.shape == (16,) and np.array_equal(two.margins(fight, 16, seed=5), margins)
    assert np.array_equal(one.margins(fight, 4, seed=7), margins[2:6])  # playout i is seed + i
    assert len(set(margins.tolist())) > 1 and np.array_equal(fight.fast.colour, before)
    assert one.margins(fight, 0).shape == (0,)

def test_a_move_out_of_turn_starts_a_fresh_tree():
    board = Board(5, komi=0.5)
    s = search(board, mcts.UniformEvaluator(5), lambda_=1.0, seed=0)
    s.search(visits=100)
    best = s.children()[0].move
    board.play(best, "W")  # white plays first: the tree has this point as black's move
    assert not s.set_root(board) and s.root_visits == 0
