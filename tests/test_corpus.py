"""Reading SGF corpora: folders, archives, bad files counted and skipped, and the real game records."""

import io
import itertools
import os
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from sgfmill import sgf as sgfmill_sgf

from gogame.board import IllegalMove
from gogame.sgf import loads
from tests.shared import shared_archive
from training.data.corpus import PARSE_ERROR, UNREADABLE, WRONG_SIZE, iter_sgf, read_games


NINE = b"(;SZ[9]KM[7];B[ee];W[cc])"
THIRTEEN = b"(;SZ[13];B[gg])"
BAD = b"(;SZ[9];B[ee]"


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def write_archive(path: Path, files: dict[str, bytes]) -> Path:
    """An archive of ``files`` (name -> bytes), its kind chosen by the suffix of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("games/", b"")
            for name, data in files.items():
                archive.writestr(name, data)
        return path
    mode = {".xz": "w:xz", ".gz": "w:gz", ".tgz": "w:gz", ".bz2": "w:bz2", ".tar": "w"}[path.suffix]
    with tarfile.open(path, mode) as archive:
        folder = tarfile.TarInfo("games")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_folder_is_searched_recursively_in_sorted_order(tmp_path):
    write_tree(tmp_path, {"b/nine.sgf": NINE, "a/deep/more.SGF": NINE + THIRTEEN, "a/bad.sgf": BAD,
                          "notes.txt": b"not a game", "a/nine.sgf.bak": NINE})
    write_archive(tmp_path / "c" / "packed.zip", {"games/zipped.sgf": NINE})
    names = [Path(name).relative_to(tmp_path).as_posix() for name, _ in iter_sgf(tmp_path)]
    assert names == ["a/bad.sgf", "a/deep/more.SGF", "b/nine.sgf", "c/packed.zip/games/zipped.sgf"]

    skipped = Counter()
    games = [(Path(name).relative_to(tmp_path).as_posix(), game) for name, game in
             read_games([tmp_path], size=9, skipped=skipped)]
    assert [name for name, _ in games] == ["a/deep/more.SGF#0", "b/nine.sgf", "c/packed.zip/games/zipped.sgf"]
    assert all(game.moves == [("B", (4, 4)), ("W", (6, 2))] for _, game in games)
    assert skipped == {PARSE_ERROR: 1, WRONG_SIZE: 1}


@pytest.mark.parametrize("suffix", [".tar.xz", ".tar.gz", ".tar.bz2", ".tgz", ".tar", ".zip"])
def test_archives_are_read_without_extracting(tmp_path, suffix):
    archive = write_archive(tmp_path / f"games{suffix}", {
        "games/one.sgf": NINE, "games/index.csv": b"file,size\n", "games/broken.sgf": BAD, "games/two.sgf": THIRTEEN})
    assert list(iter_sgf(str(archive))) == [(f"{archive}/games/{name}", data) for name, data in [
        ("one.sgf", NINE), ("broken.sgf", BAD), ("two.sgf", THIRTEEN)]]
    skipped = Counter()
    assert [(name, game.size) for name, game in read_games(archive, skipped=skipped)] == [
        (f"{archive}/games/one.sgf", 9), (f"{archive}/games/two.sgf", 13)]
    assert skipped == {PARSE_ERROR: 1}
    assert os.listdir(tmp_path) == [archive.name]  # nothing extracted


def test_damaged_archives_are_counted_and_the_run_goes_on(tmp_path):
    # Incompressible comments make the compressed stream long enough to cut in the middle.
    files = {f"games/{i:02}.sgf": b"(;C[" + os.urandom(20_000).hex().encode() + b"];B[aa])" for i in range(20)}
    whole = write_archive(tmp_path / "whole.tar.xz", files).read_bytes()
    (tmp_path / "cut.tar.xz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "last.sgf").write_bytes(NINE)
    skipped = Counter()
    names = [Path(name).name for name, _ in read_games(
        [tmp_path / "cut.tar.xz", tmp_path / "junk.zip", tmp_path / "last.sgf"], skipped=skipped)]
    assert 0 < len(names) - 1 < len(files) and names[-1] == "last.sgf"
    assert skipped == {UNREADABLE: 2}
    with pytest.raises(EOFError):  # a cut stream never passes for a complete archive
        list(iter_sgf(tmp_path / "cut.tar.xz"))


def test_sources_that_are_missing_or_of_unknown_kind_raise(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FileNotFoundError):
        list(read_games([tmp_path / "absent.sgf"]))
    with pytest.raises(ValueError, match="not a folder, an .sgf file or an archive"):
        list(read_games(tmp_path / "notes.txt"))


# ---------------------------------------------------------------------------------------------------- real data

ARCHIVES = ["pro9.tar.xz", "pro19.tar.xz", "kgs6d19.tar.xz"]


def first_games(archive: str, n: int = 300) -> list[tuple[str, bytes]]:
    return list(itertools.islice(iter_sgf(shared_archive(archive)), n))


@pytest.mark.slow
@pytest.mark.parametrize("archive", ARCHIVES)
def test_real_games_read_as_sgfmill_reads_them(archive):
    files = first_games(archive)
    assert len(files) == 300
    for name, data in files:
        (game,) = loads(data, source=name)
        oracle = sgfmill_sgf.Sgf_game.from_bytes(data, override_encoding="utf-8")  # not sgfmill's latin-1
        moves = [(c.upper(), m) for c, m in (n.get_move() for n in oracle.get_main_sequence()) if c]
        black, white, _ = oracle.get_root().get_setup_stones()
        assert (game.size, game.komi, game.handicap, game.result) == (
            oracle.get_size(), oracle.get_komi(), oracle.get_handicap() or 0,
            oracle.get_root().get("RE") if oracle.get_root().has_property("RE") else None), name
        assert (game.moves, game.setup) == (moves, (black, white)), name
        assert (game.get("PB"), game.get("PW")) == (oracle.get_player_name("b"), oracle.get_player_name("w")), name


@pytest.mark.slow
@pytest.mark.parametrize("archive", ARCHIVES)
def test_real_games_replay_on_the_board(archive):
    for name, data in first_games(archive):
        (game,) = loads(data, source=name)
        try:
            board = game.board_at()
        except IllegalMove as e:
            # Positional superko forbids the long cycles (triple ko and the like) that Japanese rules allow;
            # such games end without result.
            assert "superko" in str(e) and game.result == "Void", f"{name}: {e}"
            continue
        assert board.move_number == len(game.moves), name


def test_a_missing_archive_skips_with_its_path_or_fails_on_request(monkeypatch, tmp_path):
    import tests.shared

    monkeypatch.setattr(tests.shared, "SHARED_DATA", tmp_path / "shared" / "data")
    monkeypatch.delenv("GOGAME_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"needs .*shared/data/pro9\.tar\.xz"):
        shared_archive("pro9.tar.xz")
    monkeypatch.setenv("GOGAME_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match=r"needs .*pro9\.tar\.xz"):
        shared_archive("pro9.tar.xz")
