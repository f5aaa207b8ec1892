"""The rollout and tree policies: pattern keys, the incremental state, features, sampling, rollouts, training."""

import numpy as np
import pytest

from gogame import Board, coords, sgf
from gogame import fastboard as fb
from gogame import rollout as ro
from training.data.shards import split_of
from training.stages import rollout as rt
from training.stopping import RunStopped

NO_KEYS = np.zeros(0, np.int64)


def plain_tables(tree: bool = False, **weights: float) -> ro.Tables:
    """Tables with no pattern keys and the named fixed weights (``response=2.0``)."""
    w = np.zeros(ro.N_FIXED)
    for name, value in weights.items():
        w[ro.FIXED_NAMES.index(name)] = value
    return ro.make_tables(NO_KEYS, w, tree)


def state_of(board: Board, tables: ro.Tables) -> ro.PatternState:
    st = ro.new_state(board.fast)
    ro.init_state(st, tables, board.fast)
    return st


def random_game(size: int, moves: int, rng: np.random.Generator, local: float = 0.0) -> Board:
    """A game of random legal moves; with probability ``local`` a move next to the previous one if possible."""
    board = Board(size)
    last = None
    for _ in range(moves):
        legal = [coords.from_gtp(vertex, size) for vertex in board.legal_moves()]
        if not legal:
            break
        near = [p for p in legal if last and max(abs(p[0] - last[0]), abs(p[1] - last[1])) == 1]
        choice = near if near and rng.random() < local else legal
        last = choice[rng.integers(len(choice))]
        board.play(last)
    return board


def transformed(board: Board, k: int, flip: bool, swap: bool) -> tuple[Board, callable]:
    """``board`` rotated ``k`` quarter turns, then mirrored if ``flip``, colours swapped if ``swap``; and the map of
    points."""
    n = board.size
    index = np.arange(n * n).reshape(n, n)
    grid, index = np.rot90(board.stones(), k), np.rot90(index, k)
    if flip:
        grid, index = grid[:, ::-1], index[:, ::-1]
    if swap:
        grid = -grid
    where = {int(v): (int(r), int(c)) for (r, c), v in np.ndenumerate(index)}
    out = Board(n)
    out.setup(black=list(zip(*np.nonzero(grid == 1))), white=list(zip(*np.nonzero(grid == -1))))
    return out, lambda point: where[point[0] * n + point[1]]


# ------------------------------------------------------------------------------------------------ pattern keys

def test_hash_table_maps_known_keys_and_rejects_others():
    keys = np.array([3, 17, 1 << 60, 12345678901], np.int64)
    hkeys, hvals = ro.build_hash(keys, 100)
    tables = ro.make_tables(np.sort(keys), np.zeros(ro.N_FIXED + 4), False)
    for i, key in enumerate(np.sort(keys)):
        assert ro.lookup(tables, int(key)) == ro.N_FIXED + i
    for key in (0, 4, 18, (1 << 60) + 1):
        assert ro.lookup(tables, key) == -1
    assert sorted(hvals[hvals >= 0]) == [100, 101, 102, 103]


def test_empty_3x3_pattern_has_code_zero_and_stones_change_it():
    tables = plain_tables()
    board = Board(9)
    board.play((4, 4))
    st = state_of(board, tables)
    far = board._index((1, 7))
    near = board._index((4, 5))
    assert ro.key3(tables, ro.raw3(st, far), fb.WHITE) == ro.K_3X3 << ro.KIND_SHIFT
    assert ro.key3(tables, ro.raw3(st, near), fb.WHITE) != ro.key3(tables, ro.raw3(st, far), fb.WHITE)
    # the stone is the opponent's for white and white's own stone in the colour-swapped board
    assert ro.key3(tables, ro.raw3(st, near), fb.WHITE) != ro.key3(tables, ro.raw3(st, near), fb.BLACK)


@pytest.mark.parametrize("seed", range(3))
def test_pattern_keys_are_invariant_under_the_8_symmetries_and_colour_swap(seed):
    rng = np.random.default_rng(seed)
    board = random_game(9, 50, rng)
    tables = plain_tables(tree=True)
    st = state_of(board, tables)
    last = board.history[-1][1]
    mover = fb.BLACK if board.to_move == "B" else fb.WHITE
    points = [(r, c) for r in range(9) for c in range(9) if board.colour_at((r, c)) is None]

    def keys_of(b: Board, s: ro.PatternState, c: int, where) -> dict:
        n = ro.response_context(s, tables, b.fast, c)
        response = {b._point(int(s.ctx[0, j])): int(s.ctx[1, j]) for j in range(n)}
        out = {}
        for point in points:
            q = b._index(where(point))
            out[point] = (ro.key3(tables, ro.raw3(s, q), c), ro.key12(s, tables, ro.raw12(s, q), c),
                          response.get(where(point)))
        return out

    reference = keys_of(board, st, mover, lambda p: p)
    assert any(v[2] is not None for v in reference.values())  # the diamond around the last move
    assert len({v[0] for v in reference.values()}) > 5  # the keys do tell patterns apart
    for k in range(4):
        for flip in (False, True):
            for swap in (False, True):
                other, where = transformed(board, k, flip, swap)
                other.fast.meta[fb.M_LAST] = other._index(where(last))
                c = 3 - mover if swap else mover
                assert keys_of(other, state_of(other, tables), c, where) == reference


