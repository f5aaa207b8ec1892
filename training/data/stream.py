"""Expert games streamed from their SGF archives: moves, outcomes and final ownership, planes computed on the fly.

:class:`ExpertStream` is a :class:`training.trainer.BatchSource` over the games of one or more SGF archives (or
``.sgf`` files) with no shard step: a fresh machine needs nothing but the archives. Computing the alphago49 planes
of a position costs about 1/7,800 s of one core, while a dual net trains at tens of positions a second, so the
planes are made as the batches are read.

The first use of an archive builds its *index* (:func:`game_index`): per game its name, moves, setup stones, komi,
handicap, result, ranks and date, with a tqdm bar (about 80 s for the 66,000 games of ``pro19``), written
atomically to ``index_dir`` under the archive's sha256; later uses read it back in a fraction of a second. Games
that do not parse or replay are left out of the index (and counted in it). Everything after that reads the index
only: filtering (:class:`training.data.shards.GameFilter`), the split by game (:func:`training.data.shards.split_of` on the
name ``ARCHIVE_FILE_NAME/MEMBER``, so the split does not depend on where the archive lies), the order of an
epoch, and the position of any batch in it.

Order. Epoch ``e`` shuffles the games of the split with ``seed + e`` and cuts them into chunks of
``games_per_chunk``; the positions of a chunk (every position of every game in it) are shuffled together with a
generator seeded by ``(seed, e, chunk)``. The epoch is the concatenation of the shuffled chunks, cut into
batches of ``batch_size * world_size`` positions, rank ``r`` taking the ``r``-th ``batch_size`` of each. The
chunk sizes come from the index, so ``batches(e, start, ...)`` starts replaying at the chunk that holds batch
``start``: skipping costs no replay of earlier games.

A batch is a dict as :class:`training.data.shards.PositionBatches` gives, plus ``ownership`` and ``search_value``:

================ =================================== ===========================================================
key              type                                meaning
================ =================================== ===========================================================
``planes``       uint8 (B, ceil(49*S*S/8))           packed alphago49 planes (:func:`training.data.shards.unpack_planes`)
``move``         int64 (B,)                          the move played, ``row * S + col``, ``S * S`` for pass
``outcome``      float32 (B,)                        +1 the mover won, -1 lost, 0 where the result says nothing
                                                     about the position (:class:`OutcomeRule`)
``move_number``  int64 (B,)                          moves before this one in the game
``ownership``    float32 (B, S*S)                    the final owner of each point for the mover, in [-1, 1]
``search_value`` float32 (B,)                        the mover's value by the search made before the move, in
                                                     [-1, 1], where the record has one (self-play's
                                                     :data:`training.data.shards.SEARCH_VALUE`); NaN elsewhere
``rollout_value`` float32 (B,)                       only with ``rollout_value_playouts``: the mover's mean
                                                     result, in [-1, 1], of that many playouts from the position
                                                     (:func:`rollout_values`)
``search_policy`` float32 (B, S*S+1)                 only with ``search_policy``: the shares of the visits of the
                                                     root's moves by the search made before the move, pass last,
                                                     where the record has them (self-play's
                                                     :data:`training.data.shards.SEARCH_VISITS`); 0 elsewhere
``game``         int64 (B,)                          the position's game, by index in the split
                                                     (:meth:`ExpertStream.board`)
``symmetry``     int                                 the batch's symmetry offset (:func:`training.data.shards.apply_symmetries`)
================ =================================== ===========================================================

Ownership. Most records end by resignation, long before the board is settled, so the final owner of each point
is estimated by playing the game's last position (trailing passes dropped) out ``ownership_playouts`` times with
the shipped rollout policy (:meth:`gogame.mcts.Rollouts.ownership`) and averaging the owners (+1 black, -1
white): a soft target in [-1, 1], seeded per game by a hash of its name, so the same in every epoch and on every
machine. Turned to the mover's side, it is the ownership target of every position of the game.

Rollout values. A game's outcome is one noisy bit for all of its positions; the mean result of a few playouts of
the shipped rollout policy from each position (:func:`rollout_values`) is a dense, low-noise value of every
position, computed once per archive and cached beside its index, seeded per game, so the same on every machine.
"""

