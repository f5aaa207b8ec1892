"""Self-play: the one batched game player, and ``gogame-train selfplay`` that writes its games to shards.

:func:`play_games` plays many games at once. Each step computes the alphago49 planes and the legal moves of
every unfinished game, then asks each player for the moves of the games where it is to move: one batched
forward of a policy net over all of them (:class:`NetPlayer`), or one search each (:class:`SearchPlayer`).
A :class:`Plan` per game says who plays which move and which positions to keep, so the same loop serves
self-play data (one player, every position), the RL stage (learner against a pool opponent, the learner's
positions) and the value data (SL policy, one random move, RL policy, one position).

Pass rule: a player is asked for a move only while the side to move has a *sensible* move (legal, superko
included, and not filling its own eye: feature plane 46); net players never pass while one exists. With none
left the side passes. So games are played out to the end, dead stones captured, and the Tromp-Taylor area
score of :meth:`gogame.board.Board.score` (every stone alive) is the right result. A game ends at two passes
or at the move cap (default ``2 * size * size``), when it is scored as it stands.

``gogame-train selfplay --size 9 --games N --out DIR`` shares the games out in shards of
``--games-per-shard`` to ``--workers`` processes. Shard ``j`` of a tag (``--tag``, one per machine when
several feed one folder) always holds the same games: ``{split}-{tag}-{j}.npz`` in the
:mod:`training.data.shards` format (alphago49 planes, every position, split by a hash of the game name),
``sgf/{tag}-{j}.sgf`` with its games, then ``{tag}-{j}.done`` with its counts, each written atomically. A
rerun skips the shards that are done, so a killed run loses at most the shards it was playing and never
counts a game twice.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import signal
import time
import weakref
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gogame import coords, features, inference, nets, sgf
from gogame import rollout as ro
from gogame.api import Engine
from gogame.atomic import write_atomically
from gogame.board import Board, IllegalMove, format_result
from training.data import shards, stream
from training.options import REQUIRED, option
from training.stopping import RunStopped, StopOptions, StopRequest

FEATURES = "alphago49"  # what the loop computes; policy nets read the first 48 planes
SENSIBLE = features.plane_slice("alphago48", "sensibleness").start
RANDOM = -1  # a Plan's player index for a uniformly random legal move
RECORDS = ("all", "black", "white", "after_random", "none")


# -- players -----------------------------------------------------------------------------------------------


class NetPlayer:
    """Samples moves from a policy net's softmax over the sensible moves, at ``temperature``, batched.

    ``backend`` runs the net (:func:`gogame.inference.runner`, on the net's device; with ``bf16``, in bf16 where
    native on the torch backend: twice the games per second on such a CPU), with the weights of the moment the
    player is made; a ``live`` player (the RL learner, whose weights change between calls) runs the net itself
    on the torch backend.
    """

    def __init__(self, net: nets.PolicyNet, temperature: float = 1.0, backend: str = "auto", *,
                 bf16: bool = True, live: bool = False) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        self.net, self.temperature = net, temperature
        self.run = inference.runner(net, "torch" if live else backend, device=next(net.parameters()).device,
                                    bf16=bf16, live=live)

    def choose(self, boards: Sequence[Board], planes: np.ndarray, sensible: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        """Flat moves (``row * size + col``) for ``boards``, each among its ``sensible`` (B, size*size) points."""
        logp = inference.policy(self.run, planes[:, : self.net.in_planes], inference.symmetries("none", len(planes)))
        logits = logp[:, : sensible.shape[1]] / self.temperature
        gumbel = rng.gumbel(size=logits.shape)  # argmax of logits + Gumbel noise samples the softmax
        return np.where(sensible, logits + gumbel, -np.inf).argmax(axis=1)


class SearchPlayer:
    """Plays the most visited move of an MCTS search of ``visits`` visits, one board at a time (may pass).

    For a game's first ``sample_moves`` moves it plays a move drawn in proportion to the visits instead, after
    a search of the whole budget (AlphaGo Zero's temperature 1: varied openings, so that the games of one net
    differ); later the search stops once its move is decided (:meth:`gogame.mcts.MCTS.search`), which plays the
    same move sooner. Once a search gives the side to move a win rate below ``decided_below`` or above
    ``1 - decided_below``, the game is decided: ``finisher`` (a fast :class:`NetPlayer`) plays the rest of it,
    to the end, so that its result and final area come at a fraction of the searches' cost.
    """

    def __init__(self, engine: Engine, visits: int, sample_moves: int = 0, decided_below: float = 0.0,
                 finisher: NetPlayer | None = None) -> None:
        if visits < 1 or sample_moves < 0:
            raise ValueError(f"visits must be at least 1 and sample_moves not negative, not {visits}, {sample_moves}")
        if not 0 <= decided_below < 0.5 or (decided_below and finisher is None):
            raise ValueError(f"decided_below must be in [0, 0.5) and needs a finisher, not {decided_below}")
        self.engine, self.visits, self.sample_moves = engine, visits, sample_moves
        self.decided_below, self.finisher = decided_below, finisher
        self._decided: weakref.WeakSet[Board] = weakref.WeakSet()
        self.winrates_black = np.zeros(0)  # per board of the last choose: black's win rate by its search
        self.root_visits: list[dict[int, int] | None] = []  # and its root's visits by flat move

    def choose(self, boards: Sequence[Board], planes: np.ndarray, sensible: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        """As :meth:`NetPlayer.choose`; :attr:`winrates_black` then holds black's win rate by each board's search
        and :attr:`root_visits` the visits of its root's moves (NaN and None for a decided game's move, which the
        finisher plays without a search)."""
        fast = np.array([b in self._decided for b in boards], bool)
        chosen = np.zeros(len(boards), np.int64)
        self.winrates_black = np.full(len(boards), np.nan)
        self.root_visits = [None] * len(boards)
        for k in np.flatnonzero(~fast):
            chosen[k], self.winrates_black[k], self.root_visits[k] = self._move(boards[k], rng)
        if fast.any():
            chosen[fast] = self.finisher.choose([b for b, f in zip(boards, fast) if f], planes[fast], sensible[fast],
                                                rng)
        return chosen

    def _move(self, board: Board, rng: np.random.Generator) -> tuple[int, float, dict[int, int]]:
        """The flat move, black's win rate by the search, and its root's visits by flat move."""
        sampling = board.move_number < self.sample_moves
        analysis = self.engine.analyze(board, self.visits, stop_when_decided=not sampling)
        if min(analysis.winrate, 1 - analysis.winrate) < self.decided_below:
            self._decided.add(board)
        visits = {coords.to_flat(coords.parse_move(c.move, board.size), board.size): c.visits
                  for c in analysis.candidates}
        move = coords.to_flat(coords.parse_move(analysis.move, board.size), board.size)
        if sampling and visits:
            counts = np.array(list(visits.values()), np.float64)
            move = list(visits)[rng.choice(counts.size, p=counts / counts.sum())]
        return move, analysis.winrate_black, visits


Player = NetPlayer | SearchPlayer


# -- the game loop -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Who plays each move of one game, and which positions to keep.

    ``black`` / ``white`` index the players of :func:`play_games`. With ``random_at`` set (a 0-based move
    index), moves before it are ``opening``'s, that move is a uniformly random legal one, and the seats play
    from then on (AlphaGo's value data). ``record``: ``"all"`` positions, those where ``"black"`` or
    ``"white"`` is to move, ``"after_random"`` (the one position after the random move) or ``"none"`` (only
    the outcome counts).
    """

    black: int = 0
    white: int = 0
    opening: int = 0
    random_at: int | None = None
    record: str = "all"

    def __post_init__(self) -> None:
        if self.record not in RECORDS:
            raise ValueError(f"record must be one of {RECORDS}, not {self.record!r}")
        if self.record == "after_random" and self.random_at is None:
            raise ValueError("record='after_random' needs random_at")

    def mover(self, i: int, colour: str) -> int:
        """The player of move ``i`` (0-based), by ``colour``: an index or :data:`RANDOM`."""
        if self.random_at is not None and i <= self.random_at:
            return self.opening if i < self.random_at else RANDOM
        return self.black if colour == "B" else self.white

    def keeps(self, i: int, colour: str) -> bool:
        """Is the position before move ``i`` (``colour`` to move) kept?"""
        if self.record == "all":
            return True
        if self.record == "none":
            return False
        if self.record == "after_random":
            return i == self.random_at + 1
        return colour == self.record[0].upper()


