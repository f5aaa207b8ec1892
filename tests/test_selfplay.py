"""The batched game player, the value-data plan and the selfplay command (workers, shards, resume after kill)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gogame import coords, nets, sgf
from gogame.api import Engine
from gogame.board import Board
from training.cli import main as train_main
from training.data import shards
from training.stages import selfplay

REPO = Path(__file__).resolve().parents[1]
SIZE = 5


def tiny_policy(seed: int = 0) -> nets.PolicyNet:
    torch.manual_seed(seed)
    return nets.build("policy", 48, SIZE, "tiny").eval()


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nets") / "policy5.pt"
    nets.save(tiny_policy(), path, features="alphago48")
    return path


def test_games_are_played_out_without_passing_while_a_sensible_move_is_left():
    games = selfplay.play_games([selfplay.NetPlayer(tiny_policy())], [selfplay.Plan()] * 6, size=SIZE,
                                rng=np.random.default_rng(0))
    for game in games:
        assert len(game.history) <= 2 * SIZE * SIZE and game.positions == list(range(len(game.history)))
        for move, sensible in zip(game.moves, game.sensible):
            assert (move == SIZE * SIZE) == (not sensible.any())  # pass exactly when nothing sensible is left
            assert move == SIZE * SIZE or sensible[move]
        assert game.outcome("B") == -game.outcome("W") == np.sign(game.margin)
        assert sgf.loads(sgf.dumps(game.to_sgf("g")))[0].moves == game.history


def test_seats_and_records_follow_the_plan():
    # player 1 passes whenever it is asked
    class Passer:
        def choose(self, boards, planes, sensible, rng):
            return np.full(len(boards), SIZE * SIZE)

    plan = selfplay.Plan(black=0, white=1, record="black")
    game, = selfplay.play_games([selfplay.NetPlayer(tiny_policy()), Passer()], [plan], size=SIZE,
                                max_moves=12, rng=np.random.default_rng(1))
    assert all(move is None for colour, move in game.history if colour == "W")
    assert all(move is not None for colour, move in game.history if colour == "B")
    assert game.positions == list(range(0, len(game.history), 2))


def test_value_plan_keeps_exactly_the_position_after_the_random_move():
    spec = selfplay.GameSpec(SIZE, ("sl.pt", "rl.pt"), "value", max_u=8)
    rng = np.random.default_rng(2)
    plans = spec.plans(40, rng)
    assert {p.random_at + 1 for p in plans} <= set(range(1, 9)) and len({p.random_at for p in plans}) > 3
    players = [selfplay.NetPlayer(tiny_policy(0)), selfplay.NetPlayer(tiny_policy(1))]
    games = selfplay.play_games(players, plans, size=SIZE, rng=rng)
    for plan, game in zip(plans, games):
        u = plan.random_at + 1
        assert game.positions == [u]  # one position per game: after move U (moves are counted from 1)
    arrays = selfplay.shard_arrays([(f"g{i}", g) for i, g in enumerate(games)])
    assert arrays["move"].size == len(games) == arrays["game_name"].size
    for row, (plan, game) in enumerate(zip(plans, games)):
        assert arrays["move_number"][row] == plan.random_at + 1
        mover = game.history[plan.random_at + 1][0]
        assert arrays["outcome"][row] == game.outcome(mover)
    unpacked = shards.unpack_planes(torch.from_numpy(arrays["planes"]), 49, SIZE)
    assert torch.equal(unpacked, torch.from_numpy(np.stack([g.planes[0] for g in games])).float())


def test_shards_carry_the_final_area_from_the_movers_side():
    games = selfplay.play_games([selfplay.NetPlayer(tiny_policy())], [selfplay.Plan()] * 4, size=SIZE,
                                rng=np.random.default_rng(3))
    arrays = selfplay.shard_arrays([(f"g{i}", g) for i, g in enumerate(games)])
    assert arrays[shards.OWNERSHIP].shape == (arrays["move"].size, SIZE * SIZE)
    for row, (g, i) in enumerate((g, i) for g in range(len(games)) for i in games[g].positions):
        game = games[g]
        replayed = Board(SIZE, game.komi)
        for colour, move in game.history:
            replayed.play(move, colour)
        sign = 1 if game.history[i][0] == "B" else -1
        assert np.array_equal(arrays[shards.OWNERSHIP][row], sign * replayed.ownership().ravel())
        # the mover's area less the opponent's, less the komi the mover gives, decides its outcome
        margin = arrays[shards.OWNERSHIP][row].sum() - sign * game.komi
        assert np.sign(margin) == arrays["outcome"][row]


def test_plans_reject_unknown_players_and_records():
    with pytest.raises(ValueError, match="record"):
        selfplay.Plan(record="both")
    with pytest.raises(ValueError, match="player"):
        selfplay.play_games([selfplay.NetPlayer(tiny_policy())], [selfplay.Plan(white=1)], size=SIZE,
                            rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="policy files"):
        selfplay.GameSpec(SIZE, ("a.pt",), "value", max_u=3)


def _done(out: Path) -> list[Path]:
    return sorted(out.glob("*.done"))


def test_selfplay_resumes_after_a_kill_without_losing_or_duplicating_games(policy_file, tmp_path):
    out = tmp_path / "sp"
    args = ["selfplay", "--size", str(SIZE), "--weights", str(policy_file), "--games", "16", "--games-per-shard",
            "2", "--out", str(out), "--max-moves", "30", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", *args, "--workers", "2"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(_done(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the pool's workers too
        proc.wait()
    assert 2 <= len(_done(out)) < 8, "kill the run part way through"
    assert train_main(args) == 0
    assert len(_done(out)) == 8
    names = [g.get("GN") for f in sorted((out / "sgf").glob("*.sgf")) for g in sgf.load(f)]
    assert len(names) == len(set(names)) == 16
    paths = shards.shard_paths(out, "train") + shards.shard_paths(out, "val")
    stored = {str(n) for p in paths for n in shards.load_shard(p)["game_name"]}
    assert stored == set(names)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["games"] == 16 and summary["moves"] == sum(len(g.moves) for f in (out / "sgf").glob("*.sgf")
                                                                for g in sgf.load(f))
    assert shards.dataset_meta(out)["features"] == "alphago49"
    batches = shards.PositionBatches(paths, 8)
    assert len(batches) == summary["moves"]  # every position, passes included
    assert train_main(args) == 0  # nothing left to play: the summary keeps the rates of the run that played
    assert json.loads((out / "summary.json").read_text()) == summary


def test_a_folder_refuses_games_made_with_other_settings(policy_file, tmp_path):
    spec = selfplay.GameSpec(SIZE, (str(policy_file),), max_moves=4)
    selfplay.generate(tmp_path, spec, 2, games_per_shard=2, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        selfplay.generate(tmp_path, spec, 2, games_per_shard=1, progress=False)


def test_a_bad_weights_file_fails_before_the_folder_records_settings(policy_file, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="TYPO.pt"):  # once: meta.json written first, then the corrected run refused
        train_main(["selfplay", "--size", str(SIZE), "--weights", str(tmp_path / "TYPO.pt"), "--out", str(out),
                    "--games", "1", "--max-moves", "4", "--no-progress"])
    assert not (out / "meta.json").exists()
    assert train_main(["selfplay", "--size", str(SIZE), "--weights", str(policy_file), "--out", str(out),
                       "--games", "1", "--max-moves", "4", "--no-progress"]) == 0


def test_a_dual_net_plays_search_games_valued_by_its_own_head(policy_file, tmp_path):
    torch.manual_seed(0)
    dual = tmp_path / "dual5.pt"
    nets.save(nets.build("dual", 49, SIZE, "b2c16"), dual, features="alphago49")
    out = tmp_path / "sp"
    search = ["--visits", "8", "--lambda", "0", "--c-puct", "2", "--fpu-reduction", "0.2"]
    assert train_main(["selfplay", "--size", str(SIZE), "--weights", str(dual), *search, "--games", "2",
                       "--games-per-shard", "2", "--max-moves", "12", "--out", str(out), "--no-progress"]) == 0
    spec = json.loads((out / "meta.json").read_text())["spec"]
    assert (spec["lambda_"], spec["c_puct"], spec["fpu_reduction"]) == (0.0, 2.0, 0.2)
    player, = selfplay._players(selfplay.GameSpec(**{**spec, "policies": tuple(spec["policies"])}))
    config = player.engine.config
    assert (config.lambda_, config.c_puct, config.fpu_reduction) == (0.0, 2.0, 0.2)
    assert player.engine.evaluator.has_value  # the leaves' values come from the dual net's head
    games = [g for f in sorted((out / "sgf").glob("*.sgf")) for g in sgf.load(f)]
    assert len(games) == 2 and all(v is not None for g in games for v in g.move_property(shards.SEARCH_VALUE))
    base = ["selfplay", "--size", str(SIZE), "--games", "1", "--max-moves", "4", "--no-progress"]
    with pytest.raises(SystemExit, match="need visits"):
        train_main([*base, "--weights", str(policy_file), "--lambda", "0.5", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="value network"):  # a policy net has no value head to mix in
        train_main([*base, "--weights", str(policy_file), *search, "--out", str(tmp_path / "b")])
    value = tmp_path / "value5.pt"
    nets.save(nets.build("value", 49, SIZE, "tiny"), value, features="alphago49")
    with pytest.raises(SystemExit, match="holds a value network"):
        train_main([*base, "--weights", str(value), "--visits", "8", "--out", str(tmp_path / "c")])


def test_search_player_plays_mcts_moves():
    engine = Engine(tiny_policy(), None, visits=8, threads=1, seed=0)
    game, = selfplay.play_games([selfplay.SearchPlayer(engine, 8)], [selfplay.Plan()], size=SIZE, max_moves=6,
                                rng=np.random.default_rng(0))
    assert len(game.history) == len(game.moves) == 6 and game.moves[0] != SIZE * SIZE


def test_search_player_draws_its_first_moves_by_visits_then_plays_the_most_visited():
    engine = Engine(tiny_policy(), None, visits=16, threads=1, seed=0)
    player = selfplay.SearchPlayer(engine, 16, sample_moves=1)
    rng = np.random.default_rng(0)
    firsts = {player._move(Board(SIZE), rng)[0] for _ in range(10)}
    assert len(firsts) > 1  # drawn, not the argmax every time
    board = Board(SIZE)
    board.play(coords.from_flat(sorted(firsts)[0], SIZE))
    best = engine.analyze(board, 16, stop_when_decided=True).move
    assert player._move(board, rng)[0] == coords.to_flat(coords.parse_move(best, SIZE), SIZE)
    with pytest.raises(ValueError, match="sample_moves"):
        selfplay.SearchPlayer(engine, 16, sample_moves=-1)


def test_search_games_record_blacks_win_rate_and_the_roots_visits_by_each_search_in_their_sgf():
    engine = Engine(tiny_policy(), None, visits=8, threads=1, seed=0)
    searches, visits = {}, {}
    engine_analyze = engine.analyze

    def analyze(board, *args, **kwargs):
        analysis = engine_analyze(board, *args, **kwargs)
        searches[board.move_number] = analysis.winrate_black
        visits[board.move_number] = {coords.to_flat(coords.parse_move(c.move, SIZE), SIZE): c.visits
                                     for c in analysis.candidates}
        return analysis

    engine.analyze = analyze
    player = selfplay.SearchPlayer(engine, 8, decided_below=0.49, finisher=selfplay.NetPlayer(tiny_policy()))
    game, = selfplay.play_games([player], [selfplay.Plan()], size=SIZE, max_moves=20, rng=np.random.default_rng(3))
    assert game.search_values == searches and list(searches) == [0]  # one search, then the finisher: no value
    assert game.search_visits == visits and len(visits[0]) > 1
    record = sgf.loads(sgf.dumps(game.to_sgf("g")))[0]
    values = record.move_property(shards.SEARCH_VALUE)
    assert values == [None if i not in searches else f"{searches[i]:.4f}" for i in range(len(game.history))]
    first, *rest = record.move_property(shards.SEARCH_VISITS)
    moves, shares = shards.parse_visits(first, SIZE)
    assert dict(zip(moves.tolist(), shares.tolist())) == pytest.approx(
        {m: n / sum(visits[0].values()) for m, n in visits[0].items()})
    assert rest == [None] * len(rest)


def test_a_decided_game_is_finished_by_the_raw_net_to_its_end():
    engine = Engine(tiny_policy(), None, visits=8, threads=1, seed=0)
    finisher = selfplay.NetPlayer(tiny_policy())
    searches = []
    engine_analyze = engine.analyze
    engine.analyze = lambda board, *args, **kwargs: searches.append(board.move_number) or engine_analyze(
        board, *args, **kwargs)
    player = selfplay.SearchPlayer(engine, 8, decided_below=0.49, finisher=finisher)  # every position is decided
    game, = selfplay.play_games([player], [selfplay.Plan()], size=SIZE, rng=np.random.default_rng(0))
    assert searches == [0]  # one search, then the net
    assert game.history[-2:] == [("B", None), ("W", None)] or game.history[-2:] == [("W", None), ("B", None)]
    with pytest.raises(ValueError, match="finisher"):
        selfplay.SearchPlayer(engine, 8, decided_below=0.1)


def test_games_from_start_boards_continue_them_and_record_none_keeps_only_the_outcome():
    start = Board(SIZE)
    for move in ("C3", "D4", "B2"):
        start.play(move)
    games = selfplay.play_games([selfplay.NetPlayer(tiny_policy())], [selfplay.Plan(record="none")] * 3,
                                size=SIZE, rng=np.random.default_rng(2), starts=[start] * 3)
    for game in games:
        assert game.history[:3] == start.history and len(game.history) > 3
        assert game.positions == [] and game.planes == []
    assert start.move_number == 3  # the start board itself is not played on
    with pytest.raises(ValueError, match="start board"):
        selfplay.play_games([selfplay.NetPlayer(tiny_policy())], [selfplay.Plan()], size=SIZE,
                            rng=np.random.default_rng(0), starts=[Board(SIZE + 2)])
    over = Board(SIZE)
    over.pass_move()
    over.pass_move()
    with pytest.raises(ValueError, match="already over"):
        selfplay.play_games([selfplay.NetPlayer(tiny_policy())], [selfplay.Plan()], size=SIZE,
                            rng=np.random.default_rng(0), starts=[over])


def test_games_begin_with_the_first_moves_of_an_opening_archive(policy_file, tmp_path):
    openings = tmp_path / "openings.sgf"
    openings.write_text("(;GM[1]FF[4]SZ[5]KM[7.5];B[cc];W[bd];B[db];W[cd];B[dc];W[bb])"  # the one line kept
                        "(;GM[1]FF[4]SZ[5]KM[7.5]AB[aa];B[ee];W[ea])"  # setup stones: no opening
                        "(;GM[1]FF[4]SZ[5]KM[7.5];B[];W[bb])")  # a pass first: nothing to open with
    line = sgf.load(openings)[0].moves
    out = tmp_path / "sp"
    base = ["selfplay", "--size", str(SIZE), "--weights", str(policy_file), "--games", "12", "--games-per-shard", "4",
            "--max-moves", "20", "--no-progress"]
    assert train_main([*base, "--openings", str(openings), "--opening-moves", "4", "--out", str(out)]) == 0
    games = [g for f in sorted((out / "sgf").glob("*.sgf")) for g in sgf.load(f)]
    assert len(games) == 12
    begun = []
    for game in games:
        k = next(i for i in range(len(line) + 1) if i == len(line) or game.moves[i] != line[i])
        assert k >= 1 and len(game.moves) > k
        begun.append(min(k, 4))
    assert set(begun) == {1, 2, 3, 4}  # each game's k drawn afresh, up to --opening-moves
    spec = json.loads((out / "meta.json").read_text())["spec"]
    assert (spec["openings"], spec["opening_moves"]) == (str(openings), 4)
    with pytest.raises(SystemExit, match="go together"):
        train_main([*base, "--openings", str(openings), "--out", str(tmp_path / "a")])
    nine = tmp_path / "nine.sgf"
    nine.write_text("(;GM[1]FF[4]SZ[9]KM[7.5];B[ee];W[cc])")
    with pytest.raises(SystemExit, match="no 5x5 game"):
        train_main([*base, "--openings", str(nine), "--opening-moves", "4", "--out", str(tmp_path / "b")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "meta.json").exists()  # refused before writing
    assert "openings" not in selfplay._recorded(selfplay.GameSpec(SIZE, (str(policy_file),)))  # old folders resume


def test_net_players_play_the_same_games_on_both_backends():
    """fp32 torch and ONNX Runtime: logits within 1e-4, so the Gumbel argmax picks the same moves."""
    games = {}
    for backend in ("torch", "onnx"):
        player = selfplay.NetPlayer(tiny_policy(), backend=backend, bf16=False)  # fp32, as onnx computes
        assert player.run.backend == backend
        games[backend] = selfplay.play_games([player], [selfplay.Plan()] * 4, size=SIZE, rng=np.random.default_rng(3))
    assert [g.history for g in games["torch"]] == [g.history for g in games["onnx"]]