from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gogame import coords
from gogame import rollout as ro
from gogame.atomic import write_atomically
from gogame.board import Board, IllegalMove
from gogame.mcts import Rollouts
from training.data import shards
from training.data.corpus import read_games

INDEX_VERSION = 4
TEXT_CAP = 32  # characters kept of a result, rank or date (the filters read their start)
FEATURE_SET = "alphago49"
DEFAULT_INDEX_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gogame" / "expert-index"
_TEXT_FIELDS = ("name", "result", "black_rank", "white_rank", "date")
_LOADED: dict[Path, dict[str, np.ndarray]] = {}  # indexes read in this process (train and val share one)


@dataclass(frozen=True)
class OutcomeRule:
    """Which games' results become value targets; elsewhere the outcome is 0 (masked out of the value loss).

    ``results``: the result kinds (:data:`training.data.shards.RESULT_KINDS`) whose winner the position's outcome is:
    by default resignation, a counted score, or a win with no reason given; never time or forfeit (they say
    nothing about the board), nor draws, void or unknown results. ``min_komi`` / ``max_komi``: komi range
    (None: no bound): an outcome under a komi far from the one the net plays at teaches the wrong value.
    ``handicap``: whether handicap games (HA above 1 or setup stones) teach outcomes.
    """

    results: tuple[str, ...] = (shards.RESIGN, shards.SCORE, shards.WIN)
    min_komi: float | None = 5.5
    max_komi: float | None = 7.5
    handicap: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.results) - set(shards.RESULT_KINDS)
        if unknown:
            raise ValueError(f"unknown result kinds {sorted(unknown)}; kinds: {', '.join(shards.RESULT_KINDS)}")

    def winner(self, facts: shards.GameFacts) -> str | None:
        """``"B"`` or ``"W"`` when the game's result teaches an outcome, else None."""
        if shards.result_kind(facts.result) not in self.results:
            return None
        if (self.min_komi is not None and facts.komi < self.min_komi) or \
                (self.max_komi is not None and facts.komi > self.max_komi):
            return None
        if not self.handicap and (facts.handicap > 1 or facts.setup_stones):
            return None
        return shards.winner_of(facts.result)