@dataclass
class PlayedGame:
    """One finished game: its moves, black's area margin minus komi, its final area, and the kept positions.

    ``ownership`` is the final position's area (:meth:`gogame.board.Board.ownership`: int8 ``[row, col]``, +1
    black, -1 white, 0 neither), the source of the value net's ownership targets.

    ``search_values`` maps a move index to black's win rate by the search made before that move (the moves of
    a :class:`SearchPlayer`), ``search_visits`` to the visits of that search's root by flat move; :meth:`to_sgf`
    writes them into the move's node as :data:`training.data.shards.SEARCH_VALUE` and
    :data:`training.data.shards.SEARCH_VISITS`.

    ``positions[k]`` is the move index of kept position ``k``; ``planes[k]`` its alphago49 planes (uint8
    ``(49, size, size)``), ``moves[k]`` the flat move played there (``size * size``: pass) and ``sensible[k]``
    the moves the player could choose from (bool ``(size * size + 1,)``, pass last; all False for a forced
    pass).
    """

    size: int
    komi: float
    history: list[tuple[str, coords.Move]]
    margin: float
    ownership: np.ndarray | None = None
    search_values: dict[int, float] = field(default_factory=dict)
    search_visits: dict[int, dict[int, int]] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)
    planes: list[np.ndarray] = field(default_factory=list)
    moves: list[int] = field(default_factory=list)
    sensible: list[np.ndarray] = field(default_factory=list)

    def outcome(self, colour: str) -> int:
        """+1 if ``colour`` won, -1 if it lost, 0 for jigo."""
        sign = int(np.sign(self.margin))
        return sign if colour == "B" else -sign

    def to_sgf(self, name: str, players: dict[str, str] | None = None) -> sgf.Game:
        props = {"GN": name, **(players or {})}
        values = {i: {shards.SEARCH_VALUE: f"{v:.4f}"} for i, v in self.search_values.items()}
        for i, visits in self.search_visits.items():
            values.setdefault(i, {})[shards.SEARCH_VISITS] = shards.format_visits(visits, self.size)
        return sgf.Game.from_moves(self.history, size=self.size, komi=self.komi,
                                   result=format_result(self.margin), properties=props, move_properties=values)


