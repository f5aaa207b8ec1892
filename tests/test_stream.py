"""Tests for training.data.stream: the expert-game batch source read straight from SGF archives."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gogame import coords, features, sgf
from training.data import shards, stream
from training.data.stream import ExpertStream, OutcomeRule

DATA = Path(__file__).resolve().parent / "data"
SIZE = 9


def make_archive(path: Path, files: dict[str, bytes]) -> Path:
    """A .tar.xz holding ``files`` (member name -> SGF bytes)."""
    with tarfile.open(path, "w:xz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    files = {f"games/{p.name}": p.read_bytes() for p in sorted(DATA.glob("pro9-*.sgf"))}
    return make_archive(folder / "pro9.tar.xz", files)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("index")


def make(archive: Path, index_dir: Path, batch_size: int = 32, **options) -> ExpertStream:
    options.setdefault("game_filter", shards.GameFilter(size=SIZE))
    options.setdefault("val_fraction", 0.2)
    options.setdefault("test_fraction", 0.2)
    options.setdefault("ownership_playouts", 4)
    options.setdefault("games_per_chunk", 3)
    return ExpertStream([archive], batch_size, index_dir=index_dir, progress=False, **options)


def same(a: dict, b: dict) -> bool:
    """The same keys and values, NaN equal to NaN (positions with no search value)."""
    def equal(x, y) -> bool:
        if not isinstance(x, torch.Tensor):
            return x == y
        return x.dtype == y.dtype and x.shape == y.shape and bool(
            (x == y).all() if not x.is_floating_point() else ((x == y) | (x.isnan() & y.isnan())).all())
    return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)


def test_two_instances_give_identical_batches_and_epochs_differ(archive, index_dir):
    one, two = make(archive, index_dir), make(archive, index_dir)
    first = list(one.batches(0))
    assert len(first) == one.num_batches() > 2
    assert all(same(a, b) for a, b in zip(first, two.batches(0)))
    assert not torch.equal(first[0]["move"], next(iter(one.batches(1)))["move"])
    batch = first[0]
    assert batch["planes"].dtype == torch.uint8 and batch["planes"].shape == (32, -(-49 * SIZE * SIZE // 8))
    assert batch["move"].dtype == torch.int64 and batch["outcome"].dtype == torch.float32
    assert batch["ownership"].shape == (32, SIZE * SIZE) and batch["symmetry"] in range(8)
    assert bool((batch["ownership"].abs() <= 1).all())


def test_start_skips_batches_without_replaying_earlier_chunks(archive, index_dir, monkeypatch):
    source = make(archive, index_dir)
    full = list(source.batches(1))
    replayed = []
    original = ExpertStream.game_arrays
    monkeypatch.setattr(ExpertStream, "game_arrays",
                        lambda self, i, epoch=0: replayed.append(i) or original(self, i, epoch))
    for start in (1, len(full) - 1):
        replayed.clear()
        rest = list(source.batches(1, start))
        assert len(rest) == len(full) - start and all(same(a, b) for a, b in zip(rest, full[start:]))
    assert len(replayed) < source.games // 2  # the last batch needs only the last chunk or two
    assert list(source.batches(1, len(full))) == []


def test_ranks_partition_each_batch_of_the_epoch(archive, index_dir):
    whole = list(make(archive, index_dir, batch_size=32).batches(0))
    halves = make(archive, index_dir, batch_size=16)
    assert halves.num_batches(2) == len(whole)
    ranks = [list(halves.batches(0, 0, r, 2)) for r in range(2)]
    for j, batch in enumerate(whole):
        for key in ("planes", "move", "outcome", "move_number", "ownership"):
            assert torch.equal(torch.cat([ranks[0][j][key], ranks[1][j][key]]), batch[key])


def test_without_drop_last_an_epoch_is_every_position_once(archive, index_dir):
    source = make(archive, index_dir, batch_size=50, drop_last=False)
    counts = [len(b["move"]) for r in range(2) for b in source.batches(0, 0, r, 2)]
    assert sum(counts) == len(source) == sum(len(source.game_arrays(i)["move"]) for i in range(source.games))
    limited = make(archive, index_dir, batch_size=50, drop_last=False, max_batches=2)
    assert limited.num_batches() == 2 and len(list(limited.batches(0))) == 2


def test_splits_are_disjoint_by_game_and_cover_the_kept_games(archive, index_dir):
    names = {split: set(make(archive, index_dir, split=split).names) for split in shards.SPLITS}
    assert all(names.values())
    assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])
    assert len(set().union(*names.values())) == 24
    assert all(name.startswith("pro9.tar.xz/games/pro9-") for name in names["train"])


def test_the_index_is_built_once(archive, index_dir, monkeypatch):
    games = make(archive, index_dir).games
    monkeypatch.setattr(stream, "read_games", lambda *a, **k: pytest.fail("the cached index was not used"))
    monkeypatch.setattr(stream, "_LOADED", {})  # a new process: the index comes from the disk
    assert make(archive, index_dir).games == games
    assert stream._LOADED  # and is kept for the next stream of this process
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (index_dir / f"{digest}-{SIZE}-v{stream.INDEX_VERSION}.npz").is_file()


def test_manifest_names_the_inputs_and_every_setting(archive, index_dir):
    manifest = make(archive, index_dir).manifest()
    assert json.loads(json.dumps(manifest)) == manifest
    assert manifest["inputs"] == [{"path": str(archive.resolve()), "bytes": archive.stat().st_size,
                                   "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}]
    other = make(archive, index_dir, outcome=OutcomeRule(max_komi=None)).manifest()
    assert other["settings"]["outcome"]["max_komi"] is None and other["settings"] != manifest["settings"]
    assert make(archive, index_dir, ownership_playouts=5).manifest()["settings"]["ownership_playouts"] == 5


@pytest.mark.parametrize("result, kind", [("B+R", "resign"), ("W+Resign", "resign"), ("B+3.5", "score"),
                                          ("W+12", "score"), ("B+", "win"), ("W+T", "time"), ("B+Time", "time"),
                                          ("B+F", "forfeit"), ("0", "draw"), ("Jigo", "draw"), ("Void", "void"),
                                          ("?", "unknown"), ("", "unknown"), ("B+x", "unknown")])
def test_result_kinds(result, kind):
    assert shards.result_kind(result) == kind


def test_outcome_is_masked_by_result_kind_komi_and_handicap(archive, index_dir):
    source = make(archive, index_dir, val_fraction=0, test_fraction=0)
    seen = set()
    for i in range(source.games):
        facts = source.record(i)[2]
        arrays = source.game_arrays(i)
        kind = shards.result_kind(facts.result)
        mover = np.where(np.arange(len(arrays["move"])) % 2 == 0, 1, -1)  # no handicap here: black first
        if kind in ("time", "forfeit") or not 5.5 <= facts.komi <= 7.5:  # one fixture game has komi 0
            assert not arrays["outcome"].any()
        else:
            winner = 1 if facts.result.startswith("B") else -1
            assert np.array_equal(arrays["outcome"], (mover * winner).astype(np.float32))
        seen.add(kind in ("time", "forfeit"))
    assert seen == {True, False}
    strict = make(archive, index_dir, outcome=OutcomeRule(min_komi=7.0))  # the fixture games: komi 0 to 6.5
    assert not any(strict.game_arrays(i)["outcome"].any() for i in range(strict.games))
    rule = OutcomeRule()
    handicap = shards.GameFacts(100, 2, 2, 6.5, "B+R", "", "", "")
    assert rule.winner(handicap) is None and OutcomeRule(handicap=True).winner(handicap) == "B"
    with pytest.raises(ValueError, match="unknown result kinds"):
        OutcomeRule(results=("resigned",))


def test_search_values_of_a_record_are_the_movers_and_nan_where_it_has_none(tmp_path):
    moves = [("B", (2, 2)), ("W", (6, 6)), ("B", (2, 6)), ("W", None), ("B", None)]
    values = {0: "0.6000", 1: "0.2500", 3: "oops", 4: "1.5"}  # the last two are no win rates: ignored
    game = sgf.Game.from_moves(moves, size=SIZE, komi=7.5, result="B+R",
                               move_properties={i: {shards.SEARCH_VALUE: v} for i, v in values.items()})
    archive = make_archive(tmp_path / "selfplay.tar.xz", {"sgf/s-0.sgf": sgf.dumps(game).encode()})
    source = make(archive, tmp_path / "index", batch_size=5, val_fraction=0, test_fraction=0,
                  game_filter=shards.GameFilter(size=SIZE, min_moves=1))
    searched = source.game_arrays(0)["search_value"]
    # black's 0.6 is +0.2 for black; black's 0.25 at white's move is +0.5 for white
    assert np.allclose(searched[:2], [0.2, 0.5], atol=1e-3) and np.isnan(searched[2:]).all()
    batch = next(iter(source.batches(0)))
    assert batch["search_value"].dtype == torch.float32 and batch["search_value"].isnan().sum() == 3


def test_visits_are_written_most_visited_first_and_read_back_as_shares():
    text = shards.format_visits({2: 1, SIZE * SIZE: 3, 40: 0, 10: 4}, SIZE)
    assert text == "bh:4 tt:3 ci:1"  # flat 10 is row 1, column 1; the pass is tt; no visits, not written
    moves, shares = shards.parse_visits(text, SIZE)
    assert moves.tolist() == [10, SIZE * SIZE, 2] and np.allclose(shares, [0.5, 0.375, 0.125])
    for foreign in (None, "", "bh", "bh:x", "zz:1", "bh:1 bh:2", "bh:-1 ci:2", "bh:0"):
        assert shards.parse_visits(foreign, SIZE)[0].size == 0


def test_the_search_policy_of_a_position_is_its_roots_visit_shares_where_the_record_has_them(tmp_path):
    moves = [("B", (2, 2)), ("W", (6, 6)), ("B", (2, 6)), ("W", None), ("B", None)]
    visits = [{0: "cg:3 gc:1", 2: "tt:2 cc:2", 3: "zz:1"}, {1: "gc:5"}]  # zz is off the board: no policy
    members = {}
    for k, game_visits in enumerate(visits):
        game = sgf.Game.from_moves(moves, size=SIZE, komi=7.5, result="B+R", move_properties={
            i: {shards.SEARCH_VISITS: v} for i, v in game_visits.items()})
        members[f"sgf/s-{k}.sgf"] = sgf.dumps(game).encode()
    archive = make_archive(tmp_path / "selfplay.tar.xz", members)
    options = dict(batch_size=10, val_fraction=0, test_fraction=0, game_filter=shards.GameFilter(size=SIZE,
                                                                                                 min_moves=1))
    source = make(archive, tmp_path / "index", search_policy=True, **options)
    cg, gc, cc = (coords.to_flat(coords.from_sgf(p, SIZE), SIZE) for p in ("cg", "gc", "cc"))
    expected = {"s-0": {0: {cg: 0.75, gc: 0.25}, 2: {SIZE * SIZE: 0.5, cc: 0.5}}, "s-1": {1: {gc: 1.0}}}
    for i, name in enumerate(source.names):
        policy = source.game_arrays(i)["search_policy"]
        assert policy.shape == (len(moves), SIZE * SIZE + 1)
        want = np.zeros_like(policy)
        for move, shares in expected[name.split("/")[-1].removesuffix(".sgf")].items():
            want[move, list(shares)] = list(shares.values())
        assert np.allclose(policy, want, atol=1e-3)
    batch = next(iter(source.batches(0)))
    assert batch["search_policy"].dtype == torch.float32 and batch["search_policy"].sum().item() == pytest.approx(3)
    assert "search_policy" not in make(archive, tmp_path / "index", **options).game_arrays(0)


def test_value_positions_keep_that_many_outcomes_per_game_drawn_the_same_way_each_time(archive, index_dir):
    every = make(archive, index_dir, val_fraction=0, test_fraction=0)
    sampled = make(archive, index_dir, val_fraction=0, test_fraction=0, value_positions=5)
    again = make(archive, index_dir, val_fraction=0, test_fraction=0, value_positions=5)
    kept_positions = set()
    for i in range(every.games):
        full, part = every.game_arrays(i)["outcome"], sampled.game_arrays(i)["outcome"]
        assert np.array_equal(part, again.game_arrays(i)["outcome"])
        if full.any():
            assert np.count_nonzero(part) == min(5, full.size)
            assert np.array_equal(part[part != 0], full[part != 0])  # a kept outcome is the game's own
            kept_positions.add(tuple(np.flatnonzero(part)))
        else:
            assert not part.any()
        for key in ("planes", "move", shards.OWNERSHIP):  # the moves and owners of every position still teach
            assert np.array_equal(every.game_arrays(i)[key], sampled.game_arrays(i)[key])
    assert len(kept_positions) > 1  # drawn per game, not the same move numbers everywhere
    assert "value_positions" not in every.manifest()["settings"]
    assert sampled.manifest()["settings"]["value_positions"] == 5
    with pytest.raises(ValueError, match="value_positions"):
        make(archive, index_dir, value_positions=-1)



def test_positions_per_game_keep_that_many_positions_of_every_game_drawn_afresh_each_epoch(archive, index_dir):
    every = make(archive, index_dir, val_fraction=0, test_fraction=0)
    sampled = make(archive, index_dir, val_fraction=0, test_fraction=0, positions_per_game=7)
    assert len(sampled) == sum(min(7, len(every.game_arrays(i)["move"])) for i in range(every.games)) < len(every)
    for i in range(every.games):
        full, part = every.game_arrays(i), sampled.game_arrays(i, epoch=3)
        kept = part["move_number"]
        assert kept.size == min(7, full["move"].size) and np.all(np.diff(kept) > 0)
        for key in ("planes", "move", "outcome", shards.OWNERSHIP, "move_number"):  # the game's own positions
            assert np.array_equal(part[key], full[key][kept])
        assert np.array_equal(sampled.game_arrays(i, epoch=3)["move_number"], kept)  # the same draw again
    assert any(not np.array_equal(sampled.game_arrays(i, epoch=0)["move_number"],
                                  sampled.game_arrays(i, epoch=1)["move_number"]) for i in range(every.games))
    epoch = [b for b in make(archive, index_dir, batch_size=10, val_fraction=0, test_fraction=0,
                             positions_per_game=7, drop_last=False).batches(2)]
    assert sum(len(b["move"]) for b in epoch) == len(sampled)
    assert sampled.manifest()["settings"]["positions_per_game"] == 7
    assert "positions_per_game" not in every.manifest()["settings"]
    with pytest.raises(ValueError, match="positions_per_game"):
        make(archive, index_dir, positions_per_game=-1)

def test_a_positions_board_is_the_one_its_planes_show_with_its_mover_to_play(archive, index_dir):
    sampled = make(archive, index_dir, val_fraction=0, test_fraction=0, positions_per_game=5)
    batch = next(iter(sampled.batches(0)))
    planes = shards.unpack_planes(batch["planes"], 49, SIZE).numpy()
    for row, (game, number) in enumerate(zip(batch["game"].tolist(), batch["move_number"].tolist())):
        board = sampled.board(game, number)
        assert board.to_move == sampled.record(game)[1][number][0]
        assert np.array_equal(features.planes(board, "alphago49"), planes[row])  # batches hold unturned planes

def finished_game() -> bytes:
    """9x9: black walls off columns A-E, white F-J, both pass; black's area 45 to 36."""
    moves = []
    for row in range(9):
        moves += [("B", (row, 4)), ("W", (row, 5))]
    moves += [("B", None), ("W", None)]
    return sgf.dumps(sgf.Game.from_moves(moves, size=SIZE, komi=0.0, result="B+9")).encode()