# ------------------------------------------------------------------------------------------------ move flags, nakade

@pytest.mark.parametrize("seed", range(4))
def test_move_flags_agree_with_the_board(seed):
    board = random_game(7, 60, np.random.default_rng(seed))
    st = state_of(board, plain_tables())
    f = board.fast
    for p in np.flatnonzero(f.colour == fb.EMPTY):
        for c in (fb.BLACK, fb.WHITE):
            flags = st.flags[c - 1, p]
            assert bool(flags & ro.LEGAL) == (not fb.is_suicide(f, int(p), c))
            assert bool(flags & ro.EYE) == fb.is_eyelike(f, int(p), c)


@pytest.mark.parametrize(
    "diagram,vital",
    [
        # straight three: the middle
        (". . . . .\nX X X X X\nX . . . X\nX X X X X\n. . . . .", (2, 2)),
        # bent three: the bend
        (". . . . .\nX X X X .\nX . . X .\nX . X X .\nX X X . .", (2, 1)),
        # pyramid four: the centre
        (". . . . .\nX X X X X\nX . . . X\nX X . X X\n. X X X .", (2, 2)),
        # crossed five: the centre
        ("X X X X X\nX X . X X\nX . . . X\nX X . X X\nX X X X X", (2, 2)),
        # bulky five: the point beside the extra one
        ("X X X X X\nX . . X X\nX . . . X\nX X X X X\n. . . . .", (2, 2)),
        # rabbity six
        ("X X X X X\nX X . X X\nX . . . X\nX X . . X\nX X X X X", (2, 2)),
    ],
)
def test_nakade_flags_the_vital_point(diagram, vital):
    board = Board.from_diagram(diagram)
    st = state_of(board, plain_tables())
    flagged = [board._point(int(q)) for q in np.flatnonzero(st.region_of == np.arange(st.region_of.size))]
    assert flagged == [vital]


@pytest.mark.parametrize(
    "diagram",
    [
        ". . . . . .\nX X X X X X\nX . . . . X\nX X X X X X\n. . . . . .\n. . . . . .",  # straight four
        ". . . . .\nX X X X .\nX . . X .\nX . . X .\nX X X X .",  # square four: no vital point
        ". . . . .\nX X X X X\nX . . . O\nX X X X X\n. . . . .",  # bordered by both colours
        ". . . . .\nX X X X .\nX . . X .\nX X X X .\n. . . . .",  # two points: too small
    ],
)
def test_no_nakade_without_a_killing_shape(diagram):
    st = state_of(Board.from_diagram(diagram), plain_tables())
    assert (st.region_of < 0).all()


SAVE_DIAGRAM = """
    . . . . . .
    . . O . . .
    . O X . . .
    . . O . . .
    . . . . X .
    . . . X O .
    """


def test_save_atari_and_self_atari():
    board = Board.from_diagram(SAVE_DIAGRAM)
    st = state_of(board, plain_tables())
    black, white = 0, 1
    assert st.flags[black, board._index((3, 3))] & ro.SAVE  # D4: the C4 stone in atari runs to three liberties
    assert not st.flags[black, board._index((4, 4))] & ro.SAVE  # E5 is not next to it
    assert not st.flags[white, board._index((0, 5))] & ro.SAVE  # F1 leaves white's E1 chain one liberty
    assert ro.self_atari(board.fast, board._index((0, 5)), fb.WHITE)
    assert not ro.self_atari(board.fast, board._index((1, 5)), fb.WHITE)  # F2: two liberties
    assert not ro.self_atari(board.fast, board._index((0, 5)), fb.BLACK)  # F1 for black captures E1
    assert not ro.self_atari(board.fast, board._index((3, 3)), fb.BLACK)


# ------------------------------------------------------------------------------------------------ incremental state