def play_games(players: Sequence[Player], plans: Sequence[Plan], *, size: int, komi: float = 7.5,
               max_moves: int | None = None, rng: np.random.Generator,
               starts: Sequence[Board] | None = None) -> list[PlayedGame]:
    """Play ``len(plans)`` games at once under positional superko; see the module doc.

    Game ``g`` starts from the empty board, or from a copy of ``starts[g]`` (its moves stay in the game's
    history and count towards the move numbers of its plan). ``max_moves`` caps each game (default
    ``2 * size * size``). Returns the games in ``plans`` order.
    """
    max_moves = 2 * size * size if max_moves is None else max_moves
    if max_moves < 1:
        raise ValueError(f"max_moves must be positive, not {max_moves}")
    for plan in plans:
        used = {plan.black, plan.white} | ({plan.opening} if plan.random_at is not None else set())
        if not used <= set(range(len(players))):
            raise ValueError(f"a plan names player {sorted(used)}, but there are {len(players)} players")
    if starts is not None:
        if len(starts) != len(plans) or any((b.size, b.komi) != (size, komi) for b in starts):
            raise ValueError(f"give one {size}x{size} start board with komi {komi} per plan")
        if any(b.is_over() for b in starts):
            raise ValueError("a start board's game is already over")
    boards = [Board(size, komi) for _ in plans] if starts is None else [b.copy() for b in starts]
    games = [PlayedGame(size, komi, [], 0.0) for _ in plans]
    points = size * size
    live = list(range(len(plans)))
    while live:
        planes = features.planes_batch([boards[g] for g in live], FEATURES)
        legal = np.stack([features.legal_mask(boards[g]) for g in live])
        sensible = legal & planes[:, SENSIBLE].reshape(len(live), points).astype(bool)
        chosen = np.full(len(live), points)  # pass unless someone chooses a move
        movers = np.array([plans[g].mover(boards[g].move_number, boards[g].to_move) for g in live])
        for k in np.flatnonzero(movers == RANDOM):
            options = np.flatnonzero(legal[k])
            if options.size:
                chosen[k] = rng.choice(options)
        for p, player in enumerate(players):
            rows = np.flatnonzero((movers == p) & sensible.any(axis=1))
            if rows.size:
                chosen[rows] = player.choose([boards[live[k]] for k in rows], planes[rows], sensible[rows], rng)
                if isinstance(player, SearchPlayer):
                    for k, value, visits in zip(rows, player.winrates_black, player.root_visits):
                        if not np.isnan(value):
                            games[live[k]].search_values[boards[live[k]].move_number] = float(value)
                        if visits:
                            games[live[k]].search_visits[boards[live[k]].move_number] = visits
        still = []
        for k, g in enumerate(live):
            board, game = boards[g], games[g]
            i, colour = board.move_number, board.to_move
            if plans[g].keeps(i, colour):
                game.positions.append(i)
                game.planes.append(planes[k].copy())  # not a view: it would keep the step's whole array
                game.moves.append(int(chosen[k]))
                game.sensible.append(np.append(sensible[k], False))
            move = None if chosen[k] == points else divmod(int(chosen[k]), size)
            board.play(move)
            if board.is_over() or board.move_number >= max_moves:
                game.history, game.margin, game.ownership = board.history, board.score("area"), board.ownership()
            else:
                still.append(g)
        live = still
    return games