def test_rollout_values_are_the_movers_share_of_playout_wins_cached_once(tmp_path, monkeypatch):
    path = make_archive(tmp_path / "one.tar.xz", {"walls.sgf": finished_game()})
    source = ExpertStream([path], 4, game_filter=shards.GameFilter(size=SIZE), val_fraction=0, test_fraction=0,
                          ownership_playouts=4, rollout_value_playouts=8, index_dir=tmp_path, progress=False)
    values = source.game_arrays(0)["rollout_value"]
    assert values.dtype == np.float32 and values.size == 20 and np.all(np.abs(values) <= 1)
    # komi 0 and both walls standing: black, 9 points ahead, wins most playouts of the last two positions
    assert values[-2] >= 0.5 and values[-1] <= -0.5
    index = stream.game_index(path, SIZE, tmp_path)
    rollouts = stream.Rollouts(stream.ro.RolloutPolicy.load())
    name = str(index["name"][0])
    for k in (0, 7):  # a position's value is the mover's share of its seeded playouts' wins, a tie half
        margins = rollouts.margins(source.board(0, k), 8, (stream.zlib.crc32(name.encode()) << 24) + 8 * k)
        black = (np.count_nonzero(margins > 0) + 0.5 * np.count_nonzero(margins == 0)) / 8
        assert values[k] == pytest.approx((1 if k % 2 == 0 else -1) * (2 * black - 1), abs=2e-3)
    assert source.manifest()["settings"]["rollout_value_playouts"] == 8
    assert "rollout_value" not in make(path, tmp_path, val_fraction=0, test_fraction=0).game_arrays(0)
    monkeypatch.setattr(stream.Rollouts, "margins", lambda *a, **k: pytest.fail("the cache was not used"))
    again = ExpertStream([path], 4, game_filter=shards.GameFilter(size=SIZE), val_fraction=0, test_fraction=0,
                         ownership_playouts=4, rollout_value_playouts=8, index_dir=tmp_path, progress=False)
    assert np.array_equal(again.game_arrays(0)["rollout_value"], values)
    batch = next(iter(again.batches(0)))
    assert batch["rollout_value"].dtype == torch.float32 and not batch["rollout_value"].isnan().any()
    with pytest.raises(ValueError, match="rollout_value_playouts"):
        make(path, tmp_path, rollout_value_playouts=-1)