def game_index(path: str | os.PathLike, size: int, index_dir: str | os.PathLike | None = None, *,
               sha256: str | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """The index of the ``size`` x ``size`` games of the SGF archive or file at ``path`` (see the module docstring).

    Arrays: ``name``, ``result``, ``black_rank``, ``white_rank``, ``date`` (str), ``komi`` (float32), ``handicap``
    (int16), ``move_start`` (int64, games + 1 offsets into ``move``, ``colour``, ``search_value`` and
    ``visits_start``: int16 flat points ``row * size + col``, ``size * size`` for pass, int8 1 black / 2 white,
    float16 black's win rate by the search before the move, NaN where the record has none, and int64 offsets,
    one per move and one more, into ``visits_move`` and ``visits_share``: that search's root moves, int16 flat,
    and their shares of its visits, float16, none where the record has none), ``setup_start`` and ``setup``
    (int64 offsets, int16 flat points of AB then AW), ``setup_black`` (int16: how many of a game's setup points
    are black), and ``skipped`` (a JSON count of the games left out by reason). Results, ranks and dates are
    stripped and cut to :data:`TEXT_CAP` characters (numpy keeps every string as wide as the longest). Built
    once and cached, compressed, in ``index_dir`` (default :data:`DEFAULT_INDEX_DIR`) under the file's sha256
    (pass ``sha256`` if known); read once per process.
    """
    sha256 = sha256 or shards.file_sha256(path)
    cache = Path(index_dir or DEFAULT_INDEX_DIR) / f"{sha256}-{size}-v{INDEX_VERSION}.npz"
    if cache in _LOADED:
        return _LOADED[cache]
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            _LOADED[cache] = {k: z[k] for k in z.files}
        return _LOADED[cache]
    path = Path(path)
    prefix = str(path)
    text: dict[str, list[str]] = {k: [] for k in _TEXT_FIELDS}
    komi, handicap, moves, colours, values, setup, setup_black = [], [], [], [], [], [], []
    visits_per_move, visits_move, visits_share = [], [], []
    skipped: Counter[str] = Counter()
    for name, game in tqdm(read_games(path, size, skipped), desc=f"indexing {path.name}", unit="game",
                           disable=not progress):
        try:
            shards.encode_game(game, FEATURE_SET, np.empty(0, np.int64))  # replays the moves: legality only
        except IllegalMove:
            skipped[shards.ILLEGAL] += 1
            continue
        except ValueError:
            skipped[shards.MID_GAME_SETUP] += 1
            continue
        facts = shards.GameFacts.of(game)
        short = path.name + name[len(prefix):] if name.startswith(prefix) else name
        text["name"].append(short)
        for key, value in zip(_TEXT_FIELDS[1:], (facts.result, facts.black_rank, facts.white_rank, facts.date)):
            text[key].append(value.strip()[:TEXT_CAP])
        komi.append(game.komi)
        handicap.append(game.handicap)
        moves.append(np.array([coords.to_flat(m, size) for _, m in game.moves], np.int16))
        colours.append(np.array([1 if c == "B" else 2 for c, _ in game.moves], np.int8))
        values.append(np.array([_win_rate(v) for v in game.move_property(shards.SEARCH_VALUE)], np.float16))
        for recorded in game.move_property(shards.SEARCH_VISITS):
            searched, share = shards.parse_visits(recorded, size)
            visits_per_move.append(searched.size)
            visits_move.append(searched)
            visits_share.append(share.astype(np.float16))
        black, white = (sorted(points) for points in game.setup)
        setup.append(np.array([coords.to_flat(p, size) for p in black + white], np.int16))
        setup_black.append(len(black))
    index = {k: np.array(v, dtype=np.str_) for k, v in text.items()}
    index.update(
        komi=np.array(komi, np.float32), handicap=np.array(handicap, np.int16),
        move_start=np.concatenate([[0], np.cumsum([m.size for m in moves])]).astype(np.int64),
        move=np.concatenate(moves or [np.zeros(0, np.int16)]), colour=np.concatenate(colours or [np.zeros(0, np.int8)]),
        search_value=np.concatenate(values or [np.zeros(0, np.float16)]),
        visits_start=np.concatenate([[0], np.cumsum(visits_per_move, dtype=np.int64)]).astype(np.int64),
        visits_move=np.concatenate(visits_move or [np.zeros(0, np.int16)]),
        visits_share=np.concatenate(visits_share or [np.zeros(0, np.float16)]),
        setup_start=np.concatenate([[0], np.cumsum([p.size for p in setup])]).astype(np.int64),
        setup=np.concatenate(setup or [np.zeros(0, np.int16)]), setup_black=np.array(setup_black, np.int16),
        skipped=np.array(json.dumps(dict(skipped))))
    write_atomically(cache, lambda f: np.savez_compressed(f, **index))
    _LOADED[cache] = index
    return index


def index_record(index: dict[str, np.ndarray], g: int, size: int
                 ) -> tuple[tuple[list, list], list[tuple[str, coords.Move]]]:
    """Game ``g`` of ``index``: ``((black setup points, white setup points), (colour, move) list)``."""
    points = index["setup"][index["setup_start"][g]:index["setup_start"][g + 1]]
    setup = [coords.from_flat(int(p), size) for p in points]
    nb = int(index["setup_black"][g])
    a, b = index["move_start"][g], index["move_start"][g + 1]
    moves = [("B" if c == 1 else "W", coords.from_flat(int(p), size))
             for p, c in zip(index["move"][a:b], index["colour"][a:b])]
    return (setup[:nb], setup[nb:]), moves


def rollout_values(index: dict[str, np.ndarray], size: int, playouts: int, cache: str | os.PathLike, *,
                   threads: int = 1, progress: bool = True) -> np.ndarray:
    """float16, aligned with ``index["move"]``: black's share of wins (a tie half) in ``playouts`` playouts of
    the shipped rollout policy from the position before each move, that move's player to play, at the game's
    komi. Position ``k`` of a game seeds its playouts ``crc32(name) << 24 + k * playouts`` on. Built once (tqdm,
    ``threads`` rollout threads; about 1/2,000 s of one core a 9x9 playout) and written atomically to
    ``cache``; read back after that.
    """
    cache = Path(cache)
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return z["black_win_rate"]
    rollouts = Rollouts(ro.RolloutPolicy.load(), threads=threads)
    out = np.empty(index["move"].size, np.float16)
    for g in tqdm(range(index["name"].size), desc=f"rollout values ({playouts} playouts)", unit="game",
                  disable=not progress):
        setup, moves = index_record(index, g, size)
        board = Board(size, float(index["komi"][g]), superko="none")
        board.setup(*setup)
        seed, start = zlib.crc32(str(index["name"][g]).encode()) << 24, int(index["move_start"][g])
        for k, (colour, move) in enumerate(moves):
            board.to_move = colour
            margins = rollouts.margins(board, playouts, seed + k * playouts)
            out[start + k] = (np.count_nonzero(margins > 0) + 0.5 * np.count_nonzero(margins == 0)) / playouts
            board.play(move, colour)
    write_atomically(cache, lambda f: np.savez_compressed(f, black_win_rate=out))
    return out


def _win_rate(text: str | None) -> float:
    """A search-value property's win rate; NaN for none, or for one that is not a number in [0, 1]."""
    try:
        value = float(text) if text is not None else np.nan
    except ValueError:
        return np.nan
    return value if 0.0 <= value <= 1.0 else np.nan


class ExpertStream:
    """A resumable batch source of expert positions from SGF archives (see the module docstring).

    ``sources``: archives or ``.sgf`` files (one index each). ``split``: ``"train"``, ``"val"`` or ``"test"``,
    by :func:`training.data.shards.split_of` with ``split_seed``, ``val_fraction`` and ``test_fraction``.
    ``game_filter`` picks the games (its ``size`` is the board's); ``outcome`` says which games teach values.
    ``value_positions`` (0: all) keeps the outcome of only that many positions of each game, drawn by a hash of
    its name, and sets the others' to 0: AlphaGo's remedy for a value net that learns to recognise a game's
    positions instead of judging them, since successive positions differ by a stone and share one outcome.
    ``positions_per_game`` (0: all) keeps only that many positions of each game for every head, drawn afresh
    each epoch by a hash of the game's name and the epoch: an epoch then sweeps many more games for the same
    number of positions, which the value head needs (one outcome a game, few games seen otherwise), and costs
    the planes of the kept positions only. ``rollout_value_playouts`` (0: none) adds each position's
    ``rollout_value`` (:func:`rollout_values`, built on first use in ``rollout_threads`` threads);
    ``search_policy`` adds each position's ``search_policy``. ``drop_last`` (training) yields only full batches, so every rank
    gets :meth:`num_batches`; without it the partial last batch is dealt out to the ranks (validation). ``max_batches`` (0: no limit) cuts each epoch
    short: a quick validation on a fixed sample. Raises FileNotFoundError for a missing source and ValueError
    for bad settings or a split with no game.
    """

    def __init__(self, sources: Sequence[str | os.PathLike], batch_size: int, *, split: str = "train",
                 game_filter: shards.GameFilter = shards.GameFilter(), outcome: OutcomeRule = OutcomeRule(),
                 seed: int = 0, split_seed: int = 0, val_fraction: float = 0.02, test_fraction: float = 0.02,
                 games_per_chunk: int = 64, ownership_playouts: int = 32, value_positions: int = 0,
                 positions_per_game: int = 0, rollout_value_playouts: int = 0, rollout_threads: int = 1,
                 search_policy: bool = False, drop_last: bool = True, max_batches: int = 0, index_dir: str | os.PathLike | None = None,
                 progress: bool = True) -> None:
        if split not in shards.SPLITS:
            raise ValueError(f"split must be one of {shards.SPLITS}, not {split!r}")
        if batch_size < 1 or games_per_chunk < 1 or ownership_playouts < 1 or \
                min(max_batches, value_positions, positions_per_game, rollout_value_playouts) < 0:
            raise ValueError("batch_size, games_per_chunk and ownership_playouts must be positive, "
                             "max_batches, value_positions, positions_per_game and rollout_value_playouts "
                             "not negative")
        if not sources:
            raise ValueError("no SGF archive to read")
        self.size = coords.check_size(game_filter.size)
        self.batch_size, self.split, self.game_filter, self.outcome = batch_size, split, game_filter, outcome
        self.seed, self.split_seed = seed, split_seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.games_per_chunk, self.ownership_playouts = games_per_chunk, ownership_playouts
        self.value_positions, self.positions_per_game = value_positions, positions_per_game
        self.rollout_value_playouts, self.search_policy = rollout_value_playouts, search_policy
        self.drop_last, self.max_batches = drop_last, max_batches
        self.inputs = []
        self._rollout_values: dict[int, np.ndarray] = {}  # id(index) -> rollout_values of its archive
        self._games: list[tuple[dict[str, np.ndarray], int]] = []  # (index, game) of the split's games, in order
        for source in sources:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such SGF archive or file")
            digest = shards.file_sha256(path)
            # the path as given (relative to where the run is started), so another clone's manifest is the same
            self.inputs.append({"path": str(path), "bytes": path.stat().st_size, "sha256": digest})
            index = game_index(path, self.size, index_dir, sha256=digest, progress=progress)
            if rollout_value_playouts:
                policy = shards.file_sha256(ro.DEFAULT_ROLLOUT)[:16]
                cache = Path(index_dir or DEFAULT_INDEX_DIR) / \
                    f"{digest}-{self.size}-v{INDEX_VERSION}-rollouts{rollout_value_playouts}-{policy}.npz"
                self._rollout_values[id(index)] = rollout_values(index, self.size, rollout_value_playouts, cache,
                                                                 threads=rollout_threads, progress=progress)
            for g in range(index["name"].size):
                if game_filter.reason_to_skip_facts(self._facts(index, g)) is None and \
                        shards.split_of(str(index["name"][g]), split_seed, val_fraction, test_fraction) == split:
                    self._games.append((index, g))
        if not self._games:
            raise ValueError(f"no game of the {split} split passes the filter in {', '.join(map(str, sources))}")
        self._lengths = np.array([int(ix["move_start"][g + 1] - ix["move_start"][g]) for ix, g in self._games])
        if positions_per_game:
            self._lengths = np.minimum(self._lengths, positions_per_game)
        self._rollouts = Rollouts(ro.RolloutPolicy.load(), threads=1)

    @staticmethod
    def _facts(index: dict[str, np.ndarray], g: int) -> shards.GameFacts:
        start, stop = index["setup_start"][g], index["setup_start"][g + 1]
        return shards.GameFacts(int(index["move_start"][g + 1] - index["move_start"][g]), int(index["handicap"][g]),
                                int(stop - start), float(index["komi"][g]), str(index["result"][g]),
                                str(index["black_rank"][g]), str(index["white_rank"][g]), str(index["date"][g]))

    # -- what the stream is -----------------------------------------------------------------------------------

    @property
    def games(self) -> int:
        return len(self._games)

    @property
    def names(self) -> list[str]:
        """The names of the split's games, in index order."""
        return [str(index["name"][g]) for index, g in self._games]

    def __len__(self) -> int:
        """Positions in one epoch (before ``max_batches``)."""
        return int(self._lengths.sum())

    def manifest(self) -> dict:
        """The inputs (path, bytes, sha256) and every setting that changes the stream, as JSON-able data."""
        settings = {
            "size": self.size, "features": FEATURE_SET, "batch_size": self.batch_size, "split": self.split,
            "game_filter": asdict(self.game_filter), "outcome": {**asdict(self.outcome),
                                                                 "results": list(self.outcome.results)},
            "seed": self.seed, "split_seed": self.split_seed, "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction, "games_per_chunk": self.games_per_chunk,
            "ownership_playouts": self.ownership_playouts, "ownership_policy": str(ro.DEFAULT_ROLLOUT.name),
            **({"value_positions": self.value_positions} if self.value_positions else {}),
            **({"positions_per_game": self.positions_per_game} if self.positions_per_game else {}),
            **({"rollout_value_playouts": self.rollout_value_playouts} if self.rollout_value_playouts else {}),
            **({"search_policy": True} if self.search_policy else {}),
            "drop_last": self.drop_last, "max_batches": self.max_batches,
        }
        return {"inputs": [dict(i) for i in self.inputs], "settings": settings}

    def num_batches(self, world_size: int = 1) -> int:
        full, rest = divmod(len(self), self.batch_size * world_size)
        n = full + (rest > 0 and not self.drop_last)
        return min(n, self.max_batches) if self.max_batches else n

    # -- one game -----------------------------------------------------------------------------------------------

    def record(self, i: int) -> tuple[tuple[list, list], list[tuple[str, coords.Move]], shards.GameFacts, str]:
        """Game ``i`` of the split (index order) from the index: ``((black setup points, white setup points),
        (colour, move) list, facts, name)``."""
        index, g = self._games[i]
        setup, moves = index_record(index, g, self.size)
        return setup, moves, self._facts(index, g), str(index["name"][g])

    def board(self, i: int, moves: int | None = None) -> Board:
        """Game ``i``'s board (its komi, no superko) before move ``moves`` (a position's ``move_number``), the
        next player to move; with None, after every move but trailing passes."""
        setup, record, facts, _ = self.record(i)
        if moves is None:
            moves = len(record)
            while moves and record[moves - 1][1] is None:
                moves -= 1
        board = Board(self.size, facts.komi, superko="none")
        board.setup(*setup)
        for colour, move in record[:moves]:
            board.play(move, colour)
        if moves < len(record):
            board.to_move = record[moves][0]
        return board

    def final_ownership(self, i: int) -> np.ndarray:
        """float64 ``(size * size,)`` in [-1, 1], flat ``row * size + col``: game ``i``'s estimated final owner
        (+1 black), from ``ownership_playouts`` rollouts of its last position (trailing passes dropped)."""
        index, g = self._games[i]
        seed = zlib.crc32(str(index["name"][g]).encode()) << 16
        return self._rollouts.ownership(self.board(i), self.ownership_playouts, seed).reshape(-1)

    def game_arrays(self, i: int, epoch: int = 0) -> dict[str, np.ndarray]:
        """The per-position arrays of game ``i`` of the split (index order) in ``epoch``: ``planes``, ``move``,
        ``outcome``, ``move_number``, ``ownership``, ``search_value``, ``game`` (and ``rollout_value``,
        ``search_policy``) as in a
        batch, before shuffling; every position, or the ``positions_per_game`` kept in that epoch, in move order."""
        setup, moves, facts, name = self.record(i)
        size = self.size
        keep = shards.sample_moves(name, len(moves), self.positions_per_game or None, epoch)
        packed = shards.encode_moves(size, setup, moves, FEATURE_SET, keep)
        black = np.array([c == "B" for c, _ in moves])
        mover = np.where(black, 1, -1).astype(np.int8)
        winner = self.outcome.winner(facts)
        outcome = np.zeros(len(moves), np.int8) if winner is None else mover * (1 if winner == "B" else -1)
        if 0 < self.value_positions < len(moves):
            rng = np.random.default_rng([zlib.crc32(name.encode()), 1])
            kept = np.zeros(len(moves), bool)
            kept[rng.choice(len(moves), self.value_positions, replace=False)] = True
            outcome = np.where(kept, outcome, 0).astype(np.int8)
        owner = self.final_ownership(i).astype(np.float32)
        index, g = self._games[i]
        moves_of = slice(index["move_start"][g], index["move_start"][g + 1])
        black_value = index["search_value"][moves_of].astype(np.float32)
        rollout_value = {}
        if self.rollout_value_playouts:
            black_rate = self._rollout_values[id(index)][moves_of].astype(np.float32)
            rollout_value["rollout_value"] = (mover * (2 * black_rate - 1))[keep]
        if self.search_policy:
            rollout_value["search_policy"] = self._search_policy(index, int(index["move_start"][g]) + keep)
        return {
            "planes": packed,
            "move": np.array([coords.to_flat(moves[k][1], size) for k in keep], np.int64),
            "outcome": outcome[keep].astype(np.float32),
            "move_number": keep.astype(np.int64),
            shards.OWNERSHIP: mover[keep, None].astype(np.float32) * owner[None, :],
            "search_value": (mover * (2 * black_value - 1))[keep],
            "game": np.full(keep.size, i, np.int64),
            **rollout_value,
        }

    def _search_policy(self, index: dict[str, np.ndarray], moves: np.ndarray) -> np.ndarray:
        """float32 ``(len(moves), size * size + 1)``: the visit shares of the searches before the archive's
        ``moves`` (flat indices into its ``move``), rows of 0 where a record has none."""
        starts = index["visits_start"][moves]
        counts = index["visits_start"][moves + 1] - starts
        rows = np.repeat(np.arange(moves.size), counts)
        # each row's entries: its start, then one on per entry (the rank of an entry within its row)
        entries = np.repeat(starts, counts) + np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        policy = np.zeros((moves.size, self.size * self.size + 1), np.float32)
        policy[rows, index["visits_move"][entries]] = index["visits_share"][entries]
        return policy

    # -- epochs ---------------------------------------------------------------------------------------------------

    def _chunks(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng(self.seed + epoch).permutation(len(self._games))
        return [order[i:i + self.games_per_chunk] for i in range(0, order.size, self.games_per_chunk)]

    def _chunk(self, epoch: int, k: int, games: np.ndarray) -> dict[str, np.ndarray]:
        parts = [self.game_arrays(int(i), epoch) for i in games]
        pool = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        shuffle = np.random.default_rng([self.seed, epoch, k]).permutation(pool["move"].size)
        return {key: v[shuffle] for key, v in pool.items()}

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[dict]:
        """The batches of ``epoch`` for ``rank`` of ``world_size``, from batch ``start`` on (see the module
        docstring); the same arguments always give the same batches."""
        step = self.batch_size * world_size
        total = self.num_batches(world_size)
        if start >= total:
            return
        chunks = self._chunks(epoch)
        ends = np.cumsum([self._lengths[c].sum() for c in chunks])
        k = int(np.searchsorted(ends, start * step, side="right"))  # the chunk holding the first position
        buffer: dict[str, np.ndarray] | None = None
        buffer_start = int(ends[k - 1]) if k else 0  # the epoch position of buffer's first row
        for j in range(start, total):
            first, stop = j * step, min((j + 1) * step, int(ends[-1]))
            while buffer_start + (0 if buffer is None else buffer["move"].size) < stop:
                fresh = self._chunk(epoch, k, chunks[k])
                buffer = fresh if buffer is None else {key: np.concatenate([v, fresh[key]])
                                                       for key, v in buffer.items()}
                k += 1
            assert buffer is not None
            rows = np.arange(first, stop) - buffer_start
            take = rows[rank * self.batch_size:(rank + 1) * self.batch_size] if stop - first == step else \
                np.array_split(rows, world_size)[rank]
            symmetry = int(np.random.default_rng([self.seed, epoch, j, 8]).integers(8))
            yield self._batch(buffer, take, symmetry)
            drop = stop - buffer_start
            buffer = {key: v[drop:] for key, v in buffer.items()}
            buffer_start = stop

    @staticmethod
    def _batch(pool: dict[str, np.ndarray], take: np.ndarray, symmetry: int) -> dict:
        batch = {key: torch.from_numpy(np.ascontiguousarray(v[take])) for key, v in pool.items()}
        batch["symmetry"] = symmetry
        return batch