def shard_arrays(games: Sequence[tuple[str, PlayedGame]]) -> dict[str, np.ndarray]:
    """The :mod:`training.data.shards` shard arrays of the kept positions of named games.

    The outcome, and the final area in ``ownership`` (int8 ``(positions, size * size)``, +1 where the mover's
    area ended), are the mover's.
    """
    encoded, owned = [], []
    for name, game in games:
        movers = np.array([1 if game.history[i][0] == "B" else -1 for i in game.positions], np.int8)
        owned.append(movers[:, None] * game.ownership.reshape(1, -1))
        keep = np.array(game.positions, np.int64)
        stacked = np.stack(game.planes) if game.planes else np.zeros((0, features.FEATURE_SETS[FEATURES],
                                                                        game.size, game.size), np.uint8)
        packed = np.packbits(stacked.reshape(len(keep), -1), axis=1)  # the layout of shards._pack_bits
        encoded.append((name, game.to_sgf(name), keep, packed))
    arrays = shards.assemble_shard(encoded, FEATURES, games[0][1].size)
    arrays[shards.OWNERSHIP] = np.concatenate(owned)
    return arrays


# -- shard jobs: selfplay and value data --------------------------------------------------------------------


@dataclass(frozen=True)
class GameSpec:
    """What a shard of games is (picklable, for worker processes).

    ``policies``: weight files, player 0 first. ``mode``: ``"selfplay"`` (player 0 against itself, every
    position; at ``visits`` > 0 by MCTS (:class:`SearchPlayer`) with the shipped rollout policy, Dirichlet noise
    of ``dirichlet_alpha`` at the root (0: none), the first ``sample_moves`` moves drawn by visits, and a decided
    game (a win rate below ``decided_below`` or above ``1 - decided_below``; 0: never) finished by the raw net
    at ``temperature``; player 0 may then be a dual net, and ``lambda_``, ``c_puct`` and ``fpu_reduction`` set
    the search's :class:`gogame.mcts.SearchConfig` fields, None its defaults) or
    ``"value"`` (AlphaGo's value data: U uniform in
    ``1..max_u``, ``policies[0]`` (SL) plays moves 1..U-1, move U is uniformly random, ``policies[1]`` (RL)
    plays on; the position after move U is kept; games over before it keep none).

    ``openings``: an SGF archive or file of ``size`` x ``size`` games; with it each self-play game begins with
    the first k moves of one of its games without setup stones (k uniform in ``1..opening_moves``, fewer where
    the game is shorter or passes), drawn per game, and the players go on from there (the moves stay in the
    game's record, without search values): openings the engine's own nets would not play.
    """

    size: int
    policies: tuple[str, ...]
    mode: str = "selfplay"
    komi: float = 7.5
    visits: int = 0
    temperature: float = 1.0
    max_moves: int | None = None
    max_u: int = 0
    val_fraction: float = 0.05
    dirichlet_alpha: float = 0.0
    sample_moves: int = 0
    decided_below: float = 0.0
    lambda_: float | None = None
    c_puct: float | None = None
    fpu_reduction: float | None = None
    openings: str | None = None
    opening_moves: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("selfplay", "value"):
            raise ValueError(f"mode must be 'selfplay' or 'value', not {self.mode!r}")
        need = 2 if self.mode == "value" else 1
        if len(self.policies) != need:
            raise ValueError(f"{self.mode} games need {need} policy files, got {len(self.policies)}")
        if self.dirichlet_alpha < 0 or self.sample_moves < 0 or not 0 <= self.decided_below < 0.5:
            raise ValueError("dirichlet_alpha and sample_moves must not be negative, decided_below in [0, 0.5)")
        if self.mode == "value" and not 1 <= self.max_u:
            raise ValueError(f"max_u must be at least 1, not {self.max_u}")
        if not self.visits and self.search_options():
            raise ValueError("lambda_, c_puct and fpu_reduction set a search: they need visits")
        if (self.openings is None) != (self.opening_moves == 0) or self.opening_moves < 0:
            raise ValueError("openings and a positive opening_moves go together")
        if self.openings is not None and self.mode != "selfplay":
            raise ValueError("openings begin self-play games only")

    def search_options(self) -> dict[str, float]:
        """The :class:`gogame.mcts.SearchConfig` fields this spec sets."""
        chosen = {"lambda_": self.lambda_, "c_puct": self.c_puct, "fpu_reduction": self.fpu_reduction}
        return {name: value for name, value in chosen.items() if value is not None}

    def plans(self, n: int, rng: np.random.Generator) -> list[Plan]:
        if self.mode == "selfplay":
            return [Plan() for _ in range(n)]
        return [Plan(black=1, white=1, opening=0, random_at=int(u) - 1, record="after_random")
                for u in rng.integers(1, self.max_u + 1, size=n)]

    def starts(self, n: int, rng: np.random.Generator) -> list[Board] | None:
        """With ``openings``: ``n`` boards, each after the first k moves of a game drawn from them; else None."""
        if self.openings is None:
            return None
        lines = _opening_lines(self.openings, self.size)
        boards = []
        for line, k in zip(rng.integers(len(lines), size=n), rng.integers(1, self.opening_moves + 1, size=n)):
            board = Board(self.size, self.komi)
            for colour, move in lines[line][:k]:
                board.play(move, colour)
            boards.append(board)
        return boards


