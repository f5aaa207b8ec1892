"""Learning the rollout and tree policies from expert games: ``gogame-train rollout``.

The pipeline, top to bottom:

1. read SGF records from folders, files and archives (:func:`training.data.corpus.iter_sgf`), keeping the games of
   one board size and setting aside the held-out games: the ``test`` split of the dataset builder
   (:func:`training.data.shards.split_of`), so the held-out games are the same whatever ``--games`` says, for the
   benchmark and for the policy networks;
2. replay the training games in numba and harvest the pattern keys of the expert moves; keys seen at least
   ``--min-count`` times get a weight (:func:`harvest`);
3. softmax regression over the legal moves of every position, one position per step with AdaGrad, for
   ``--epochs`` passes over the games in a new random order each (:func:`train`);
4. report the held-out top-1 accuracy and log loss (:func:`evaluate`) and save the ``.npz``.

Training sweeps the games in chunks of :data:`CHUNK_GAMES`; between chunks it writes ``OUT.partial.npz``
(every ``--ckpt-every-minutes``, and when a signal or ``--stop-after`` stops it), and ``--resume`` goes on from
that file exactly (the same keys, weights, AdaGrad sums and place in the epoch; epoch ``e``'s order comes from
``(seed, e)``). The file also holds a digest of the training games and settings: a resume over other games
is refused.

Positions where the expert passed are skipped (the policies never pass by choice); a game whose record turns
illegal under simple ko and no suicide is used up to that move.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np

from gogame import coords, fastboard as fb
from gogame import rollout as ro
from gogame import sgf
from gogame.fastboard import BLACK, PASS, WHITE, FastBoard
from gogame.atomic import write_atomically
from training import options
from training.data.corpus import iter_sgf
from training.data.shards import split_of
from training.options import REQUIRED, option
from training.stopping import CheckpointStopOptions, RunStopped, StopRequest

CHUNK_GAMES = 2000  # games swept between two looks at the clock and the signals


# ------------------------------------------------------------------------------------------------ games

@dataclass
class GameSet:
    """Games packed for numba: moves as padded points (PASS = 0) with colours, and the setup stones.

    Game ``g`` has moves ``move_start[g]:move_start[g + 1]`` and setup ``setup_start[g]:setup_start[g + 1]``.
    """

    size: int
    moves: np.ndarray  # int32
    colours: np.ndarray  # int8: BLACK or WHITE
    move_start: np.ndarray  # int64[G + 1]
    setup_points: np.ndarray  # int32
    setup_colours: np.ndarray  # int8
    setup_start: np.ndarray  # int64[G + 1]
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_games(cls, games: Iterable[sgf.Game], size: int) -> GameSet:
        """Pack ``games`` (all of board ``size``)."""
        packer = _Packer(size)
        for game in games:
            packer.add(game)
        return packer.done()

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.moves, self.colours, self.move_start, self.setup_points, self.setup_colours, self.setup_start)

    def positions(self) -> int:
        """Moves other than passes (an upper bound on the positions a kernel visits)."""
        return int(np.count_nonzero(self.moves))


class _Packer:
    """Builds a :class:`GameSet` one game at a time, in compact arrays (a parsed game tree is far bigger)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.moves = array("i")
        self.colours = array("b")
        self.move_start = [0]
        self.setup_points = array("i")
        self.setup_colours = array("b")
        self.setup_start = [0]
        self.names: list[str] = []

    def add(self, game: sgf.Game) -> None:
        if game.size != self.size:
            raise ValueError(f"{game.source}: a {game.size}x{game.size} game among {self.size}x{self.size} ones")
        for colour, move in game.moves:
            self.moves.append(PASS if move is None else coords.to_padded(move[0], move[1], self.size))
            self.colours.append(BLACK if colour == "B" else WHITE)
        for c, points in zip((BLACK, WHITE), game.setup):
            for row, col in sorted(points):
                self.setup_points.append(coords.to_padded(row, col, self.size))
                self.setup_colours.append(c)
        self.move_start.append(len(self.moves))
        self.setup_start.append(len(self.setup_points))
        self.names.append(game.source)

    def done(self) -> GameSet:
        return GameSet(self.size, np.array(self.moves, np.int32), np.array(self.colours, np.int8),
                       np.array(self.move_start, np.int64), np.array(self.setup_points, np.int32),
                       np.array(self.setup_colours, np.int8), np.array(self.setup_start, np.int64), self.names)