def compare_states(st: ro.PatternState, ref: ro.PatternState) -> None:
    assert (st.cell == ref.cell).all()
    assert (st.pat == ref.pat).all()
    assert (st.flags == ref.flags).all()
    assert np.allclose(st.wexp, ref.wexp)
    assert np.allclose(st.total, ref.total)
    assert (st.region_of == ref.region_of).all()
    for v in np.flatnonzero(ref.region_of == np.arange(ref.region_of.size)):
        assert set(st.region_pts[v, : st.region_n[v]]) == set(ref.region_pts[v, : ref.region_n[v]])


def harvested_tables(rng: np.random.Generator) -> ro.Tables:
    """Tables that know the 3x3 keys of a few random positions, with random weights."""
    keys = set()
    for seed in range(3):
        board = random_game(7, 40, np.random.default_rng(seed))
        st = state_of(board, plain_tables())
        for p in np.flatnonzero(board.fast.colour == fb.EMPTY):
            for c in (fb.BLACK, fb.WHITE):
                keys.add(ro.key3(plain_tables(), ro.raw3(st, int(p)), c))
    keys = np.array(sorted(keys), np.int64)
    return ro.make_tables(keys, rng.normal(0, 1, ro.N_FIXED + keys.size), False)


def test_incremental_state_equals_recomputation_after_every_move():
    rng = np.random.default_rng(7)
    tables = harvested_tables(rng)
    flagged = captures = 0
    for size in (5, 6, 7, 9, 5, 7):
        board = Board(size)
        f = fb.copy_board(board.fast)
        st = ro.new_state(f)
        ro.init_state(st, tables, f)
        for _ in range(3 * size * size):
            c = int(f.meta[fb.M_TO_MOVE])
            legal = [int(p) for p in np.flatnonzero(f.colour == fb.EMPTY) if fb.is_legal(f, int(p), c)]
            p = int(rng.choice(legal)) if legal and rng.random() > 0.05 else fb.PASS
            before = int(f.meta[fb.M_CAPTURES + c])
            ro.state_play(st, tables, f, p, c)
            captures += int(f.meta[fb.M_CAPTURES + c]) > before
            ref = ro.new_state(f)
            ro.init_state(ref, tables, f)
            compare_states(st, ref)
            flagged += int((ref.region_of >= 0).any())
            if f.meta[fb.M_PASSES] >= 2:
                break
    assert captures > 20 and flagged > 5  # the run did exercise captures and nakade regions


# ------------------------------------------------------------------------------------------------ the policy

def test_zero_weights_give_a_uniform_policy_over_legal_moves_ko_excluded():
    board = Board.from_diagram(
        """
        . X O . .
        X O . O .
        . X O . .
        . . . . .
        . . . . .
        """
    )
    board.play("C4")  # captures B4; white may not retake at once
    assert board.ko_point == (3, 1)
    probs = ro.RolloutPolicy(NO_KEYS, np.zeros(ro.N_FIXED)).probabilities(board)
    legal = np.array([board.is_legal((r, c)) for r in range(5) for c in range(5)])
    assert probs.shape == (26,) and probs[-1] == 0.0 and not legal[3 * 5 + 1]
    assert np.allclose(probs[:-1][legal], 1 / legal.sum()) and (probs[:-1][~legal] == 0).all()


def test_response_and_neighbour_weights_raise_moves_near_the_last_move():
    board = Board(9)
    board.play((4, 4))
    policy = ro.RolloutPolicy(NO_KEYS, plain_tables(response=1.0, neighbour=0.5).w)
    probs = policy.probabilities(board).reshape(-1)[:-1].reshape(9, 9)
    base = probs[0, 0]
    assert np.isclose(probs[4, 6], base * np.e)  # distance 2: response only
    assert np.isclose(probs[5, 5], base * np.e ** 1.5)  # diagonal neighbour
    assert np.isclose(probs[4, 5], base * np.e ** 1.5)
    assert np.isclose(probs[6, 5], base)  # knight's move: outside the diamond


def test_tree_policy_distance_and_self_atari_features():
    board = Board(9)
    board.play((4, 4))
    board.play((0, 0))
    w = plain_tables(tree=True).w.copy()
    w[ro.F_DISTANCE + 3] = 1.0  # distance 3 from the last move (A1)
    policy = ro.RolloutPolicy(NO_KEYS, w, tree=True)
    probs = policy.probabilities(board)[:-1].reshape(9, 9)
    assert np.isclose(probs[0, 3], probs[8, 8] * np.e) and np.isclose(probs[2, 1], probs[8, 8] * np.e)
    w[:] = 0.0
    w[ro.F_SELF_ATARI] = -2.0
    board = Board.from_diagram(SAVE_DIAGRAM, to_move="W")
    probs = ro.RolloutPolicy(NO_KEYS, w, tree=True).probabilities(board)[:-1].reshape(6, 6)
    assert np.isclose(probs[0, 5], probs[5, 5] * np.exp(-2.0))