_OPENINGS: dict[tuple[str, int], list[list[tuple[str, coords.Point]]]] = {}  # per process: the lines of an archive


def _opening_lines(path: str, size: int) -> list[list[tuple[str, coords.Point]]]:
    """The move sequences of the games at ``path`` without setup stones, each up to its first pass or the first
    move these rules refuse (positional superko)."""
    if (path, size) not in _OPENINGS:
        index = stream.game_index(path, size, progress=False)
        lines = []
        for g in range(index["name"].size):
            setup, moves = stream.index_record(index, g, size)
            if any(setup):
                continue
            board = Board(size)
            for colour, move in itertools.takewhile(lambda played: played[1] is not None, moves):
                try:
                    board.play(move, colour)
                except IllegalMove:
                    break
            if board.history:
                lines.append(board.history)
        if not lines:
            raise ValueError(f"{path}: no {size}x{size} game without setup stones to open with")
        _OPENINGS[path, size] = lines
    return _OPENINGS[path, size]


_PLAYERS: dict[tuple[GameSpec, str], list[Player]] = {}  # per process: the players of a spec and backend


def _players(spec: GameSpec, backend: str = "auto") -> list[Player]:
    if (spec, backend) not in _PLAYERS:
        searching = spec.mode == "selfplay" and spec.visits
        loaded = [nets.load(path, kind=None if searching else "policy") for path in spec.policies]
        for path, net in zip(spec.policies, loaded):
            if net.kind == "value":
                raise ValueError(f"{path} holds a value network: games need a policy or dual network")
            if net.kind == "policy" and net.board_size != spec.size:
                raise ValueError(f"a {net.board_size}x{net.board_size} policy net cannot play {spec.size}x{spec.size}")
        if searching:
            # priors from the net, leaves valued by the shipped rollout policy and, for a dual net, its value head
            engine = Engine(loaded[0], None, ro.RolloutPolicy.load(), size=spec.size, threads=1, backend=backend,
                            dirichlet_alpha=spec.dirichlet_alpha or None, **spec.search_options())
            finisher = NetPlayer(loaded[0], spec.temperature, backend) if spec.decided_below else None
            _PLAYERS[spec, backend] = [SearchPlayer(engine, spec.visits, spec.sample_moves, spec.decided_below,
                                                    finisher)]
        else:
            _PLAYERS[spec, backend] = [NetPlayer(net, spec.temperature, backend) for net in loaded]
    return _PLAYERS[spec, backend]


