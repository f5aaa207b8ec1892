"""The dataset builder and the batch source over its shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gogame import features
from tests.shared import shared_archive
from gogame.sgf import Game, load
from training.cli import main as train_main
from training.data import shards

FIXTURES = Path(__file__).parent / "data"
NINE = sorted(FIXTURES.glob("pro9-*.sgf"))


@pytest.fixture(scope="module")
def nine_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds9")
    shards.build_dataset([str(p) for p in NINE], out, feature_set="alphago49",
                         game_filter=shards.GameFilter(size=9, min_moves=10), workers=1,
                         games_per_chunk=8, val_fraction=0.2, test_fraction=0.1)
    return out


def test_shards_hold_every_position_of_every_game(nine_dataset):
    summary = json.loads((nine_dataset / "summary.json").read_text())
    games = {name: game for p in NINE for name, game in [(str(p), load(p)[0])]}
    assert sum(summary["games"].values()) + sum(summary["skipped"].values()) == len(NINE)
    seen_games = 0
    for split in shards.SPLITS:
        for shard in shards.shard_paths(nine_dataset, split):
            arrays = shards.load_shard(shard)
            for gid, name in enumerate(arrays["game_name"]):
                game = games[str(name)]
                assert shards.split_of(str(name), 0, 0.2, 0.1) == split
                rows = np.flatnonzero(arrays["game"] == gid)
                assert rows.size == len(game.moves)
                seen_games += 1
                for row, (board, colour, move) in zip(rows, game.replay()):
                    expected = features.planes(board, "alphago49")
                    unpacked = np.unpackbits(arrays["planes"][row])[: expected.size].reshape(expected.shape)
                    assert (unpacked == expected).all()
                    assert arrays["move"][row] == (81 if move is None else move[0] * 9 + move[1])
                    winner = game.winner
                    assert arrays["outcome"][row] == (0 if winner is None else (1 if winner == colour else -1))
                    assert arrays["move_number"][row] == len(board.history)
    assert seen_games == sum(summary["games"].values())
    assert summary["positions"]["train"] > 0


def test_rerun_resumes_from_done_chunks(nine_dataset):
    before = {p: p.stat().st_mtime_ns for p in nine_dataset.glob("*.npz")}
    summary = shards.build_dataset([str(p) for p in NINE], nine_dataset, feature_set="alphago49",
                                   game_filter=shards.GameFilter(size=9, min_moves=10), workers=1,
                                   games_per_chunk=8, val_fraction=0.2, test_fraction=0.1)
    assert {p: p.stat().st_mtime_ns for p in nine_dataset.glob("*.npz")} == before
    assert summary["positions"] == json.loads((nine_dataset / "summary.json").read_text())["positions"]
    with pytest.raises(ValueError, match="other settings"):
        shards.build_dataset([str(p) for p in NINE], nine_dataset, feature_set="alphago48",
                             game_filter=shards.GameFilter(size=9), workers=1)


def test_bad_games_are_skipped_and_counted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.sgf").write_bytes(NINE[0].read_bytes())
    (src / "broken.sgf").write_text("(;GM[1]SZ[9];B[ee];W[")
    (src / "big.sgf").write_bytes((FIXTURES / "pro19-00.sgf").read_bytes())
    (src / "illegal.sgf").write_text("(;GM[1]SZ[9]RE[B+R]" + ";B[ee];W[ee]" + ";B[aa];W[bb]" * 10 + ")")
    (src / "short.sgf").write_text("(;GM[1]SZ[9]RE[B+R];B[ee];W[dd])")
    summary = shards.build_dataset([str(src)], tmp_path / "out", game_filter=shards.GameFilter(size=9),
                                   workers=1, val_fraction=0, test_fraction=0)
    assert summary["skipped"] == {"parse error": 1, "wrong size": 1, "illegal move": 1, "too few moves": 1}
    assert summary["games"]["train"] == 1


def test_game_filter_reasons():
    game = load(NINE[0])[0]
    assert shards.GameFilter(size=9).reason_to_skip(game) is None
    assert shards.GameFilter(size=9, min_moves=500).reason_to_skip(game) == "too few moves"
    assert shards.GameFilter(size=9, min_rank="8p").reason_to_skip(game) == "below minimum rank"
    assert shards.GameFilter(size=9, min_rank="7p").reason_to_skip(game) is None
    assert shards.GameFilter(size=9, since=2000).reason_to_skip(game) == "outside dates"
    assert shards.GameFilter(size=9, until=1993).reason_to_skip(game) is None


def test_game_filter_komi_and_how_the_game_was_won():
    game = Game.from_moves([], size=9, komi=6.5, result="B+T")
    assert shards.GameFilter(size=9, min_moves=0).reason_to_skip(game) is None
    assert shards.GameFilter(size=9, min_moves=0, min_komi=5.5, max_komi=7.5).reason_to_skip(game) is None
    assert shards.GameFilter(size=9, min_moves=0, min_komi=7.0).reason_to_skip(game) == "komi out of range"
    assert shards.GameFilter(size=9, min_moves=0, max_komi=6.0).reason_to_skip(game) == "komi out of range"
    assert shards.GameFilter(size=9, min_moves=0, decided_on_board=True).reason_to_skip(game) == \
        "won on time or forfeit"
    for result in ("B+R", "W+3.5", "B+", "0"):
        won = Game.from_moves([], size=9, komi=6.5, result=result)
        assert shards.GameFilter(size=9, min_moves=0, decided_on_board=True).reason_to_skip(won) is None


@pytest.mark.parametrize("text,value", [("30k", -29), ("1k", 0), ("1d", 1), ("9d", 9), ("1p", 10), ("9p", 18), ("7 dan", 7), ("7d?", 7), ("pro", None), ("", None)])
def test_rank_value(text, value):
    assert shards.rank_value(text) == value


def test_split_is_by_game_and_stable():
    names = [f"archive.tar.xz:game{i}.sgf" for i in range(2000)]
    splits = [shards.split_of(n, 7, 0.1, 0.1) for n in names]
    assert splits == [shards.split_of(n, 7, 0.1, 0.1) for n in reversed(names)][::-1]
    share = {s: splits.count(s) / len(splits) for s in shards.SPLITS}
    assert 0.07 < share["val"] < 0.13 and 0.07 < share["test"] < 0.13
    assert splits != [shards.split_of(n, 8, 0.1, 0.1) for n in names]


def test_batches_resume_exactly_and_cover_each_position_once(nine_dataset):
    paths = shards.shard_paths(nine_dataset, "train")
    source = shards.PositionBatches(paths, 16, seed=3, shards_in_memory=2)
    full = list(source.batches(epoch=1))
    assert len(full) == source.num_batches() == len(source) // 16
    resumed = list(source.batches(epoch=1, start=3))
    assert len(resumed) == len(full) - 3
    for a, b in zip(full[3:], resumed):
        assert torch.equal(a["planes"], b["planes"]) and torch.equal(a["move"], b["move"])
        assert a["symmetry"] == b["symmetry"]
    rows = torch.cat([b["planes"] for b in full])
    assert len({bytes(r.numpy()) for r in rows}) > 0.9 * rows.shape[0]  # no position twice (up to duplicates in games)
    other = list(source.batches(epoch=2))
    assert not torch.equal(full[0]["move"], other[0]["move"])


def test_validation_keeps_the_partial_last_batch(nine_dataset):
    paths = shards.shard_paths(nine_dataset, "val")
    source = shards.PositionBatches(paths, 1000, shuffle=False, drop_last=False)
    batches = list(source.batches(0))
    assert len(batches) == source.num_batches() == 1 and 0 < len(source) < 1000
    assert sum(b["move"].numel() for b in batches) == len(source)
    assert shards.PositionBatches(paths, 1000).num_batches() == 0


def test_ddp_ranks_get_disjoint_batches(nine_dataset):
    source = shards.PositionBatches(shards.shard_paths(nine_dataset, "train"), 8, seed=0)
    r0 = list(source.batches(0, 0, rank=0, world_size=2))
    r1 = list(source.batches(0, 0, rank=1, world_size=2))
    assert len(r0) == len(r1) == source.num_batches(2)
    assert not torch.equal(r0[0]["planes"], r1[0]["planes"])


def test_one_position_per_decided_game(nine_dataset):
    paths = shards.shard_paths(nine_dataset, "train")
    source = shards.PositionBatches(paths, 1, seed=0, one_per_game=True, decided_only=True)
    games = sum(np.unique(shards.load_shard(p)["game"][shards.load_shard(p)["outcome"] != 0]).size for p in paths)
    assert len(source) == games
    outcomes = torch.cat([b["outcome"] for b in source.batches(0)])
    assert outcomes.numel() == games and (outcomes.abs() == 1).all()


def test_unpack_planes_inverts_packbits():
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 2, size=(5, 49, 9, 9), dtype=np.uint8)
    packed = np.stack([np.packbits(p.reshape(-1)) for p in planes])
    out = shards.unpack_planes(torch.from_numpy(packed), 49, 9)
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(planes).float())


def test_symmetries_move_planes_and_targets_together():
    size = 9
    moves = torch.tensor([0, 5, 17, 40, 80, 81, 3, 62, 11, 30, 44, 70, 1, 2, 9, 81])
    planes = torch.zeros(len(moves), 2, size, size)
    for i, m in enumerate(moves.tolist()):
        if m < size * size:
            planes[i, 0, m // size, m % size] = 1  # the move, marked on a plane
        planes[i, 1, 0, 0] = 1  # a corner marker
    for offset in range(8):
        out_planes, out_moves = shards.apply_symmetries(planes, moves, offset)
        for i, m in enumerate(out_moves.tolist()):
            if moves[i] == size * size:
                assert m == size * size and out_planes[i, 0].sum() == 0
            else:
                assert out_planes[i, 0].flatten().argmax().item() == m
        corners = {tuple(out_planes[i, 1].nonzero()[0].tolist()) for i in range(len(moves))}
        assert corners == {(0, 0), (0, 8), (8, 0), (8, 8)}  # all four corners: the 8 symmetries used


def test_dataset_command_reads_archives(tmp_path, capsys):
    archive = shared_archive("pro9.tar.xz")
    assert train_main(["dataset", str(archive), str(tmp_path / "ds"), "--size", "9", "--max-games", "40",
                       "--workers", "2", "--games-per-chunk", "10"]) == 0
    out = capsys.readouterr().out
    assert "positions by split" in out
    summary = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert sum(summary["games"].values()) + sum(summary["skipped"].values()) == 40


@pytest.mark.parametrize("feature_set", ["alphago48", "zero17"])
def test_numba_replay_encodes_the_same_planes_as_the_python_board(feature_set):
    game = load(FIXTURES / "pro19-01.sgf")[0]
    packed = shards.encode_game(game, feature_set)
    assert packed.shape[0] == len(game.moves)
    for i, (board, colour, move) in enumerate(game.replay()):
        expected = features.planes(board, feature_set)
        assert (np.unpackbits(packed[i])[: expected.size].reshape(expected.shape) == expected).all(), i


def test_encode_game_rejects_illegal_records():
    from gogame.board import IllegalMove
    from gogame.sgf import loads

    with pytest.raises(IllegalMove, match="move 2"):
        shards.encode_game(loads("(;SZ[9];B[ee];W[ee])")[0], "alphago48")


def test_cached_batches_equal_uncached(nine_dataset):
    paths = shards.shard_paths(nine_dataset, "train")
    plain = shards.PositionBatches(paths, 8, seed=1, one_per_game=True)
    cached = shards.PositionBatches(paths, 8, seed=1, one_per_game=True, cache=True)
    for epoch in (0, 1):
        for a, b in zip(plain.batches(epoch), cached.batches(epoch)):
            assert torch.equal(a["planes"], b["planes"]) and torch.equal(a["move"], b["move"])


def test_positions_per_game_samples_a_seeded_subset(tmp_path):
    out = tmp_path / "value"
    summary = shards.build_dataset([str(p) for p in NINE], out, feature_set="alphago49",
                                   game_filter=shards.GameFilter(size=9, min_moves=10), workers=1,
                                   val_fraction=0, test_fraction=0, positions_per_game=3)
    arrays = shards.load_shard(shards.shard_paths(out, "train")[0])
    counts = np.bincount(arrays["game"])
    assert (counts == 3).all() and summary["positions"]["train"] == 3 * summary["games"]["train"]
    for gid, name in enumerate(arrays["game_name"]):
        game = load(str(name))[0]
        kept = arrays["move_number"][arrays["game"] == gid]
        assert (kept == shards.sample_moves(str(name), len(game.moves), 3, 0)).all()
        row = np.flatnonzero(arrays["game"] == gid)[0]
        board = game.board_at(int(kept[0]))
        expected = features.planes(board, "alphago49")
        assert (np.unpackbits(arrays["planes"][row])[: expected.size].reshape(expected.shape) == expected).all()


def test_small_jobs_train_from_sgf_without_shards():
    games = [(str(p), load(p)[0]) for p in NINE[:3]]
    arrays = shards.encode_games(games, "alphago48", 9)
    source = shards.PositionBatches(arrays, 16, seed=0)
    assert len(source) == sum(len(g.moves) for _, g in games)
    batch = next(iter(source.batches(0)))
    planes = shards.unpack_planes(batch["planes"], 48, 9)
    assert planes.shape == (16, 48, 9, 9) and batch["move"].max() <= 81