def test_sampling_follows_the_probabilities():
    board = Board(5)
    board.play((2, 2))
    policy = ro.RolloutPolicy(NO_KEYS, plain_tables(response=1.5, neighbour=-1.0).w)
    probs = policy.probabilities(board)
    counts = np.zeros(26)
    n = 3000
    for seed in range(n):
        (_, move), *_ = policy.playout(board, seed=seed, max_moves=1)
        counts[25 if move is None else move[0] * 5 + move[1]] += 1
    assert np.abs(counts / n - probs).max() < 0.02


def test_save_and_load_round_trip(tmp_path):
    keys = np.array([5, 9, 11], np.int64)
    policy = ro.RolloutPolicy(keys, np.arange(ro.N_FIXED + 3) / 10, tree=True, info={"heldout_accuracy": 0.25})
    path = tmp_path / "p.npz"
    policy.save(path)
    again = ro.RolloutPolicy.load(path)
    assert again.tree and (again.keys == keys).all() and np.allclose(again.weights, policy.weights)
    assert again.info == {"heldout_accuracy": 0.25}
    with pytest.raises(ValueError):
        ro.RolloutPolicy(keys[::-1], policy.weights)


# ------------------------------------------------------------------------------------------------ rollouts

@pytest.fixture(scope="module")
def default_policy() -> ro.RolloutPolicy:
    return ro.RolloutPolicy.load()


def test_rollout_moves_are_legal_skip_own_eyes_and_score_like_the_board(default_policy):
    start = Board(9)
    for move in ("E5", "C3", "G7"):
        start.play(move)
    for seed in range(4):
        board = start.copy()
        moves = default_policy.playout(board, seed=seed)
        for colour, move in moves:
            if move is not None:
                c = fb.BLACK if colour == "B" else fb.WHITE
                assert not fb.is_eyelike(board.fast, board._index(move), c)
            board.play(move, colour)
        assert board.is_over()
        assert default_policy.rollout(start, seed=seed) == board.score()
        assert ro.area_margin(board.fast, 7.5) == board.score()


def test_rollouts_from_a_clearly_won_position_mostly_win(default_policy):
    board = Board.from_diagram(
        """
        X X X X X X X X X
        X . . . X X X . X
        X . . . X X X X X
        X X X X X X X X X
        X X X X X X X X X
        X X X X X X X X X
        O O O O O O O O O
        O . O O O . O . O
        . . . O O O . . .
        """,
        komi=7.5,
        to_move="W",
    )  # both sides alive, 54 points to 27: black wins by 19.5 however the eye spaces are filled
    outcomes = default_policy.rollouts(board, 40, seed=1)
    assert (outcomes > 0).mean() >= 0.9 and np.median(outcomes) == 19.5


def test_threads_give_the_same_outcomes_as_serial(default_policy):
    board = Board(9)
    serial = default_policy.rollouts(board, 12, threads=1, seed=5)
    assert (default_policy.rollouts(board, 12, threads=3, seed=5) == serial).all()
    assert default_policy.rollout(board, seed=7) == serial[2]
    assert len(set(serial)) > 3


def test_a_tree_policy_does_not_roll_out():
    with pytest.raises(ValueError):
        ro.RolloutPolicy(NO_KEYS, np.zeros(ro.N_FIXED), tree=True).rollout(Board(9))


# ------------------------------------------------------------------------------------------------ training

def fixture_games(n: int) -> list[sgf.Game]:
    """Random 9x9 games where most moves answer next to the previous one: a pattern worth learning."""
    rng = np.random.default_rng(11)
    return [sgf.Game.from_moves(random_game(9, 50, rng, local=0.7).history, size=9) for _ in range(n)]