@dataclass(frozen=True)
class ShardJob:
    spec: GameSpec
    out_dir: Path
    tag: str
    index: int
    games: int
    seed: int
    backend: str = "auto"  # what runs the nets (how fast, not which games: not in meta.json)

    @property
    def stem(self) -> str:
        return f"{self.tag}-{self.index:06d}"


def play_shard(job: ShardJob) -> dict:
    """Play one shard's games and write its shards, SGF file and ``.done`` record; returns the counts."""
    rng = np.random.default_rng([job.seed, zlib.crc32(job.tag.encode()), job.index])
    spec = job.spec
    played = play_games(_players(spec, job.backend), spec.plans(job.games, rng), size=spec.size, komi=spec.komi,
                        max_moves=spec.max_moves, rng=rng, starts=spec.starts(job.games, rng))
    named = [(f"{job.stem}-{k:04d}", game) for k, game in enumerate(played)]
    counts = {"games": len(played), "moves": sum(len(g.history) for g in played), "positions": {}}
    for split in ("train", "val"):
        kept = [(name, game) for name, game in named if game.positions
                and shards.split_of(name, job.seed, spec.val_fraction, 0.0) == split]
        counts["positions"][split] = sum(len(g.positions) for _, g in kept)
        if kept:
            shards.save_shard(job.out_dir / f"{split}-{job.stem}.npz", shard_arrays(kept))
    names = {"PB": Path(spec.policies[-1]).name, "PW": Path(spec.policies[-1]).name}
    text = sgf.dumps([game.to_sgf(name, names) for name, game in named]).encode()
    write_atomically(job.out_dir / "sgf" / f"{job.stem}.sgf", lambda f: f.write(text))
    write_atomically(job.out_dir / f"{job.stem}.done", lambda f: f.write(json.dumps(counts).encode()))
    return counts


def _worker_init() -> None:
    torch.set_num_threads(1)  # one process per core: torch's own threads would fight over them
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides, cleanly


def _recorded(spec: GameSpec) -> dict:
    """``spec`` as meta.json records it: without the opening fields when it has no openings, as folders begun
    before they existed recorded it, so that those folders resume."""
    fields = asdict(spec)
    if spec.openings is None:
        del fields["openings"], fields["opening_moves"]
    return fields


