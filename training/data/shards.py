"""Training data: SGF games to bit-packed feature shards, and batches back out of them.

``gogame-train dataset SOURCE... OUT`` replays expert games and writes, per
chunk of games, one shard per split (``train``, ``val``, ``test``) holding for
every position:

============== ======================== ========================================
array          dtype, shape             meaning
============== ======================== ========================================
``planes``     uint8 (n, ceil(P*S*S/8)) the feature planes, ``np.packbits`` of
                                        the (P, S, S) uint8 planes
``move``       int16 (n,)               the move played, ``row * S + col``,
                                        ``S * S`` for pass
``outcome``    int8 (n,)                +1 the player to move won the game, -1
                                        lost, 0 no winner recorded
``move_number`` int16 (n,)              moves before this one in the game
``game``       int32 (n,)               index into ``game_name``/``game_komi``
============== ======================== ========================================

plus per game ``game_name`` (``archive:member``) and ``game_komi``. Self-play
shards (:mod:`training.stages.selfplay`) add ``ownership``, int8 (n, S*S): +1 where
the final area of the game was the mover's, -1 the opponent's, 0 neither
(expert records stop before the end, so theirs have none). Shards are
``.npz`` files written atomically; a finished chunk leaves a ``.done`` record
of its counts, so a rerun skips it and resumes where a killed run stopped.
Games are assigned to splits by a hash of their name with a fixed seed: by
game, never by position, and independent of the order or the number of
workers.

Reading back, :class:`PositionBatches` is the trainer's resumable batch source
over shards (or over arrays built in memory by :func:`encode_games`, for small
jobs with no shard step). Batches stay packed until :func:`unpack_planes`
expands them on the training device, where :func:`apply_symmetries` applies
the 8 board symmetries to planes and target moves together (a batch carries a
seeded ``symmetry`` offset, so resumed runs see the same augmentation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import numba as nb
import numpy as np
import torch
from tqdm import tqdm

from gogame import coords, features
from gogame import fastboard as fb
from gogame.board import Board, IllegalMove
from gogame.atomic import write_atomically
from gogame.sgf import Game
from training.data.corpus import iter_sgf, parse_games

SPLITS = ("train", "val", "test")
ARRAYS = ("planes", "move", "outcome", "move_number", "game")
OWNERSHIP = "ownership"  # the optional per-position array of self-play shards
# The SGF move property of self-play games played with search: black's win rate in [0, 1] by the search made
# before the move (four decimals), a far less noisy value target than the game's one result.
SEARCH_VALUE = "BV"
# The other move property of those games: the visits of the root's moves by that search, "cc:52 dd:31 tt:2" (SGF
# points, "tt" a pass), AlphaGo Zero's policy target: the search's improved policy rather than one move drawn from
# it (format_visits, parse_visits).
SEARCH_VISITS = "VC"
# Reasons a game is skipped (beside the corpus reader's "parse error" and "wrong size").
ILLEGAL = "illegal move"
MID_GAME_SETUP = "setup after the first node"
TOO_SHORT = "too few moves"
HANDICAP = "handicap"
NO_RESULT = "no result"
RANK = "below minimum rank"
DATE = "outside dates"
KOMI = "komi out of range"
NOT_ON_BOARD = "won on time or forfeit"


@dataclass(frozen=True)
class GameFilter:
    """Which games a dataset keeps. ``min_rank`` like ``"6d"`` or ``"1p"`` applies to both players."""

    size: int = 19
    min_moves: int = 20
    handicap: bool = True
    require_result: bool = False
    min_rank: str | None = None
    since: int | None = None  # first year kept (from DT)
    until: int | None = None  # last year kept
    min_komi: float | None = None  # a value net learns outcomes under one komi: keep games near it
    max_komi: float | None = None
    decided_on_board: bool = False  # skip wins on time (B+T) and by forfeit (B+F): their outcome is not the board's

    def reason_to_skip(self, game: Game) -> str | None:
        """Why a game of the right size is not kept, or None (size is the corpus reader's check)."""
        return self.reason_to_skip_facts(GameFacts.of(game))

    def reason_to_skip_facts(self, facts: GameFacts) -> str | None:
        """:meth:`reason_to_skip` from a game's :class:`GameFacts` (an index of games keeps these, not games)."""
        if facts.moves < self.min_moves:
            return TOO_SHORT
        if not self.handicap and (facts.handicap > 1 or facts.setup_stones):
            return HANDICAP
        if self.require_result and winner_of(facts.result) is None:
            return NO_RESULT
        if self.min_komi is not None and facts.komi < self.min_komi:
            return KOMI
        if self.max_komi is not None and facts.komi > self.max_komi:
            return KOMI
        if self.decided_on_board and result_kind(facts.result) in (TIME, FORFEIT):
            return NOT_ON_BOARD
        if self.min_rank is not None:
            floor = rank_value(self.min_rank)
            ranks = [rank_value(r) for r in (facts.black_rank, facts.white_rank)]
            if floor is None or any(r is None or r < floor for r in ranks):
                return RANK
        if self.since is not None or self.until is not None:
            year = _year(facts.date)
            if year is None or (self.since and year < self.since) or (self.until and year > self.until):
                return DATE
        return None


class GameFacts(NamedTuple):
    """What :class:`GameFilter` and the outcome rules read of a game: counts and root properties as text."""

    moves: int
    handicap: int
    setup_stones: int  # AB and AW stones of the root
    komi: float
    result: str  # RE, "" if absent
    black_rank: str  # BR, "" if absent
    white_rank: str
    date: str  # DT

    @classmethod
    def of(cls, game: Game) -> GameFacts:
        return cls(len(game.moves), game.handicap, len(game.setup[0]) + len(game.setup[1]), game.komi,
                   game.result or "", game.get("BR") or "", game.get("WR") or "", game.get("DT") or "")


# Kinds of result (:func:`result_kind`).
RESIGN, SCORE, WIN, TIME, FORFEIT, DRAW, VOID, UNKNOWN = (
    "resign", "score", "win", "time", "forfeit", "draw", "void", "unknown")
RESULT_KINDS = (RESIGN, SCORE, WIN, TIME, FORFEIT, DRAW, VOID, UNKNOWN)


def format_visits(visits: dict[int, int], size: int) -> str:
    """A :data:`SEARCH_VISITS` value: flat move (``size * size`` a pass) -> visits, most visited first."""
    points = {m: "tt" if m == size * size else coords.to_sgf(coords.from_flat(m, size), size) for m in visits}
    return " ".join(f"{points[m]}:{n}" for m, n in sorted(visits.items(), key=lambda mv: -mv[1]) if n > 0)


def parse_visits(text: str | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A :data:`SEARCH_VISITS` value -> (flat moves int16, their shares of the visits float32, summing to 1); both
    empty for none, or for a value that is not :func:`format_visits`'s (a foreign record's is not trusted)."""
    none = np.zeros(0, np.int16), np.zeros(0, np.float32)
    if not text:
        return none
    moves, counts = [], []
    try:
        for item in text.split():
            point, count = item.split(":")
            moves.append(coords.to_flat(coords.from_sgf(point, size), size))
            counts.append(int(count))
    except ValueError:
        return none
    total = sum(counts)
    if min(counts) < 0 or total == 0 or len(set(moves)) < len(moves):
        return none
    return np.array(moves, np.int16), np.array(counts, np.float32) / total


def result_kind(result: str | None) -> str:
    """How a game ended, from its ``RE``: ``B+R`` resign, ``W+3.5`` score, ``B+`` win (no reason given),
    ``B+T`` time, ``B+F`` forfeit, ``0``/``Draw``/``Jigo`` draw, ``Void`` void, anything else unknown."""
    text = (result or "").strip().upper()
    if text[:2] in ("B+", "W+"):
        rest = text[2:].strip()
        if not rest:
            return WIN
        if rest[0] == "R":
            return RESIGN
        if rest[0] == "T":
            return TIME
        if rest[0] == "F":
            return FORFEIT
        return SCORE if re.fullmatch(r"\d+(\.\d*)?", rest) else UNKNOWN
    if text in ("0", "DRAW", "JIGO") or text.startswith("JIGO"):
        return DRAW
    return VOID if text.startswith("VOID") else UNKNOWN


def winner_of(result: str | None) -> str | None:
    """``"B"`` or ``"W"`` from a result such as ``B+R`` (as :attr:`gogame.sgf.Game.winner`), else None."""
    text = (result or "").strip().upper()
    return text[0] if text[:2] in ("B+", "W+") else None


def rank_value(text: str) -> int | None:
    """Ranks on one scale: ``"30k"`` -> -29, ``"1k"`` -> 0, ``"1d"`` -> 1, ``"9d"`` -> 9, ``"1p"`` -> 10."""
    m = re.fullmatch(r"\s*(\d+)\s*([kdp])[a-z]*\s*\??", text.lower())
    if not m:
        return None
    n, kind = int(m.group(1)), m.group(2)
    return {"k": 1 - n, "d": n, "p": 9 + n}[kind]


def _year(date: str) -> int | None:
    m = re.match(r"\s*(\d{4})", date)
    return int(m.group(1)) if m else None


def split_of(name: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """The split of a game, from a hash of its name: stable across runs and worker counts."""
    u = zlib.crc32(f"{seed}:{name}".encode()) / 2**32
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


# -- encoding games ---------------------------------------------------------


_KIND = {"alphago48": 0, "alphago49": 1, "zero17": 2}


@nb.njit(cache=True)
def _pack_bits(planes: np.ndarray, out: np.ndarray) -> None:
    """``np.packbits(planes.reshape(-1))`` into ``out`` (big-endian bit order, zero padded)."""
    flat = planes.reshape(-1)
    for j in range(out.size):
        byte = 0
        for k in range(8):
            i = 8 * j + k
            byte = (byte << 1) | (flat[i] if i < flat.size else 0)
        out[j] = byte


@nb.njit(cache=True)
def _encode_game(start: fb.FastBoard, points: np.ndarray, colours: np.ndarray, rows: np.ndarray, kind: int,
                 scratch: np.ndarray, packed: np.ndarray) -> int:
    """Replay a game in numba, packing the planes before move ``i`` into ``packed[rows[i]]``.

    ``points`` are padded indices (``fb.PASS`` for a pass); ``rows[i] < 0``
    skips the planes of move ``i``. Returns the number of moves replayed:
    less than ``points.size`` if a move was illegal (occupied, suicide or
    simple ko, as a record is replayed).
    """
    b = fb.copy_board(start)
    history = np.zeros((8, b.colour.size), np.int8)  # colour arrays, newest first (zero17)
    history[0] = b.colour
    for i in range(points.size):
        c = colours[i]
        b.meta[fb.M_TO_MOVE] = c
        if rows[i] >= 0:
            if kind == 2:
                features.compute_zero17(history[: min(i + 1, 8)], c, scratch)
            else:
                features.compute_alphago(b, scratch, kind == 1)
            _pack_bits(scratch, packed[rows[i]])
        if not fb.is_legal(b, points[i], c):
            return i
        fb.play(b, points[i], c)
        history[1:] = history[:-1].copy()
        history[0] = b.colour
    return points.size


def encode_game(game: Game, feature_set: str, keep: np.ndarray | None = None) -> np.ndarray:
    """The packed planes before each move of ``game`` (uint8 ``(moves, nbytes)``).

    ``keep`` (sorted move indices) encodes only those moves: uint8
    ``(len(keep), nbytes)``; the whole game is replayed all the same, so an
    illegal move anywhere raises IllegalMove. ValueError for a game with
    setup stones after the root (not supported by the fast replay).
    """
    if any(name in node.properties for node in game.main_line()[1:] for name in ("AB", "AW", "AE")):
        raise ValueError("setup stones after the first node")
    return encode_moves(game.size, game.setup, game.moves, feature_set, keep)


def encode_moves(size: int, setup: tuple[Iterable[coords.Point], Iterable[coords.Point]],
                 moves: list[tuple[str, coords.Move]], feature_set: str, keep: np.ndarray | None = None) -> np.ndarray:
    """:func:`encode_game` for a record given as its size, root ``setup`` (black and white points) and
    ``(colour, move)`` list. An empty ``keep`` encodes nothing and only checks that the moves replay."""
    board = Board(size, 0.0, superko="none")
    board.setup(*setup)
    points = np.array([fb.PASS if m is None else board._index(m) for _, m in moves], np.int32)
    colours = np.array([fb.BLACK if c == "B" else fb.WHITE for c, _ in moves], np.int64)
    rows = np.arange(len(points)) if keep is None else np.full(len(points), -1)
    if keep is not None:
        rows[keep] = np.arange(len(keep))
    n_planes = features.FEATURE_SETS[feature_set]
    packed = np.zeros((int((rows >= 0).sum()), math.ceil(n_planes * size * size / 8)), np.uint8)
    scratch = np.zeros((n_planes, size, size), np.uint8)
    done = _encode_game(board.fast, points, colours, rows, _KIND[feature_set], scratch, packed)
    if done < len(points):
        colour, move = moves[done]
        raise IllegalMove(f"move {done + 1} ({colour} {coords.to_gtp(move)}) is illegal")
    return packed


def encode_games(games: Iterable[tuple[str, Game]], feature_set: str, size: int) -> dict[str, np.ndarray]:
    """Encode games of one board size into the shard arrays (see the module docstring).

    Raises as :func:`encode_game` for a game that does not replay.
    """
    all_moves = [(name, game, np.arange(len(game.moves))) for name, game in games]
    return assemble_shard([(name, game, keep, encode_game(game, feature_set)) for name, game, keep in all_moves],
                     feature_set, size)


def sample_moves(name: str, moves: int, per_game: int | None, seed: int) -> np.ndarray:
    """The sorted indices of the moves a dataset keeps from a game: all, or ``per_game`` drawn by a seeded hash of its name."""
    if per_game is None or per_game >= moves:
        return np.arange(moves)
    rng = np.random.default_rng(zlib.crc32(f"{seed}:{name}".encode()))
    return np.sort(rng.choice(moves, per_game, replace=False))


def assemble_shard(encoded: list[tuple[str, Game, np.ndarray, np.ndarray]], feature_set: str, size: int) -> dict[str, np.ndarray]:
    """The shard arrays of ``(name, game, kept move indices, packed planes)`` from :func:`encode_game`."""
    nbytes = math.ceil(features.FEATURE_SETS[feature_set] * size * size / 8)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ARRAYS}
    names, komis = [], []
    for name, game, keep, packed in encoded:
        if game.size != size:
            raise ValueError(f"{name}: a {game.size}x{game.size} game in a {size}x{size} dataset")
        winner = game.winner
        moves = [game.moves[i] for i in keep]
        parts["planes"].append(packed)
        parts["move"].append(np.array([size * size if m is None else m[0] * size + m[1] for _, m in moves], np.int16))
        parts["outcome"].append(np.array([0 if winner is None else (1 if winner == c else -1) for c, _ in moves], np.int8))
        parts["move_number"].append(keep.astype(np.int16))
        parts["game"].append(np.full(len(keep), len(names), np.int32))
        names.append(name)
        komis.append(game.komi)
    empty = {"planes": np.zeros((0, nbytes), np.uint8), "move": np.zeros(0, np.int16), "outcome": np.zeros(0, np.int8),
             "move_number": np.zeros(0, np.int16), "game": np.zeros(0, np.int32)}
    arrays = {k: np.concatenate(v) if v else empty[k] for k, v in parts.items()}
    arrays["game_name"] = np.array(names, dtype=np.str_)
    arrays["game_komi"] = np.array(komis, np.float32)
    return arrays


def save_shard(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz shard atomically (temporary file, then rename)."""
    write_atomically(path, lambda f: np.savez(f, **arrays))


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_shard(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a shard (never unpickles: ``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass(frozen=True)
class _Job:
    chunk: int
    files: list[tuple[str, bytes]]
    out_dir: Path
    feature_set: str
    game_filter: GameFilter
    seed: int
    val_fraction: float
    test_fraction: float
    positions_per_game: int | None


def _encode_chunk(job: _Job) -> dict:
    """Worker: parse, filter and encode one chunk of SGF files; write its shards and .done record."""
    skipped: Counter[str] = Counter()
    by_split: dict[str, list[tuple[str, Game, np.ndarray]]] = {s: [] for s in SPLITS}
    for name, game in parse_games(job.files, job.game_filter.size, skipped):
        reason = job.game_filter.reason_to_skip(game)
        if reason is None:
            keep = sample_moves(name, len(game.moves), job.positions_per_game, job.seed)
            try:
                packed = encode_game(game, job.feature_set, keep)
            except IllegalMove:
                reason = ILLEGAL
            except ValueError:
                reason = MID_GAME_SETUP
        if reason is not None:
            skipped[reason] += 1
            continue
        by_split[split_of(name, job.seed, job.val_fraction, job.test_fraction)].append((name, game, keep, packed))
    counts = {"chunk": job.chunk, "skipped": dict(skipped), "games": {}, "positions": {}}
    for split, games in by_split.items():
        arrays = assemble_shard(games, job.feature_set, job.game_filter.size)
        counts["games"][split] = len(games)
        counts["positions"][split] = int(arrays["move"].size)
        if games:
            save_shard(job.out_dir / f"{split}-{job.chunk:06d}.npz", arrays)
    done = job.out_dir / f"chunk-{job.chunk:06d}.done"
    done.write_text(json.dumps(counts))
    return counts


def _chunks(sources: list[str], games_per_chunk: int) -> Iterator[list[tuple[str, bytes]]]:
    files = iter_sgf(sources)
    while chunk := list(islice(files, games_per_chunk)):
        yield chunk


def build_dataset(
    sources: list[str],
    out_dir: str | os.PathLike,
    *,
    feature_set: str = "alphago48",
    game_filter: GameFilter = GameFilter(),
    workers: int | None = None,
    games_per_chunk: int = 250,
    seed: int = 0,
    val_fraction: float = 0.02,
    test_fraction: float = 0.02,
    max_games: int | None = None,
    positions_per_game: int | None = None,
) -> dict:
    """Build (or finish building) a shard dataset; returns the summary also saved as ``summary.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "gogame-shards",
        "version": 1,
        "size": game_filter.size,
        "features": feature_set,
        "planes": features.FEATURE_SETS[feature_set],
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "filter": game_filter.__dict__,
        "positions_per_game": positions_per_game,
        "sources": [str(s) for s in sources],
    }
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if {k: old.get(k) for k in meta} != meta:
            raise ValueError(f"{out} holds a dataset built with other settings; use a new folder")
    else:
        meta_path.write_text(json.dumps(meta, indent=1))

    workers = workers or os.cpu_count() or 1
    totals = {"games": Counter(), "positions": Counter(), "skipped": Counter()}
    files = [(name, data) for name, data in islice(iter_sgf(sources), max_games)] if max_games else None
    chunks = (
        (files[i : i + games_per_chunk] for i in range(0, len(files), games_per_chunk))
        if files is not None
        else _chunks(sources, games_per_chunk)
    )

    def jobs() -> Iterator[_Job]:
        for i, chunk in enumerate(chunks):
            done = out / f"chunk-{i:06d}.done"
            if done.exists():
                _add(totals, json.loads(done.read_text()))
                bar.update(len(chunk))
                continue
            yield _Job(i, chunk, out, feature_set, game_filter, seed, val_fraction, test_fraction, positions_per_game)

    start = time.perf_counter()
    with tqdm(desc="dataset", unit="file", total=max_games) as bar:
        with mp.get_context("spawn").Pool(workers) as pool:
            for counts in pool.imap_unordered(_encode_chunk, jobs()):
                _add(totals, counts)
                bar.update(sum(counts["games"].values()) + sum(counts["skipped"].values()))
                elapsed = time.perf_counter() - start
                bar.set_postfix(
                    games_s=f"{sum(totals['games'].values()) / elapsed:.0f}",
                    pos_s=f"{sum(totals['positions'].values()) / elapsed:.0f}",
                )
    summary = {**meta, **{k: dict(v) for k, v in totals.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _add(totals: dict[str, Counter], counts: dict) -> None:
    for key in totals:
        totals[key].update(counts[key])


# -- reading back -------------------------------------------------------------


def shard_paths(data_dir: str | os.PathLike, split: str) -> list[Path]:
    return sorted(Path(data_dir).glob(f"{split}-*.npz"))


def manifest_paths(manifest: dict | None) -> list[Path]:
    """The shard paths a :meth:`PositionBatches.manifest` lists, in its order (none for None)."""
    return [Path(entry["path"]) for entry in (manifest or {}).get("inputs", [])]


def dataset_meta(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{data_dir} is not a dataset folder (no meta.json); build one with gogame-train dataset")
    return json.loads(path.read_text())


class PositionBatches:
    """A resumable batch source (see :class:`training.trainer.BatchSource`) over shards or in-memory arrays.

    Each epoch visits every position once in an order seeded by ``seed +
    epoch``: the shards are shuffled, read ``shards_in_memory`` at a time, and
    the positions of each group shuffled together, so data larger than memory
    streams. ``one_per_game`` instead yields one random position of each game
    per epoch (for value training, as AlphaGo did to avoid correlated targets);
    ``decided_only`` keeps only games with a recorded winner. ``ownership``
    tells whether every shard has the ``ownership`` array; batches then carry it
    (float ``(B, S*S)``). ``cache`` keeps
    every shard in memory after its first reading (for data that fits, and
    is read whole each epoch while few positions are used, as with
    ``one_per_game``).
    A batch is a dict of tensors: ``planes`` (uint8, packed), ``move``,
    ``outcome`` (float) and ``move_number``, and the ``symmetry`` offset.
    Training drops the positions that do not fill a last batch (every rank
    steps in lockstep); validation keeps them (``drop_last=False``).
    """

    def __init__(
        self,
        source: list[Path] | dict[str, np.ndarray],
        batch_size: int,
        *,
        seed: int = 0,
        shards_in_memory: int = 8,
        one_per_game: bool = False,
        decided_only: bool = False,
        shuffle: bool = True,
        drop_last: bool = True,
        cache: bool = False,
    ) -> None:
        self.one_per_game = one_per_game
        self.decided_only = decided_only
        self.groups: list[list[Path]] | list[dict[str, np.ndarray]]
        self._paths: list[Path] | None = None  # the shards, for the manifest
        self._inputs: list[dict] | None = None  # their sizes and digests, computed on the first manifest()
        if isinstance(source, dict):
            self.groups = [source]
            self.lengths = [self._length(source)]
            self.ownership = OWNERSHIP in source
        else:
            if not source:
                raise ValueError("no shards to read")
            missing = [str(p) for p in source if not Path(p).is_file()]
            if missing:
                raise FileNotFoundError(f"shard {missing[0]} is missing" +
                                        (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
            self._paths = [Path(p) for p in source]
            self.groups = [[p] for p in self._paths]
            self.lengths, owned = [], []
            for path in source:  # one opening of each shard: its length and whether it has the final area
                with np.load(path, allow_pickle=False) as z:
                    self.lengths.append(self._length({k: z[k] for k in ("game", "outcome")}))
                    owned.append(OWNERSHIP in z.files)
            self.ownership = all(owned)
        self.batch_size = batch_size
        self.seed = seed
        self.shards_in_memory = shards_in_memory
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._cache: dict[Path, dict[str, np.ndarray]] | None = {} if cache else None

    def manifest(self) -> dict:
        """What this source reads and how it orders it: every shard with its size and SHA-256 (in-memory
        arrays: their digest), and the settings that change the batches. The trainer stores it at the start
        of a run and refuses to resume a run whose inputs differ."""
        settings = {"batch_size": self.batch_size, "seed": self.seed, "shards_in_memory": self.shards_in_memory,
                    "one_per_game": self.one_per_game, "decided_only": self.decided_only,
                    "shuffle": self.shuffle, "drop_last": self.drop_last}
        if self._paths is None:
            digest = hashlib.sha256()
            for name in sorted(self.groups[0]):
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(self.groups[0][name]).tobytes())
            return {"inputs": [], "arrays_sha256": digest.hexdigest(), "settings": settings}
        if self._inputs is None:
            self._inputs = [{"path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
                            for p in self._paths]
        return {"inputs": self._inputs, "settings": settings}

    def _length(self, arrays: dict[str, np.ndarray]) -> int:
        games = arrays["game"][arrays["outcome"] != 0] if self.decided_only else arrays["game"]
        return int(np.unique(games).size if self.one_per_game else games.size)

    def __len__(self) -> int:
        return sum(self.lengths)

    def num_batches(self, world_size: int = 1) -> int:
        """Full batches for every rank; with ``drop_last=False`` one more, partial, for the rest."""
        full, rest = divmod(len(self), self.batch_size * world_size)
        return full + (rest > 0 and not self.drop_last)

    def _load(self, group) -> dict[str, np.ndarray]:
        if isinstance(group, dict):
            return group
        if self._cache is None:
            return load_shard(group[0])
        if group[0] not in self._cache:
            self._cache[group[0]] = load_shard(group[0])
        return self._cache[group[0]]

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[dict]:
        rng = np.random.default_rng(self.seed + epoch)
        order = rng.permutation(len(self.groups)) if self.shuffle else np.arange(len(self.groups))
        step = self.batch_size * world_size
        total = self.num_batches(world_size)
        produced = 0
        carry: dict[str, np.ndarray] | None = None
        for g in range(0, len(order), self.shards_in_memory):
            parts = [self._load(self.groups[i]) for i in order[g : g + self.shards_in_memory]]
            pool = _concat([self._select(p, rng) for p in parts] + ([carry] if carry else []))
            idx = rng.permutation(pool["move"].size) if self.shuffle else np.arange(pool["move"].size)
            full = idx.size // step * step
            for b in range(0, full, step):
                if produced >= total:
                    return
                symmetry = int(rng.integers(8))  # drawn for skipped batches too, so resuming keeps the sequence
                if produced >= start:
                    yield self._batch(pool, idx[b + rank * self.batch_size : b + (rank + 1) * self.batch_size], symmetry)
                produced += 1
            carry = {k: v[idx[full:]] for k, v in pool.items()}
        if carry and produced < total and produced >= start:
            # The partial last batch (drop_last=False): its rows dealt out to the ranks.
            take = np.array_split(np.arange(carry["move"].size), world_size)[rank]
            yield self._batch(carry, take, int(rng.integers(8)))

    @staticmethod
    def _batch(pool: dict[str, np.ndarray], take: np.ndarray, symmetry: int) -> dict:
        batch = {
            "planes": torch.from_numpy(pool["planes"][take]),
            "move": torch.from_numpy(pool["move"][take].astype(np.int64)),
            "outcome": torch.from_numpy(pool["outcome"][take].astype(np.float32)),
            "move_number": torch.from_numpy(pool["move_number"][take].astype(np.int64)),
            "symmetry": symmetry,
        }
        if OWNERSHIP in pool:
            batch[OWNERSHIP] = torch.from_numpy(pool[OWNERSHIP][take].astype(np.float32))
        return batch

    def _select(self, arrays: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The per-position arrays, reduced to decided games and one random position per game if asked."""
        cols = {k: arrays[k] for k in ARRAYS + ((OWNERSHIP,) if self.ownership else ())}
        if self.decided_only:
            keep = cols["outcome"] != 0
            cols = {k: v[keep] for k, v in cols.items()}
        if not self.one_per_game:
            return cols
        games = cols["game"]
        # A random key per position; the first position of each game after sorting by (game, key) is kept.
        keys = rng.random(games.size)
        order = np.lexsort((keys, games))
        first = np.ones(order.size, bool)
        first[1:] = games[order][1:] != games[order][:-1]
        chosen = order[first]
        return {k: v[chosen] for k, v in cols.items()}


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# -- on the training device -------------------------------------------------------


def unpack_planes(packed: torch.Tensor, n_planes: int, size: int) -> torch.Tensor:
    """uint8 (B, nbytes) packed bits -> float32 (B, n_planes, size, size), on the tensor's device."""
    bits = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    unpacked = (packed.unsqueeze(-1) >> bits) & 1  # (B, nbytes, 8), big-endian as np.packbits
    flat = unpacked.reshape(packed.shape[0], -1)[:, : n_planes * size * size]
    return flat.reshape(-1, n_planes, size, size).float()


def apply_symmetries(planes: torch.Tensor, moves: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Transform planes (B, P, S, S) and flat moves (B,) together by the 8 board symmetries.

    The batch is cut in eighths; eighth ``j`` gets symmetry ``(offset + j) % 8``
    (``k % 4`` quarter turns, then a left-right flip if ``k >= 4``). Pass
    (``S * S``) stays pass.
    """
    size = planes.shape[-1]
    grid = torch.arange(size * size, device=planes.device).view(size, size)
    out_planes = torch.empty_like(planes)
    out_moves = moves.clone()
    for j, rows in enumerate(torch.arange(planes.shape[0], device=planes.device).chunk(8)):
        k = (offset + j) % 8
        out_planes[rows] = _transform(planes[rows], k)
        # _transform(grid)[new] = old, so new = argsort of it: where each old point went.
        where = torch.argsort(_transform(grid, k).reshape(-1))
        old = moves[rows]
        on_board = old < size * size
        out_moves[rows] = torch.where(on_board, where[old.clamp(max=size * size - 1)], old)
    return out_planes, out_moves


def _transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry k of the dihedral group on the last two dims: k % 4 quarter turns, then a flip if k >= 4."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


# -- the command ------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", help="SGF folders, files or archives (.tar.xz/.tar.gz/.tar.bz2/.zip), then OUT")
    parser.add_argument("--size", type=int, default=19)
    parser.add_argument("--features", default="alphago48", choices=sorted(features.FEATURE_SETS))
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--games-per-chunk", type=int, default=250)
    parser.add_argument("--max-games", type=int, default=None, help="read only the first N SGF files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split")
    parser.add_argument("--val", type=float, default=0.02, help="fraction of games for validation")
    parser.add_argument("--test", type=float, default=0.02, help="fraction of games for test")
    parser.add_argument("--min-moves", type=int, default=20)
    parser.add_argument("--no-handicap", action="store_true", help="skip handicap games")
    parser.add_argument("--require-result", action="store_true", help="skip games without a winner in RE")
    parser.add_argument("--min-rank", default=None, help='skip games with a player below this rank, e.g. "6d" or "1p"')
    parser.add_argument("--since", type=int, default=None, help="first year kept (DT)")
    parser.add_argument("--positions-per-game", type=int, default=None,
                        help="keep only this many positions of each game, drawn at random (value data)")
    parser.add_argument("--until", type=int, default=None, help="last year kept (DT)")
    parser.add_argument("--min-komi", type=float, default=None, help="skip games with a smaller komi (KM)")
    parser.add_argument("--max-komi", type=float, default=None, help="skip games with a larger komi (KM)")
    parser.add_argument("--decided-on-board", action="store_true", help="skip games won on time or by forfeit")


def run(args: argparse.Namespace) -> int:
    if len(args.sources) < 2:
        raise SystemExit("gogame-train dataset: give at least one SOURCE and the OUT folder")
    *sources, out = args.sources
    summary = build_dataset(
        sources,
        out,
        feature_set=args.features,
        game_filter=GameFilter(
            size=args.size,
            min_moves=args.min_moves,
            handicap=not args.no_handicap,
            require_result=args.require_result,
            min_rank=args.min_rank,
            since=args.since,
            until=args.until,
            min_komi=args.min_komi,
            max_komi=args.max_komi,
            decided_on_board=args.decided_on_board,
        ),
        workers=args.workers,
        games_per_chunk=args.games_per_chunk,
        seed=args.seed,
        val_fraction=args.val,
        test_fraction=args.test,
        max_games=args.max_games,
        positions_per_game=args.positions_per_game,
    )
    print(f"games by split: {summary['games']}")
    print(f"positions by split: {summary['positions']}")
    print(f"skipped games by reason: {summary['skipped'] or 'none'}")
    return 0
