"""Reading SGF corpora: game records from folders, single files and archives.

:func:`iter_sgf` yields the bytes of every ``.sgf`` file in the sources, reading tar archives (``.tar.xz``,
``.tar.gz``, ``.tar.bz2``, ``.tgz``, ``.tar``) as streams and ``.zip`` archives member by member, never extracting
them to disk.
:func:`read_games` parses those files into :class:`gogame.sgf.Game` objects, skipping the bad ones and counting
them by reason, so that one bad file never stops a run. Choosing games (by length, handicap, result, ...) is the
dataset builder's job; it can count its own reasons in the same counter.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from gogame.sgf import Game, SGFError, loads

__all__ = ["ARCHIVE_SUFFIXES", "PARSE_ERROR", "WRONG_SIZE", "UNREADABLE", "iter_sgf", "parse_games", "read_games"]

Source = str | os.PathLike[str]

# How to open each kind of tar archive as a stream of tar bytes. These decompressors raise EOFError when a stream
# is cut short, which tarfile's own "r|xz" and the like would take for the end of the archive.
_TAR_OPENERS: dict[str, Callable[[Path, str], BinaryIO]] = {
    ".tar": open, ".tar.xz": lzma.open, ".tar.gz": gzip.open, ".tgz": gzip.open, ".tar.bz2": bz2.open}
ARCHIVE_SUFFIXES = (*_TAR_OPENERS, ".zip")

# Reasons for skipping, the keys of read_games's ``skipped`` counter.
PARSE_ERROR = "parse error"  # a file that is not valid SGF (counted once per file, however many games it holds)
WRONG_SIZE = "wrong size"  # a game on another board size than the one asked for
UNREADABLE = "unreadable"  # a file or archive that could not be read to its end (files before the damage count)

# What a damaged, truncated or unreadable file or archive raises while it is being read.
_READ_ERRORS = (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, zlib.error)


def _is_sgf(path: Path) -> bool:
    return path.name.lower().endswith(".sgf")


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _files(sources: Source | Iterable[Source]) -> list[Path]:
    """The .sgf files and archives that ``sources`` name, folders searched recursively in sorted order."""
    paths = [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(s) for s in sources]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if (_is_sgf(p) or _is_archive(p)) and p.is_file())
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        elif _is_sgf(path) or _is_archive(path):
            files.append(path)
        else:
            raise ValueError(f"{path}: not a folder, an .sgf file or an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    return files


def _read(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(name, data)`` of the .sgf file at ``path``, or of each .sgf file in the archive at ``path``."""
    if _is_sgf(path):
        yield str(path), path.read_bytes()
    elif path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and info.filename.lower().endswith(".sgf"):
                    yield f"{path}/{info.filename}", archive.read(info)
    else:
        opener = next(opener for suffix, opener in _TAR_OPENERS.items() if path.name.lower().endswith(suffix))
        # "r|": a stream, member after member, never seeking back
        with opener(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                if member.isfile() and member.name.lower().endswith(".sgf"):
                    stream = archive.extractfile(member)
                    assert stream is not None  # a regular file always has one
                    yield f"{path}/{member.name}", stream.read()


def iter_sgf(sources: Source | Iterable[Source]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, data)`` for every ``.sgf`` file (any case of the suffix) in ``sources``, in order.

    A source is a folder (searched recursively in sorted order, for ``.sgf`` files and archives), an ``.sgf``
    file (which may hold a collection of games) or an archive. ``name`` is the file's path; for a file inside an
    archive, the archive's path, ``/`` and the member's name. Raises FileNotFoundError for a missing source and
    ValueError for a file that is neither SGF nor an archive (both before yielding anything), and OSError,
    EOFError, tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError or zlib.error for a file or archive that
    cannot be read.
    """
    for path in _files(sources):
        yield from _read(path)


def read_games(sources: Source | Iterable[Source], size: int | None = None,
               skipped: Counter[str] | None = None) -> Iterator[tuple[str, Game]]:
    """Yield ``(name, game)`` for every game in ``sources`` (as :func:`iter_sgf`), skipping the bad ones.

    As :func:`parse_games`, plus :data:`UNREADABLE` for a file or archive that could not be read to its end.
    Raises only for a source that is missing or of an unknown kind, as :func:`iter_sgf` does.
    """
    skipped = Counter() if skipped is None else skipped
    return parse_games(_readable(sources, skipped), size, skipped)


def _readable(sources: Source | Iterable[Source], skipped: Counter[str]) -> Iterator[tuple[str, bytes]]:
    for path in _files(sources):
        files = _read(path)
        while True:
            try:  # only the reading is guarded: errors raised by the caller's code between games propagate
                name, data = next(files)
            except StopIteration:
                break
            except _READ_ERRORS:
                skipped[UNREADABLE] += 1
                break
            yield name, data


def parse_games(files: Iterable[tuple[str, bytes]], size: int | None = None,
                skipped: Counter[str] | None = None) -> Iterator[tuple[str, Game]]:
    """Yield ``(name, game)`` for the games in ``(name, bytes)`` files, skipping and counting the bad ones.

    ``name`` is the file's name, with ``#i`` added for the i-th game (from 0) of a collection of several.
    With ``size`` given, games on other boards are skipped. Each skip adds one to ``skipped[reason]``
    (:data:`PARSE_ERROR`, :data:`WRONG_SIZE`).
    """
    skipped = Counter() if skipped is None else skipped
    for name, data in files:
        try:
            games = loads(data, source=name)
        except SGFError:
            skipped[PARSE_ERROR] += 1
            continue
        for i, game in enumerate(games):
            if size is not None and game.size != size:
                skipped[WRONG_SIZE] += 1
                continue
            yield (name if len(games) == 1 else f"{name}#{i}"), game