def test_ownership_agrees_with_a_finished_game(tmp_path):
    path = make_archive(tmp_path / "one.tar.xz", {"walls.sgf": finished_game()})
    source = ExpertStream([path], 4, game_filter=shards.GameFilter(size=SIZE), val_fraction=0, test_fraction=0,
                          ownership_playouts=8, index_dir=tmp_path, progress=False)
    owner = source.final_ownership(0).reshape(SIZE, SIZE)
    # the rollouts sometimes live inside the other side's territory: the sign holds everywhere, the mean is high
    assert (owner[:, :5] > 0).all() and (owner[:, 5:] < 0).all()
    assert owner[:, :5].mean() > 0.8 and owner[:, 5:].mean() < -0.8
    arrays = source.game_arrays(0)
    black, white = arrays["ownership"][0].reshape(SIZE, SIZE), arrays["ownership"][1].reshape(SIZE, SIZE)
    assert np.array_equal(black, owner.astype(np.float32)) and np.array_equal(white, -black)
    assert list(arrays["outcome"][:2]) == [0.0, 0.0]  # komi 0 is outside the default outcome range
    assert np.array_equal(source.final_ownership(0), owner.reshape(-1))  # seeded: the same every time


def test_bad_sources_and_settings(archive, index_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such"):
        make(tmp_path / "missing.tar.xz", index_dir)
    with pytest.raises(ValueError, match="no game of the train split"):
        make(archive, index_dir, game_filter=shards.GameFilter(size=19))
    with pytest.raises(ValueError, match="split must be"):
        make(archive, index_dir, split="dev")
    with pytest.raises(ValueError, match="positive"):
        make(archive, index_dir, ownership_playouts=0)