def load_games(sources: Iterable[str | Path], size: int = 19, *, games: int | None = None, eval_games: int = 0,
               seed: int = 0, val: float = 0.02, test: float = 0.02) -> tuple[GameSet, GameSet]:
    """Up to ``games`` training games and ``eval_games`` held-out games of board ``size``, in source order.

    Games go to the two sets by :func:`training.data.shards.split_of` with ``seed``, ``val`` and ``test``: training games
    from its ``train`` split, held-out ones from its ``test`` split, so a run of the dataset builder with the same
    values holds out the same games. Files that do not parse are skipped, and so are games with setup stones
    after the first node (the packed form has setup only at the start).
    """
    train, held = _Packer(size), _Packer(size)
    for name, data in iter_sgf(sources):
        want_train = games is None or len(train.names) < games
        if not want_train and len(held.names) >= eval_games:
            break
        split = split_of(name, seed, val, test)
        if split == "train" and want_train or split == "test" and len(held.names) < eval_games:
            try:
                parsed = sgf.loads(data, name)
            except sgf.SGFError:
                continue
            for game in parsed:
                if game.size == size and not _late_setup(game):
                    (train if split == "train" else held).add(game)
    return train.done(), held.done()


def _late_setup(game: sgf.Game) -> bool:
    return any(name in node.properties for node in game.main_line()[1:] for name in ("AB", "AW", "AE"))


# ------------------------------------------------------------------------------------------------ numba replay

@nb.njit(cache=True)
def _begin_game(b: FastBoard, template: FastBoard, setup_points: np.ndarray, setup_colours: np.ndarray,
                setup_start: np.ndarray, g: int) -> None:
    fb.copy_into(b, template)
    for i in range(setup_start[g], setup_start[g + 1]):
        b.colour[setup_points[i]] = setup_colours[i]
    fb.rebuild(b)


@nb.njit(cache=True)
def _new_cursor() -> np.ndarray:
    """A replay cursor before the first game, for :func:`_next_expert_move`."""
    return np.array([-1, 0, 0], np.int64)


@nb.njit(cache=True, inline="always")  # called once a move: not inlined, it cost the harvest ~10%
def _next_expert_move(cursor: np.ndarray, b: FastBoard, st: ro.PatternState, template: FastBoard, tb: ro.Tables,
                      order: np.ndarray, moves: np.ndarray, colours: np.ndarray, move_start: np.ndarray,
                      setup_points: np.ndarray, setup_colours: np.ndarray, setup_start: np.ndarray) -> int:
    """Replay the games in ``order`` on ``b`` and ``st`` up to the next expert move that is not a pass.

    Returns that move's index in ``moves``, with the position before it on ``b`` and ``st``, or -1 when the games
    are done. ``cursor`` (int64[3], from :func:`_new_cursor`) is where the replay stands, updated in place: the
    place in ``order`` of the game on the board, the index of the move last returned, the end of that game's
    moves. The move last returned is played first; passes are played, and a game ends at its first illegal move.
    """
    k, i, end = cursor[0], cursor[1], cursor[2]
    if i < end:
        ro.state_play(st, tb, b, moves[i], colours[i])
        i += 1
    while True:
        while i < end:
            p = moves[i]
            c = colours[i]
            if p != PASS:
                if fb.is_legal(b, p, c):
                    cursor[0], cursor[1], cursor[2] = k, i, end
                    return i
                break
            ro.state_play(st, tb, b, p, c)
            i += 1
        k += 1
        if k >= order.size:
            cursor[0], cursor[1], cursor[2] = k, 0, 0
            return -1
        g = order[k]
        _begin_game(b, template, setup_points, setup_colours, setup_start, g)
        ro.init_state(st, tb, b)
        i, end = move_start[g], move_start[g + 1]