def generate(out_dir: str | os.PathLike, spec: GameSpec, games: int, *, games_per_shard: int = 64,
             workers: int = 1, tag: str = "sp", seed: int = 0, progress: bool = True,
             stop_after_minutes: float = 0.0, backend: str = "auto") -> dict:
    """Play (or finish playing) ``games`` games into ``out_dir``; returns the summary saved as ``summary.json``.

    The folder's ``meta.json`` makes it a :mod:`training.data.shards` dataset (alphago49, train and val splits);
    ValueError if it was started with other settings, or for policy nets that cannot play (a missing, corrupt or
    foreign file, another board size), checked before anything is written. Workers > 1 play shards in spawned
    processes. SIGINT, SIGTERM or ``stop_after_minutes`` stop it between shards (the shards in play are
    abandoned; each finished one is on disk) with :class:`training.stopping.RunStopped`; running it again goes on.
    ``backend`` runs the nets (:mod:`gogame.inference`).
    """
    if games < 1 or games_per_shard < 1 or workers < 1:
        raise ValueError("games, games_per_shard and workers must be at least 1")
    _players(spec)  # CheckpointError (a ValueError) before the folder records settings that cannot play
    if spec.openings is not None:
        _opening_lines(spec.openings, spec.size)  # likewise an archive with no opening in it
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": "gogame-shards", "version": 1, "size": spec.size, "features": FEATURES,
            "planes": features.FEATURE_SETS[FEATURES], "seed": seed, "val_fraction": spec.val_fraction,
            "test_fraction": 0.0, "sources": list(spec.policies), "spec": _recorded(spec),
            "games_per_shard": games_per_shard}
    meta_path = out / "meta.json"
    if meta_path.exists():
        if json.loads(meta_path.read_text()) != json.loads(json.dumps(meta)):
            raise ValueError(f"{out} holds games made with other settings; use a new folder")
    else:
        write_atomically(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    jobs = [ShardJob(spec, out, tag, j, min(games_per_shard, games - j * games_per_shard), seed, backend)
            for j in range(-(-games // games_per_shard))]
    totals = {"games": 0, "moves": 0, "positions": {"train": 0, "val": 0}}

    def add(counts: dict) -> None:
        totals["games"] += counts["games"]
        totals["moves"] += counts["moves"]
        for split, n in counts["positions"].items():
            totals["positions"][split] += n

    pending = []
    for job in jobs:
        done = out / f"{job.stem}.done"
        if done.exists():
            add(json.loads(done.read_text()))
        else:
            pending.append(job)
    summary_path = out / "summary.json"
    if not pending and summary_path.exists():
        recorded = json.loads(summary_path.read_text())
        if recorded.get("games") == totals["games"]:
            return recorded  # all played before: keep the rates of the run that played them
    resumed_games, moves_before = totals["games"], totals["moves"]
    start = time.perf_counter()
    with tqdm(total=games, initial=resumed_games, unit="game", desc=spec.mode, disable=not progress) as bar:
        def note(counts: dict) -> None:
            add(counts)
            bar.update(counts["games"])
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(games_s=f"{(totals['games'] - resumed_games) / elapsed:.2f}",
                            moves_s=f"{(totals['moves'] - moves_before) / elapsed:.0f}")

        def check(request: StopRequest) -> None:
            if reason := request.reason():
                raise RunStopped(reason, f"{totals['games']} of {games} games in {out}")

        with StopRequest(stop_after_minutes) as request:
            if workers == 1:
                for job in pending:
                    check(request)
                    note(play_shard(job))
            else:
                with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
                    results = pool.imap_unordered(play_shard, pending)
                    for _ in pending:
                        while True:  # wake up every second to see whether to stop (leaving terminates the pool)
                            check(request)
                            try:
                                counts = results.next(timeout=1.0)
                                break
                            except mp.TimeoutError:
                                continue
                        note(counts)
    elapsed = time.perf_counter() - start
    played = totals["games"] - resumed_games
    summary = {**meta, **totals, "games_per_s": played / max(elapsed, 1e-9),
               "moves_per_s": (totals["moves"] - moves_before) / max(elapsed, 1e-9)}
    write_atomically(summary_path, lambda f: f.write(json.dumps(summary, indent=1).encode()))
    return summary


# -- the command --------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class GenerationConfig:
    """The settings selfplay and the value stage share: how many games, where, and how fast."""

    games: int = option(REQUIRED, "games to play in all (a rerun finishes them)")
    games_per_shard: int = option(64, "games played at once and written together")
    workers: int = option(1, "processes playing shards")
    tag: str = option("sp", "shard name prefix: one per machine feeding one folder")
    max_moves: int | None = option(None, "move cap (default 2 * size * size)")
    komi: float = option(7.5, "komi of the games")
    val_fraction: float = option(0.05, "share of games in the val split")
    backend: str = option("auto", "what runs the nets (auto: see gogame.inference)", choices=inference.BACKENDS)


@dataclass(kw_only=True)
class SelfplayConfig(GenerationConfig, StopOptions):
    """Every setting of ``gogame-train selfplay``, with its default."""

    size: int = option(19, "board size")
    out: str = option(REQUIRED, "folder for shards, SGF files and .done records")
    weights: str | None = option(None, "policy net, or with --visits a policy or dual net (default: the shipped "
                                       "policy net for --size)")
    visits: int = option(0, "MCTS visits per move, the shipped rollout policy at the leaves (0: sample the raw net)")
    lambda_: float | None = option(None, "with --visits: the leaf value mix, 0 a dual net's value head alone .. 1 "
                                         "rollouts alone (default: the net's, 1 for a policy net)")
    c_puct: float | None = option(None, "with --visits: the search's exploration constant (default 5)")
    fpu_reduction: float | None = option(None, "with --visits: an unvisited move's value is its parent's less "
                                               "this times the root of the visited priors (default: the engine's, "
                                               "0.25 at lambda below 1, else a draw)")
    dirichlet_alpha: float = option(0.0, "with --visits: root noise Dir(alpha), weight 0.25 (0: none)")
    sample_moves: int = option(0, "with --visits: draw the first this many moves of a game by visit counts")
    decided_below: float = option(0.0, "with --visits: once a search's win rate is below this (or above 1 - it), "
                                       "the raw net at --temperature plays the game out (0: search every move)")
    temperature: float = option(1.0, "softmax temperature of the raw net (its games, or its finish of decided ones)")
    openings: str | None = option(None, "an SGF archive or file of games of the board size: each game begins with "
                                        "the first 1..--opening-moves moves of one of them, then the players go on")
    opening_moves: int = option(0, "with --openings: the most moves of an opening played (k uniform in 1..this)")
    seed: int = option(0, "seed of the games")
    progress: bool = option(True, "progress bar")


CONFIG = SelfplayConfig


def run(config: SelfplayConfig) -> int:
    weights = config.weights or str(nets.default_weights("policy", config.size))
    try:
        spec = GameSpec(config.size, (str(weights),), "selfplay", config.komi, config.visits, config.temperature,
                        config.max_moves, val_fraction=config.val_fraction, dirichlet_alpha=config.dirichlet_alpha,
                        sample_moves=config.sample_moves, decided_below=config.decided_below,
                        lambda_=config.lambda_, c_puct=config.c_puct, fpu_reduction=config.fpu_reduction,
                        openings=config.openings, opening_moves=config.opening_moves)
        summary = generate(config.out, spec, config.games, games_per_shard=config.games_per_shard,
                           workers=config.workers, tag=config.tag, seed=config.seed, progress=config.progress,
                           stop_after_minutes=config.stop_after, backend=config.backend)
    except ValueError as exc:  # settings that do not fit: the net's size or kind, an existing folder's settings
        raise SystemExit(f"gogame-train selfplay: {exc}") from None
    print(json.dumps({k: summary[k] for k in ("games", "moves", "positions", "games_per_s", "moves_per_s")}))
    return 0