def test_training_lowers_the_loss():
    fixture = fixture_games(6)
    games = rt.GameSet.from_games(fixture, 9)
    keys = rt.harvest(games, False, 1)
    untrained = ro.RolloutPolicy(keys, np.zeros(ro.N_FIXED + keys.size))
    accuracy0, loss0, positions = rt.evaluate(untrained, games)
    # with all logits 0 every legal move ties: accuracy is the mean of 1/n and the loss the mean of log n
    counts = []
    for game in fixture:
        for board, _, move in game.replay():
            if move is not None:
                counts.append(np.count_nonzero(untrained.probabilities(board)))
    assert positions == games.positions() == len(counts)
    assert np.isclose(accuracy0, np.mean(1 / np.array(counts))) and np.isclose(loss0, np.mean(np.log(counts)))
    trained = rt.train(games, epochs=3, lr=0.2, min_count=1, log=lambda line: None)
    accuracy, loss, _ = rt.evaluate(trained, games)
    assert loss < loss0 - 0.3 and accuracy > accuracy0
    assert trained.weights[ro.F_NEIGHBOUR] + trained.weights[ro.F_RESPONSE] > 0.5
    tree = rt.train(games, tree=True, epochs=2, lr=0.2, min_count=1, log=lambda line: None)
    assert rt.evaluate(tree, games)[1] < loss0 - 0.3


def test_a_stopped_training_resumes_to_the_weights_of_an_unbroken_one(tmp_path, monkeypatch):
    games = rt.GameSet.from_games(fixture_games(9), 9)
    settings = {"epochs": 2, "lr": 0.2, "min_count": 1, "seed": 4, "log": lambda line: None}
    whole = rt.train(games, **settings)
    monkeypatch.setattr(rt, "CHUNK_GAMES", 2)
    partial = tmp_path / "rollout.partial.npz"
    stops = 0
    while True:
        try:
            parts = rt.train(games, **settings, partial=partial, resume=True, stop_after_minutes=1e-9)
            break
        except RunStopped as stop:  # after every chunk: 5 chunks an epoch, 2 epochs
            stops += 1
            assert stop.reason == "time limit" and partial.exists()
    assert stops == 9 and not partial.exists()  # the last chunk ends the run and removes the partial file
    assert np.array_equal(whole.keys, parts.keys) and np.array_equal(whole.weights, parts.weights)
    with pytest.raises(RunStopped):
        rt.train(games, **settings, partial=partial, stop_after_minutes=1e-9)
    with pytest.raises(ValueError, match="other games or settings"):
        rt.train(games, **{**settings, "lr": 0.1}, partial=partial, resume=True)


def test_the_replay_stops_before_each_stone_move_until_a_games_first_illegal_one():
    # game 0: setup, a pass to skip, then W[aa] on a stone: the game ends there, before B[cc]
    records = sgf.loads("(;SZ[9]AB[ee];B[aa];W[];B[bb];W[aa];B[cc])(;SZ[9];B[cc];W[dd])")
    games = rt.GameSet.from_games(records, 9)
    template = fb.new_board(9)
    b = fb.copy_board(template)
    tables = plain_tables()
    st = ro.new_state(b)
    cursor = rt._new_cursor()
    order = np.array([1, 0], np.int64)
    visited = []
    while (i := rt._next_expert_move(cursor, b, st, template, tables, order, *games.arrays())) >= 0:
        g = int(np.searchsorted(games.move_start, i, side="right")) - 1
        n = int(i - games.move_start[g])
        assert np.array_equal(b.colour, records[g].board_at(n).fast.colour)
        assert np.array_equal(st.cell, state_of(records[g].board_at(n), tables).cell)
        visited.append((g, n))
    assert visited == [(1, 0), (1, 1), (0, 0), (0, 2)]
    assert rt._next_expert_move(cursor, b, st, template, tables, order, *games.arrays()) == -1


def test_harvest_keeps_keys_seen_often_enough():
    games = rt.GameSet.from_games(fixture_games(2), 9)
    every = rt.harvest(games, False, 1)
    common = rt.harvest(games, False, 3)
    assert set(common) < set(every) and (np.diff(every) > 0).all()
    kinds = set((every >> ro.KIND_SHIFT).tolist())
    assert kinds == {ro.K_3X3, ro.K_RESPONSE}
    assert set((rt.harvest(games, True, 1) >> ro.KIND_SHIFT).tolist()) == {ro.K_3X3, ro.K_RESPONSE, ro.K_DIAMOND}


def test_games_split_like_the_dataset_builder(tmp_path):
    for i, game in enumerate(fixture_games(8)):
        (tmp_path / f"{i}.sgf").write_text(sgf.dumps(game))
    train, held = rt.load_games([tmp_path], 9, eval_games=8, test=0.4, val=0.2)
    split = {str(tmp_path / f"{i}.sgf"): split_of(str(tmp_path / f"{i}.sgf"), 0, 0.2, 0.4) for i in range(8)}
    assert sorted(train.names) == sorted(n for n, s in split.items() if s == "train")
    assert sorted(held.names) == sorted(n for n, s in split.items() if s == "test")
    assert len(rt.load_games([tmp_path], 9, games=1)[0]) == 1 and not len(rt.load_games([tmp_path], 19)[0])