@nb.njit(cache=True)
def harvest_kernel(template: FastBoard, tb: ro.Tables, moves: np.ndarray, colours: np.ndarray,
                   move_start: np.ndarray, setup_points: np.ndarray, setup_colours: np.ndarray,
                   setup_start: np.ndarray, first: int, last: int, out: np.ndarray) -> int:
    """Write the pattern keys of the expert moves of games ``first:last`` to ``out``; returns how many.

    Per move: its 3x3 key, its response key if it answers in the diamond of the previous move, and with
    ``tb.tree`` its diamond key.
    """
    b = fb.copy_board(template)
    st = ro.new_state(b)
    order = np.arange(first, last)
    cursor = _new_cursor()
    n = 0
    while True:
        i = _next_expert_move(cursor, b, st, template, tb, order, moves, colours, move_start, setup_points,
                              setup_colours, setup_start)
        if i < 0:
            return n
        p = moves[i]
        c = colours[i]
        out[n] = ro.key3(tb, ro.raw3(st, p), c)
        n += 1
        for j in range(ro.response_context(st, tb, b, c)):
            if st.ctx[0, j] == p:
                out[n] = st.ctx[1, j]
                n += 1
        if tb.tree:
            out[n] = ro.key12(st, tb, ro.raw12(st, p), c)
            n += 1


@nb.njit(cache=True)
def _softmax_loss(z: np.ndarray, n: int, target: int, prob: np.ndarray) -> float:
    """Fill ``prob[:n]`` with softmax(``z[:n]``); returns -log prob[target]."""
    zmax = z[:n].max()
    s = 0.0
    for i in range(n):
        prob[i] = np.exp(z[i] - zmax)
        s += prob[i]
    for i in range(n):
        prob[i] /= s
    return np.log(s) + zmax - z[target]


@nb.njit(cache=True)
def sweep_kernel(template: FastBoard, tb: ro.Tables, sq_grad: np.ndarray, order: np.ndarray, moves: np.ndarray,
                 colours: np.ndarray, move_start: np.ndarray, setup_points: np.ndarray, setup_colours: np.ndarray,
                 setup_start: np.ndarray, lr: float, learn: bool) -> tuple[float, float, int]:
    """One pass over the games in ``order``: (top-1 hits, summed log loss, positions) on their expert moves.

    With ``learn``, each position also takes a step of AdaGrad softmax regression on ``tb.w`` (in place);
    ``sq_grad`` (float64[F]) holds AdaGrad's running sums of squared gradients. A hit among k moves tied for
    the highest logit counts 1/k (the accuracy of breaking ties at random).
    """
    b = fb.copy_board(template)
    st = ro.new_state(b)
    size = b.colour.size
    rows = np.empty(size, np.int64)
    feats = np.empty((size, ro.MAX_FEATURES), np.int64)
    nfeat = np.empty(size, np.int64)
    z = np.empty(size)
    prob = np.empty(size)
    w = tb.w
    grad = np.zeros(w.size)
    touched = np.empty(w.size, np.int64)
    stamp = np.full(w.size, -1, np.int64)  # the position that last touched a feature
    hits = 0.0
    loss = 0.0
    positions = 0
    cursor = _new_cursor()
    while True:
        i = _next_expert_move(cursor, b, st, template, tb, order, moves, colours, move_start, setup_points,
                              setup_colours, setup_start)
        if i < 0:
            return hits, loss, positions
        p = moves[i]
        c = colours[i]
        n = ro.candidates(st, tb, b, c, rows, feats, nfeat)
        ro.logits(tb, feats, nfeat, n, z)
        target = st.slot[p]
        loss += _softmax_loss(z, n, target, prob)
        positions += 1
        top = z[:n].max()
        if z[target] == top:
            hits += 1.0 / np.count_nonzero(z[:n] == top)
        if learn:
            prob[target] -= 1.0  # now the gradient of the loss by each logit
            ntouched = 0
            for r in range(n):
                for k in range(nfeat[r]):
                    f = feats[r, k]
                    if stamp[f] != positions:
                        stamp[f] = positions
                        touched[ntouched] = f
                        ntouched += 1
                    grad[f] += prob[r]
            for j in range(ntouched):
                f = touched[j]
                sq_grad[f] += grad[f] * grad[f]
                if sq_grad[f] > 0.0:  # a feature of every move can get no gradient
                    w[f] -= lr * grad[f] / np.sqrt(sq_grad[f])
                grad[f] = 0.0


# ------------------------------------------------------------------------------------------------ Python layer

def harvest(games: GameSet, tree: bool, min_count: int, chunk: int = 2000) -> np.ndarray:
    """The sorted pattern keys of the expert moves in ``games`` that occur at least ``min_count`` times."""
    tables = ro.make_tables(np.zeros(0, np.int64), np.zeros(ro.N_FIXED), tree)
    template = fb.new_board(games.size)
    found: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for first in range(0, len(games), chunk):
        last = min(first + chunk, len(games))
        out = np.empty(3 * int(games.move_start[last] - games.move_start[first]), np.int64)
        n = harvest_kernel(template, tables, *games.arrays(), first, last, out)
        keys, count = np.unique(out[:n], return_counts=True)
        found.append(keys)
        counts.append(count)
    if not found:
        return np.zeros(0, np.int64)
    keys, inverse = np.unique(np.concatenate(found), return_inverse=True)
    totals = np.bincount(inverse, weights=np.concatenate(counts))
    return keys[totals >= min_count]


def evaluate(policy: ro.RolloutPolicy, games: GameSet) -> tuple[float, float, int]:
    """(top-1 accuracy, mean log loss, positions) of ``policy`` on the expert moves of ``games``."""
    order = np.arange(len(games), dtype=np.int64)
    hits, loss, positions = sweep_kernel(fb.new_board(games.size), policy.tables, np.zeros(0), order,
                                         *games.arrays(), 0.0, False)
    return hits / max(positions, 1), loss / max(positions, 1), positions


def games_digest(games: GameSet, **settings) -> str:
    """A SHA-256 of the training games and the settings of a run: a partial run resumes only onto the same."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for array_ in games.arrays():
        digest.update(np.ascontiguousarray(array_).tobytes())
    return digest.hexdigest()


def train(games: GameSet, *, tree: bool = False, epochs: int = 1, lr: float = 0.1, min_count: int = 2,
          seed: int = 0, log=print, partial: Path | None = None, resume: bool = False,
          stop_after_minutes: float = 0.0, ckpt_every_minutes: float = 5.0) -> ro.RolloutPolicy:
    """Harvest the patterns of ``games`` and fit the weights; ``log`` gets one line per stage.

    With ``partial`` (a path), the state is written there between chunks every ``ckpt_every_minutes`` and when
    a signal or ``stop_after_minutes`` stops the run (RunStopped, after writing it); ``resume`` goes on from it
    (ValueError if it holds another run). The file is removed when training ends.
    """
    start = time.perf_counter()
    digest = games_digest(games, tree=tree, epochs=epochs, lr=lr, min_count=min_count, seed=seed)
    if resume and partial is not None and partial.exists():
        with np.load(partial, allow_pickle=False) as z:
            if str(z["digest"]) != digest:
                raise ValueError(f"{partial} is a run over other games or settings: remove it to start afresh")
            keys, w, sq_grad = z["keys"], z["weights"].copy(), z["sq_grad"].copy()
            epoch, done = int(z["epoch"]), int(z["done"])
            loss, positions = float(z["loss"]), int(z["positions"])
        log(f"resuming from {partial}: epoch {epoch + 1}, {done} of {len(games)} games swept")
    else:
        keys = harvest(games, tree, min_count)
        log(f"harvested {keys.size} pattern keys seen >= {min_count} times "
            f"({time.perf_counter() - start:.0f} s)")
        w, sq_grad = np.zeros(ro.N_FIXED + keys.size), np.zeros(ro.N_FIXED + keys.size)
        epoch, done, loss, positions = 0, 0, 0.0, 0
    tables = ro.make_tables(keys, w, tree)
    template = fb.new_board(games.size)

    def save() -> None:
        arrays = {"digest": np.array(digest), "keys": keys, "weights": tables.w, "sq_grad": sq_grad,
                  "epoch": np.int64(epoch), "done": np.int64(done), "loss": np.float64(loss),
                  "positions": np.int64(positions)}
        write_atomically(partial, lambda f: np.savez(f, **arrays))

    saved = time.monotonic()
    with StopRequest(stop_after_minutes) as request:
        while epoch < epochs:
            order = np.random.default_rng([seed, epoch]).permutation(len(games)).astype(np.int64)
            while done < len(games):
                chunk = order[done:done + CHUNK_GAMES]
                _, chunk_loss, chunk_positions = sweep_kernel(template, tables, sq_grad, chunk, *games.arrays(),
                                                              lr, True)
                done, loss, positions = done + chunk.size, loss + chunk_loss, positions + chunk_positions
                last = epoch + 1 == epochs and done == len(games)
                reason = None if last else request.reason()
                if partial is not None and (reason or (ckpt_every_minutes > 0 and
                                                       time.monotonic() - saved >= 60 * ckpt_every_minutes)):
                    save()
                    saved = time.monotonic()
                if reason:
                    where = f"epoch {epoch + 1} of {epochs}, {done} of {len(games)} games"
                    raise RunStopped(reason, where + (f" in {partial}" if partial is not None else " (not saved)"))
            log(f"epoch {epoch + 1}/{epochs}: training loss {loss / max(positions, 1):.4f} over {positions} "
                f"positions ({time.perf_counter() - start:.0f} s)")
            epoch, done, loss, positions = epoch + 1, 0, 0.0, 0
    if partial is not None:
        partial.unlink(missing_ok=True)
    return ro.RolloutPolicy(keys, tables.w, tree=tree,
                            info={"train_games": len(games), "epochs": epochs, "min_count": min_count})


# ------------------------------------------------------------------------------------------------ command line

@dataclass(kw_only=True)
class RolloutConfig(CheckpointStopOptions):
    """Every setting of ``gogame-train rollout``, with its default."""

    data: tuple[str, ...] = option(REQUIRED, "SGF files, folders or archives (.tar.xz, .tar.gz, .zip)",
                                   positional=True)
    out: str = option(REQUIRED, "the .npz to write")
    policy: str = option("rollout", "which feature set", choices=("rollout", "tree"))
    games: int | None = option(None, "training games to use (default: all)")
    eval_games: int = option(500, "held-out games to report accuracy on")
    seed: int = option(0, "seed of the train/val/test split (and of the shuffle)")
    val: float = option(0.02, "share of games in the val split (not used)")
    test: float = option(0.02, "share of games held out (the test split)")
    size: int = option(19, "board size of the games to use")
    epochs: int = option(2, "passes over the training games")
    lr: float = option(0.1, "AdaGrad learning rate")
    min_count: int = option(2, "keep patterns seen at least this often")
    resume: bool = option(False, "go on from OUT.partial.npz, left by a stopped run")


CONFIG = RolloutConfig


def partial_path(out: str | Path) -> Path:
    """Where a run writing ``out`` keeps its state until it ends: ``OUT.partial.npz`` beside it."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".npz") + ".partial.npz")


def run(config: RolloutConfig) -> int:
    start = time.perf_counter()
    train_set, held = load_games(config.data, config.size, games=config.games, eval_games=config.eval_games,
                                 seed=config.seed, val=config.val, test=config.test)
    print(f"read {len(train_set)} training and {len(held)} held-out {config.size}x{config.size} games "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    if not len(train_set):
        print("no training games", file=sys.stderr)
        return 1
    policy = train(train_set, tree=config.policy == "tree", epochs=config.epochs, lr=config.lr,
                   min_count=config.min_count, seed=config.seed, log=lambda line: print(line, flush=True),
                   partial=partial_path(config.out), resume=config.resume, stop_after_minutes=config.stop_after,
                   ckpt_every_minutes=config.ckpt_every_minutes)
    if len(held):
        accuracy, loss, positions = evaluate(policy, held)
        policy.info.update(heldout_accuracy=accuracy, heldout_loss=loss, heldout_positions=positions)
        print(f"held-out: top-1 accuracy {accuracy:.4f}, log loss {loss:.4f} over {positions} positions "
              f"of {len(held)} games")
    policy.save(config.out)
    print(f"wrote {config.out} ({policy.keys.size} patterns, {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run(options.parse(RolloutConfig, sys.argv[1:], prog="python -m training.stages.rollout")))
