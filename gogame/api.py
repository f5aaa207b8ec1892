"""The Python API: an :class:`Engine` that evaluates, analyses and plays positions, and board rendering.

Scope: loading networks and the rollout policy, the networks' raw view of a position (:meth:`Engine.evaluate`),
the tree search's view (:meth:`Engine.analyze`), move generation with pass and resign rules
(:meth:`Engine.genmove`), rollout ownership (:meth:`Engine.ownership`), and pictures of a position as PNG or
SVG (:func:`render`). The search itself is :mod:`gogame.mcts`; the GTP protocol is elsewhere and talks to this.

Conventions. Boards are :class:`gogame.board.Board` (the engine never changes them). Moves come back as GTP
vertices (``"D4"``, ``"pass"``, ``"resign"``). Probability vectors over moves are indexed ``row * size + col``
in :meth:`Board.stones` orientation (row 0 at the bottom), pass last. A *win rate* is a probability in [0, 1];
``winrate`` is for the side to move, ``winrate_black`` for black.

Example::

    engine = gogame.Engine.load(size=19)          # shipped weights
    board = gogame.sgf.load("game.sgf")[0].board_at(50)
    print(engine.analyze(board, visits=400).move)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from gogame import coords, features, inference, nets
from gogame import fastboard as fb
from gogame import rollout as ro
from gogame.board import Board
from gogame.mcts import MCTS, Rollouts, SearchConfig, SearchStats, pass_wins
from gogame.stats import wilson_interval

class NetEvaluator:
    """The policy and value networks behind the search's :class:`gogame.mcts.Evaluator` interface.

    Each forward pass looks at the position through a random one of the 8 board symmetries per position
    (``symmetries="random"``, as AlphaGo did), through all 8 averaged (``"all"``: probabilities and values are
    averaged, 8 times the work), or as it is (``"none"``). Either net may be None: no policy net gives uniform
    priors, no value net leaves rollouts only. ``policy`` may instead be a :class:`gogame.nets.DualNet` (with
    ``value`` None and ``size`` given: the net plays any size): priors, value and ownership then come from one
    forward (:meth:`policy_value`, :meth:`ownership`), and ``policy_value`` is None for separate nets, so the
    search knows which evaluator answers both at once. Nets must read alphago48 or alphago49 planes.

    ``backend`` runs the nets (:mod:`gogame.inference`): ``"auto"`` (ONNX Runtime on a CPU when installed,
    except where the CPU computes bf16 natively and ``bf16`` is on; torch otherwise and on GPUs), ``"torch"`` or
    ``"onnx"``. With ``bf16`` the torch backend runs bf16 copies of the nets where the device computes bf16
    natively (:func:`gogame.nets.bf16_native`: about twice the positions per second on a CPU with AVX-512 BF16;
    :class:`gogame.inference.TorchRunner`), else in fp32; the onnx backend is fp32 with ``threads`` intra-op
    threads, its exported models cached
    (``cache``, ``cache_dir``: see :func:`gogame.inference.runner`). With ``prepare`` the nets are made ready
    here (:meth:`prepare`: the onnx backend's export, a second or more on an empty cache); without it at the first
    evaluation or :meth:`prepare`. Raises ValueError for a bad option or nets that do not fit, and
    :class:`gogame.inference.BackendUnavailable` for an onnx backend that is not installed.
    """

    def __init__(self, policy: nets.PolicyNet | nets.DualNet | None, value: nets.ValueNet | None, *,
                 symmetries: str = "random", seed: int | None = None, device: str | torch.device = "cpu",
                 size: int | None = None, bf16: bool = True, backend: str = "auto",
                 threads: int = inference.DEFAULT_THREADS, cache: bool = True,
                 cache_dir: str | PathLike | None = None, prepare: bool = True) -> None:
        if symmetries not in inference.SYMMETRY_MODES:
            raise ValueError(f"symmetries must be one of {inference.SYMMETRY_MODES}, not {symmetries!r}")
        dual = policy if policy is not None and policy.kind == "dual" else None
        if dual is not None and (value is not None or size is None):
            raise ValueError("a dual net has its own value head and plays any size: give it alone, with the size")
        sizes = {net.board_size for net in (policy, value) if net is not None and net is not dual}
        if len(sizes) > 1:
            raise ValueError(f"the policy net is for {policy.board_size}x{policy.board_size} but the value net "
                             f"for {value.board_size}x{value.board_size}")
        if not sizes and size is None:
            raise ValueError("give a policy net, a value net or a board size")
        self.size = sizes.pop() if sizes else coords.check_size(size)
        if size is not None and size != self.size:
            raise ValueError(f"board size {size} does not match the networks' {self.size}x{self.size}")
        for net in (policy, value):
            if net is not None:
                name = net.meta.get("features") or f"alphago{net.in_planes}"
                if name not in ("alphago48", "alphago49") or net.in_planes != features.FEATURE_SETS[name]:
                    raise ValueError(f"the {net.kind} net reads {name!r} planes ({net.in_planes}); the search "
                                     "feeds alphago48 or alphago49")
        self.policy_net = policy.to(device).eval() if policy is not None else None
        self.value_net = value.to(device).eval() if value is not None else None
        self.dual_net = self.policy_net if dual is not None else None
        self.has_value = value is not None or dual is not None
        self.policy_value = self._policy_value if dual is not None else None  # see gogame.mcts.Evaluator
        self.symmetries = symmetries
        self.device = torch.device(device)
        self.bf16 = bf16
        self.backend = inference.choose(backend, device, bf16)
        self._runners: dict[str, inference.Runner] = {}  # by net kind
        for net in (self.policy_net, self.value_net):
            if net is not None:
                self._runners[net.kind] = inference.runner(net, self.backend, device=device, bf16=bf16,
                                                           threads=threads, cache=cache, cache_dir=cache_dir)
        if prepare:
            self.prepare()
        self._rng = np.random.default_rng(seed)

    def prepare(self) -> None:
        """Get each net ready for this size's positions now rather than at the first evaluation (the onnx
        backend exports it, or loads it from the cache; nothing for the torch backend)."""
        for net in (self.policy_net, self.value_net):
            if net is not None:
                self._runners[net.kind].prepare((net.in_planes, self.size, self.size))

    def _forward(self, net: torch.nn.Module, planes: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, ...]:
        """The net's outputs (a dual net has three) for its planes of ``planes`` seen through ``ks``: the one
        place where the search runs a network (:func:`gogame.inference.forward`)."""
        return inference.forward(self._runners[net.kind], planes[:, : net.in_planes], ks)

    def policy(self, planes: np.ndarray) -> np.ndarray:
        """Log-probabilities ``(B, size * size + 1)`` over all moves (legality is the caller's)."""
        b, s = len(planes), self.size
        if self.dual_net is not None:
            return self._dual(planes)[0]
        if self.policy_net is None:
            return np.zeros((b, s * s + 1), np.float32)
        ks = inference.symmetries(self.symmetries, b, self._rng)
        return inference.log_policy(self._forward(self.policy_net, planes, ks)[0], ks, b)

    def value(self, planes: np.ndarray) -> np.ndarray:
        """float ``(B,)`` in [-1, 1] for the side to move (mean over the 8 symmetries with "all")."""
        if self.dual_net is not None:
            return self._dual(planes)[1]
        if self.value_net is None:
            raise ValueError("no value network")
        ks = inference.symmetries(self.symmetries, len(planes), self._rng)
        return self._forward(self.value_net, planes, ks)[0].reshape(len(planes), -1).mean(axis=1).astype(np.float64)

    # -- the dual net: priors, value and ownership from one forward pass

    def _policy_value(self, planes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`policy`, :meth:`value` and the expected area margin for the side to move (komi not counted:
        the sum of :meth:`ownership`), float ``(B,)``, of a dual net from one forward pass."""
        logp, value, owner = self._dual(planes)
        return logp, value, owner.sum(axis=1)

    def ownership(self, planes: np.ndarray) -> np.ndarray:
        """float ``(B, size * size)`` in [-1, 1]: the dual net's expected final owner of each point, +1 the side
        to move, ``2 sigmoid(logit) - 1`` (mean over the 8 symmetries with "all"). ValueError without one."""
        if self.dual_net is None:
            raise ValueError("no dual network: ownership comes from rollouts")
        return self._dual(planes)[2]

    def _dual(self, planes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = len(planes)
        ks = inference.symmetries(self.symmetries, b, self._rng)
        logits, value, owner = self._forward(self.dual_net, planes, ks)[:3]
        owner = inference.to_board(np.tanh(np.asarray(owner, np.float64) / 2), ks, b)
        value = np.asarray(value).reshape(b, -1).mean(axis=1).astype(np.float64)
        return inference.log_policy(logits, ks, b), value, owner


# -- results --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """The networks' raw view of a position.

    ``moves``: float64 ``(size * size + 1,)``, the policy's probabilities (``row * size + col``, pass last;
    illegal moves 0, superko included; sums to 1). ``winrate_black``: the value net's ``v`` as black's win
    probability, ``(1 + v) / 2`` for black to move and ``(1 - v) / 2`` for white; None without a value net.
    """

    size: int
    to_move: str
    moves: np.ndarray
    winrate_black: float | None

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable moves as ``(vertex, probability)``."""
        order = np.argsort(-self.moves, kind="stable")[:k]
        return [(coords.to_gtp(coords.from_flat(int(i), self.size)), float(self.moves[i])) for i in order]


RESIGN_MIN_VISITS = 100  # fewer visits never justify resigning
# first-play urgency where a value net values the leaves (lambda < 1): a dual 9x9 net at lambda 0.5 won 41 of 60
# against the shipped engine at 400 visits with it, 21 of 40 without (docs/journal/2026-12-03-first-play-urgency.md)
VALUE_FPU_REDUCTION = 0.25


@dataclass(frozen=True)
class Candidate:
    """A root move after a search: visits, win rate for the side to move, prior, a lower bound, the PV, and the
    expected final score lead (from the rollouts, or where none run from a dual net's ownership head)."""

    move: str
    visits: int
    winrate: float
    prior: float
    lcb: float  # Wilson lower bound of the win rate over `visits` (95%, stats.wilson_interval); 0 without visits
    pv: list[str]  # this move, then the most visited line after it
    score_lead: float = math.nan  # mean final area margin (komi in) for the side to move; NaN: none seen
    score_stdev: float = math.nan  # its standard deviation


@dataclass(frozen=True)
class Analysis:
    """The search's view of a position: the best move (most visits) and every visited candidate, best first."""

    to_move: str
    move: str
    winrate: float  # the best move's win rate for the side to move
    winrate_black: float
    visits: int  # root visits (reused ones included)
    candidates: list[Candidate]
    stats: SearchStats = field(repr=False)


# -- the engine -----------------------------------------------------------------------------------------------


def position_from_sgf(path: str | PathLike, move: int | None = None, game: int = 0) -> Board:
    """The board of game ``game`` of an SGF file after ``move`` moves (all when None), next player to move."""
    from gogame import sgf

    return sgf.load(path)[game].board_at(move)


class Engine:
    """An AlphaGo-style player: policy and value networks, a rollout policy and APV-MCTS.

    Options (keyword arguments of the constructor and of :meth:`load`): ``visits`` (400) and ``seconds``
    (None) limit each search (whichever comes first); ``symmetries`` ("random", "all" or "none");
    ``resign_threshold`` (0.05) and ``resign_consecutive`` (3): :meth:`genmove` resigns when the best win rate
    has been below the threshold in that many consecutive searches of its own in one game (threshold 0: never);
    ``early_stop`` (True: :meth:`genmove` stops searching once the most visited move cannot be overtaken within
    its limits, which plays the same move sooner; False always spends the whole budget);
    ``device`` ("cpu"); ``bf16`` (True: the nets run in bf16 where the device computes it natively, see
    :class:`NetEvaluator`; False: fp32); ``backend`` ("auto": ONNX Runtime on a CPU when installed, save where the
    CPU computes bf16 natively and ``bf16`` is on; "torch"; "onnx"; see :class:`NetEvaluator`); ``onnx_threads``
    (ONNX Runtime's intra-op threads) and ``torch_threads`` (when the nets run on torch,
    :func:`torch.set_num_threads` for the whole process; None leaves torch's setting), both by default
    :func:`net_threads`: 1 where rollouts share the cores, else the search's ``threads`` (torch's "auto" follows
    each search: the opening's before ``rollouts_from`` runs no rollouts; ONNX Runtime's is fixed at load);
    ``prepare_nets`` (True: the nets are made ready at construction, see :class:`NetEvaluator`; False: at the
    first evaluation or ``engine.evaluator.prepare()``); and any
    :class:`gogame.mcts.SearchConfig` field: ``c_puct``, ``lambda_`` (0.5, or 1 without a value net),
    ``rollouts_from`` (0), ``fpu_reduction`` (:data:`VALUE_FPU_REDUCTION` where a value net values leaves:
    ``lambda_`` below 1 or ``rollouts_from``; else none; a dual net's file may name the settings of these four
    measured best with it, :func:`gogame.nets.save`), ``batch_size``,
    ``threads``, ``seed``, ``expand_threshold``, ``virtual_loss``, ``max_nodes``, ``dirichlet_alpha``,
    ``cleanup``, ...

    The engine keeps its search tree between calls: when the next board continues the last one (the same game
    with more moves), the subtree of the new position is reused.

    With a :class:`gogame.nets.DualNet` as ``policy`` (and no value net) the engine plays ``size`` (default: the
    first size the net was trained on); each new leaf gets its priors and value from one forward pass and is
    expanded at its first evaluation (``expand_threshold`` 0 unless given, as in AlphaGo Zero), and
    :meth:`evaluate` and :meth:`ownership` give the net's win rate and ownership.
    """

    def __init__(self, policy: nets.PolicyNet | nets.DualNet | None, value: nets.ValueNet | None = None,
                 rollout: ro.RolloutPolicy | None = None, *, size: int | None = None, visits: int = 400,
                 seconds: float | None = None, symmetries: str = "random", resign_threshold: float = 0.05,
                 resign_consecutive: int = 3, early_stop: bool = True, device: str | torch.device = "cpu",
                 torch_threads: int | None | str = "auto", bf16: bool = True, backend: str = "auto",
                 onnx_threads: int | str = "auto", prepare_nets: bool = True, **search_options) -> None:
        dual = policy is not None and policy.kind == "dual"
        if dual:
            size = size if size is not None else policy.board_sizes[0]
            search_options.setdefault("expand_threshold", 0)  # priors come with the value: expand at once
        for name, setting in _search_defaults(policy, value).items():
            search_options.setdefault(name, setting)
        config = SearchConfig(**search_options)
        if config.values_leaves and "fpu_reduction" not in search_options:
            config = dataclasses.replace(config, fpu_reduction=VALUE_FPU_REDUCTION)
        self.config = config
        threads = net_threads(self.config)
        self.evaluator = NetEvaluator(policy, value, symmetries=symmetries, seed=self.config.seed,
                                      device=device, size=size, bf16=bf16, backend=backend,
                                      threads=threads if onnx_threads == "auto" else onnx_threads,
                                      prepare=prepare_nets)
        self._torch_threads = torch_threads if self.evaluator.backend == "torch" else None
        if self._torch_threads is not None:
            torch.set_num_threads(threads if torch_threads == "auto" else torch_threads)
        self.size = self.evaluator.size
        self.rollout = rollout
        self.visits = visits
        self.seconds = seconds
        if resign_consecutive < 1:
            raise ValueError(f"resign_consecutive must be at least 1, not {resign_consecutive}")
        self.resign_threshold = resign_threshold
        self.resign_consecutive = resign_consecutive
        # colour -> (the history genmove last searched for it, how many of its searches in a row were lost)
        self._lost_searches: dict[str, tuple[list, int]] = {}
        self.early_stop = early_stop
        self.rollouts = Rollouts(rollout, self.config.threads)
        self.mcts = MCTS(self.evaluator, self.config, self.rollouts)

    @classmethod
    def load(cls, path: str | PathLike | None = None, *, size: int | None = None,
             policy: str | PathLike | None = None, value: str | PathLike | None = None,
             rollout: str | PathLike | ro.RolloutPolicy | None = None, device: str | torch.device = "cpu",
             **options) -> Engine:
        """An engine from weight files.

        ``Engine.load(size=19)``: the shipped nets for that size (:func:`gogame.nets.engine_weights`: a dual net
        for the size, else its policy net with its value net if one ships (without one, leaves are valued by
        rollouts alone), else the general dual net; FileNotFoundError if none serves the size).
        ``Engine.load(path)``: a policy, value or dual net file (its kind decides which; the other net is then
        absent), or a folder holding ``policy*.pt``, ``value*.pt`` and optionally a rollout policy
        ``rollout*.npz`` (``size`` picks ``policy{size}.pt`` when there are several, and so on); a folder with a
        ``dual*.pt`` plays that dual net alone (``dual{size}.pt`` first, else the only one).
        ``Engine.load(policy=..., value=...)``: explicit files, either may be left out. ``rollout``: a
        :class:`gogame.rollout.RolloutPolicy`, its file, or ``"uniform"`` (random playouts); by default the
        folder's, else the shipped policy if it exists, else uniform. Raises CheckpointError for a file that is not a
        net.
        """
        dual = None
        if path is not None:
            path = Path(path)
            if path.is_dir():
                rollout = rollout or _pick(path, "rollout", size, ".npz")
                if policy is None and value is None:
                    dual = _pick(path, "dual", size)
                policy = policy or _pick(path, "policy", size)
                value = value or _pick(path, "value", size)
            else:
                net = nets.load(path, device)
                return cls(net if net.kind != "value" else None, net if net.kind == "value" else None,
                           _rollout_policy(rollout), size=size, device=device, **options)
        elif policy is None and value is None:
            if size is None:
                raise ValueError("give a path, policy/value files, or the size of the shipped weights")
            shipped = nets.engine_weights(size)
            dual, policy, value = shipped.get("dual"), shipped.get("policy"), shipped.get("value")
        if dual is not None:
            return cls(nets.load(dual, device, "dual"), None, _rollout_policy(rollout), size=size, device=device,
                       **options)
        if policy is None and value is None:
            raise FileNotFoundError(f"no policy*.pt or value*.pt in {path}")
        return cls(nets.load(policy, device, "policy") if policy is not None else None,
                   nets.load(value, device, "value") if value is not None else None,
                   _rollout_policy(rollout), size=size, device=device, **options)

    # -- checks -----------------------------------------------------------------------------------------------

    def _check(self, board: Board, playing: bool) -> None:
        """ValueError for a board the engine cannot work on (and, when ``playing``, a finished game)."""
        if not isinstance(board, Board):
            raise TypeError(f"expected a gogame.Board, not {type(board).__name__}")
        if board.size != self.size:
            raise ValueError(f"board is {board.size}x{board.size} but the networks are for "
                             f"{self.size}x{self.size}")
        f = board.fast
        stones = np.flatnonzero((f.colour == fb.BLACK) | (f.colour == fb.WHITE))
        dead = stones[f.libs[f.head[stones]] == 0]
        if dead.size:
            raise ValueError(f"illegal position: the chain at {coords.to_gtp(board._point(int(dead[0])))} "
                             "has no liberties")
        if playing and board.is_over():
            how = f"{board.resigned} resigned" if board.resigned else "both sides passed"
            raise ValueError(f"the game is over ({how})")

    # -- views ------------------------------------------------------------------------------------------------

    def evaluate(self, board: Board) -> Evaluation:
        """The networks' raw view of ``board``: move probabilities and black's win probability (no search)."""
        self._check(board, playing=False)
        planes = features.planes(board, "alphago49")[None]
        if self.evaluator.policy_value is not None:  # a dual net: both from one forward
            logp, v, _ = (a[0] for a in self.evaluator.policy_value(planes))
        else:
            logp = self.evaluator.policy(planes)[0]
            v = float(self.evaluator.value(planes)[0]) if self.evaluator.has_value else None
        logp = logp.astype(np.float64)
        legal = np.append(features.legal_mask(board), True)  # pass is always legal
        p = np.where(legal, np.exp(logp - logp[legal].max()), 0.0)
        p /= p.sum()
        black = None
        if v is not None:
            black = (1 + float(v)) / 2 if board.to_move == "B" else (1 - float(v)) / 2
        return Evaluation(self.size, board.to_move, p, black)

    def analyze(self, board: Board, visits: int | None = None, seconds: float | None = None, *,
                stop_when_decided: bool = False, report: Callable[[Analysis], None] | None = None,
                report_seconds: float = 1.0) -> Analysis:
        """Search ``board`` and report the best move and every visited candidate (most visits first).

        Limits default to the engine's ``visits`` and ``seconds``; giving either here replaces both.
        ``stop_when_decided``: see :meth:`gogame.mcts.MCTS.search`. ``report``: called with the analysis so far
        every ``report_seconds`` while the search runs (it does not change the search). Raises ValueError for a
        wrong size, an illegal position or a finished game.
        """
        self._check(board, playing=True)
        if visits is None and seconds is None:
            visits, seconds = self.visits, self.seconds
        if self._torch_threads == "auto":  # rollouts_from: the opening's searches run no rollouts
            threads = net_threads(self.config, self.config.leaf_lambda(board.move_number, self.size))
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
        self.mcts.set_root(board)
        look = None if report is None else (lambda: report(self._analysis(board, SearchStats())))
        return self._analysis(board, self.mcts.search(visits, seconds, stop_when_decided, look, report_seconds))

    def _analysis(self, board: Board, stats: SearchStats) -> Analysis:
        """The search tree of ``board`` as it stands, read into an :class:`Analysis`."""
        candidates = []
        for child in self.mcts.children():
            if not child.visits:
                continue
            wr = (1 + child.q) / 2
            pv = [coords.to_gtp(m) for m in self.mcts.principal_variation(child.move)]
            lcb = wilson_interval(wr * child.visits, child.visits)[0]
            candidates.append(Candidate(coords.to_gtp(child.move), child.visits, wr, child.prior, lcb, pv,
                                        child.score, child.score_stdev))
        if candidates:
            move, winrate = candidates[0].move, candidates[0].winrate
        else:  # a single visit evaluates the root only: fall back on the priors
            best = max(self.mcts.children(), key=lambda c: c.prior)
            move, winrate = coords.to_gtp(best.move), (1 + self.mcts.root_q()) / 2
        black = winrate if board.to_move == "B" else 1 - winrate
        return Analysis(board.to_move, move, winrate, black, self.mcts.root_visits, candidates, stats)

    def genmove(self, board: Board, visits: int | None = None, seconds: float | None = None, *,
                report: Callable[[Analysis], None] | None = None, report_seconds: float = 1.0) -> str:
        """The move to play on ``board`` (which is not changed): a GTP vertex, ``"pass"`` or ``"resign"``.

        Passes at once when the opponent has just passed and the board as it stands wins for us (area
        scoring); never passes when that would lose (see :func:`gogame.mcts.pass_allowed`); resigns when the
        best move's win rate is below ``resign_threshold`` after at least ``RESIGN_MIN_VISITS`` visits (a win rate
        from a handful of rollouts is noise, not a lost game) in this search and in the ``resign_consecutive`` - 1
        searches of this colour's moves just before it in the same game (one search's low win rate has resigned
        games that play out won). Limits as in :meth:`analyze`.

        ``report``: called with the search's :class:`Analysis` every ``report_seconds`` while it runs and once
        at its end (not when passing at once), for analysis streams (GTP's ``*-genmove_analyze``): the move is
        the one the same search without ``report`` plays.
        """
        self._check(board, playing=True)
        if pass_wins(board):
            return "pass"
        analysis = self.analyze(board, visits, seconds, stop_when_decided=self.early_stop, report=report,
                                report_seconds=report_seconds)
        if report is not None:
            report(analysis)
        if self._lost_in_a_row(board, analysis) >= self.resign_consecutive:
            return "resign"
        return analysis.move

    def _lost_in_a_row(self, board: Board, analysis: Analysis) -> int:
        """How many of this colour's searches in a row, this one the last, found the game lost: below the resign
        threshold with enough visits. A search of another game (or of the same game not two moves on) starts
        the count again."""
        lost = analysis.visits >= RESIGN_MIN_VISITS and analysis.winrate < self.resign_threshold
        history, count = self._lost_searches.get(board.to_move, ([], 0))
        follows = len(board.history) == len(history) + 2 and board.history[:len(history)] == history
        count = (count + 1 if follows else 1) if lost else 0
        self._lost_searches[board.to_move] = (list(board.history), count)
        return count

    def ownership(self, board: Board, rollouts: int = 200, seed: int = 0) -> np.ndarray:
        """float64 ``[row, col]`` in [-1, 1]: who owns each point at the end of the game (+1 black).

        With a dual net, the net's ownership head (``rollouts`` and ``seed`` unused). Otherwise the mean over
        ``rollouts`` playouts, each final position scored by area (every stone alive, empty regions to the colour
        that surrounds them): the mean marks dead stones (owned by the other colour) and territory.
        """
        self._check(board, playing=False)
        if self.evaluator.dual_net is not None:
            owner = self.evaluator.ownership(features.planes(board, "alphago49")[None])[0]
            return owner.reshape(self.size, self.size) * (1.0 if board.to_move == "B" else -1.0)
        return self.rollouts.ownership(board, rollouts, seed)

    def render(self, board: Board, path: str | PathLike, what: str = "policy", visits: int | None = None) -> Path:
        """Draw ``board`` to PNG or SVG (by the suffix) with the policy (``what="policy"``: a heatmap and the
        top moves' percentages) or the search (``"winrate"``: visit shares and the candidates' win rates)."""
        if what == "policy":
            ev = self.evaluate(board)
            labels = {m: f"{100 * p:.0f}" for m, p in ev.top(10) if m != "pass" and p >= 0.005}
            return render(board, path, heatmap=ev.moves, labels=labels, title="policy (%)")
        if what == "winrate":
            an = self.analyze(board, visits)
            heat = np.zeros(self.size * self.size + 1)
            for c in an.candidates:
                heat[coords.to_flat(coords.from_gtp(c.move, self.size), self.size)] = c.visits
            labels = {c.move: f"{100 * c.winrate:.0f}" for c in an.candidates[:10] if c.move != "pass"}
            return render(board, path, heatmap=heat, labels=labels,
                          title=f"win rate (%), black {100 * an.winrate_black:.0f}%")
        raise ValueError(f"what must be 'policy' or 'winrate', not {what!r}")


def net_threads(config: SearchConfig, lambda_: float | None = None) -> int:
    """The threads the networks get by default in searches whose leaves mix ``lambda_`` (default: the config's,
    that of every search past ``rollouts_from``): 1 where rollouts run (``lambda_`` above 0), whose ``threads``
    share the cores with the nets' small batches (on 2 busy cores 1 torch thread gave 5-14 times the visits per
    second of 2: docs/journal/2026-12-02-inference-speed.md); else the rollout threads' share, ``threads``
    (at lambda 0 on 2 idle cores, 2 torch threads gave 1.17x the visits per second of 1, 2 ONNX Runtime threads
    1.5x: docs/journal/2026-12-03-equal-time.md)."""
    return 1 if (config.lambda_ if lambda_ is None else lambda_) > 0 else config.threads


def _search_defaults(policy: nets.PolicyNet | nets.DualNet | None, value: nets.ValueNet | None) -> dict:
    """The search settings by default: a dual net's measured ones (its file's ``search``, written with the
    weights that ship), lambda AlphaGo's 0.5 unless they name it; else 0.5 with a value net, else 1 (rollouts
    alone)."""
    if policy is not None and policy.kind == "dual":
        return {"lambda_": 0.5, **policy.meta.get("search", {})}
    return {"lambda_": 0.5 if value is not None else 1.0}


def _pick(folder: Path, kind: str, size: int | None, suffix: str = ".pt") -> Path | None:
    if size is not None and (folder / f"{kind}{size}{suffix}").exists():
        return folder / f"{kind}{size}{suffix}"
    found = sorted(folder.glob(f"{kind}*{suffix}"))
    if len(found) > 1:
        raise ValueError(f"{folder} holds several {kind} nets ({', '.join(p.name for p in found)}): give size")
    return found[0] if found else None


def _rollout_policy(rollout: str | PathLike | ro.RolloutPolicy | None) -> ro.RolloutPolicy | None:
    """The given rollout policy, else the shipped one if present, else None (uniform playouts)."""
    if isinstance(rollout, ro.RolloutPolicy):
        return rollout
    if rollout == "uniform":
        return None
    if rollout is not None:
        return ro.RolloutPolicy.load(rollout)
    return ro.RolloutPolicy.load() if ro.DEFAULT_ROLLOUT.exists() else None


# -- pictures -------------------------------------------------------------------------------------------------

BOARD_COLOUR = "#dcb35c"
HEAT_COLOUR = (0.85, 0.1, 0.1)  # red; opacity grows with the value


def _heat_grid(heatmap: np.ndarray | None, size: int) -> np.ndarray | None:
    """A heatmap given flat (with or without pass) or as ``[row, col]``, as ``[row, col]`` scaled to max 1."""
    if heatmap is None:
        return None
    h = np.asarray(heatmap, np.float64)
    if h.shape in ((size * size + 1,), (size * size,)):
        h = h[: size * size].reshape(size, size)
    if h.shape != (size, size):
        raise ValueError(f"heatmap of shape {h.shape} does not fit a {size}x{size} board")
    top = h.max()
    return h / top if top > 0 else h


def render(board: Board, path: str | PathLike, *, heatmap: Sequence[float] | np.ndarray | None = None,
           labels: Mapping[str, str] | None = None, title: str | None = None) -> Path:
    """Draw ``board`` to ``path``: PNG (matplotlib, Agg) or SVG (written by hand), chosen by the suffix.

    ``heatmap``: one value per point (flat ``row * size + col``, pass entry ignored, or ``[row, col]``), drawn
    as red squares whose opacity is the value over the maximum. ``labels``: text by GTP vertex (e.g. win rates).
    Returns the path. Raises ValueError for another suffix or a heatmap of the wrong shape, and ImportError naming
    ``pip install gogame-engine[plot]`` for a PNG without matplotlib (SVG needs nothing beyond the engine).
    """
    path = Path(path)
    heat = _heat_grid(heatmap, board.size)
    marks = {coords.from_gtp(v, board.size): text for v, text in (labels or {}).items()}
    if path.suffix.lower() == ".png":
        _render_png(board, path, heat, marks, title)
    elif path.suffix.lower() == ".svg":
        path.write_text(_render_svg(board, heat, marks, title), encoding="utf-8")
    else:
        raise ValueError(f"render writes .png or .svg, not {path.suffix or 'no suffix'!r}")
    return path


def _star_points(size: int) -> list[coords.Point]:
    if size < 7:
        return []
    lo = 3 if size >= 13 else 2
    hi = size - 1 - lo
    pts = [(lo, lo), (lo, hi), (hi, lo), (hi, hi)]
    if size % 2 and size >= 9:
        mid = size // 2
        pts.append((mid, mid))
        if size >= 13:
            pts += [(lo, mid), (hi, mid), (mid, lo), (mid, hi)]
    return pts


def _render_png(board: Board, path: Path, heat: np.ndarray | None, marks: dict, title: str | None) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"render to PNG needs matplotlib ({e}): pip install gogame-engine[plot], "
                          "or render to .svg") from e

    n = board.size
    fig = Figure(figsize=(6, 6.3 if title else 6), dpi=100)
    FigureCanvasAgg(fig)  # attaches itself to the figure: no pyplot, no global state
    ax = fig.add_axes((0.06, 0.06, 0.9, 0.9 * (6 / 6.3) if title else 0.9))
    ax.set_xlim(-0.8, n - 0.2)
    ax.set_ylim(-0.8, n - 0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.add_patch(_rect((-0.8, -0.8), n + 0.6, n + 0.6, BOARD_COLOUR, 1.0, z=0))
    for i in range(n):
        ax.plot([0, n - 1], [i, i], color="black", lw=0.8, zorder=1)
        ax.plot([i, i], [0, n - 1], color="black", lw=0.8, zorder=1)
        ax.text(i, -0.6, coords.GTP_COLUMNS[i], ha="center", va="center", fontsize=8)
        ax.text(-0.6, i, str(i + 1), ha="center", va="center", fontsize=8)
    for row, col in _star_points(n):
        ax.plot(col, row, "o", color="black", ms=3, zorder=1)
    if heat is not None:
        for row, col in zip(*np.nonzero(heat > 0)):
            ax.add_patch(_rect((col - 0.5, row - 0.5), 1, 1, HEAT_COLOUR, 0.75 * heat[row, col], z=2))
    from matplotlib.patches import Circle

    stones = board.stones()
    for row, col in zip(*np.nonzero(stones)):
        black = stones[row, col] > 0
        ax.add_patch(Circle((col, row), 0.47, facecolor="black" if black else "white", edgecolor="black",
                            lw=0.8, zorder=3))
    for (row, col), text in marks.items():
        ax.text(col, row, text, ha="center", va="center", fontsize=7, zorder=4,
                color="white" if stones[row, col] > 0 else "black")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, format="png")


def _rect(xy, w, h, colour, alpha, z):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, facecolor=colour, alpha=alpha, edgecolor="none", zorder=z)


def _render_svg(board: Board, heat: np.ndarray | None, marks: dict, title: str | None) -> str:
    n = board.size
    cell, margin = 30, 30
    top = 24 if title else 0
    side = 2 * margin + (n - 1) * cell

    def xy(row: int, col: int) -> tuple[int, int]:
        return margin + col * cell, top + margin + (n - 1 - row) * cell

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{side}" height="{side + top}" '
           f'viewBox="0 0 {side} {side + top}" font-family="sans-serif">',
           f'<rect x="0" y="{top}" width="{side}" height="{side}" fill="{BOARD_COLOUR}"/>']
    if title:
        out.append(f'<text x="{side / 2}" y="17" font-size="14" text-anchor="middle">{_xml(title)}</text>')
    for i in range(n):
        x0, y0 = xy(0, i)
        x1, y1 = xy(n - 1, i)
        out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="black"/>')
        x0, y0 = xy(i, 0)
        x1, y1 = xy(i, n - 1)
        out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="black"/>')
        x, y = xy(-1, i)
        out.append(f'<text x="{x}" y="{y - 8}" font-size="11" text-anchor="middle">{coords.GTP_COLUMNS[i]}</text>')
        x, y = xy(i, -1)
        out.append(f'<text x="{x + 8}" y="{y + 4}" font-size="11" text-anchor="middle">{i + 1}</text>')
    for row, col in _star_points(n):
        x, y = xy(row, col)
        out.append(f'<circle cx="{x}" cy="{y}" r="3" fill="black"/>')
    if heat is not None:
        r, g, b = (int(255 * c) for c in HEAT_COLOUR)
        for row, col in zip(*np.nonzero(heat > 0)):
            x, y = xy(row, col)
            out.append(f'<rect x="{x - cell / 2}" y="{y - cell / 2}" width="{cell}" height="{cell}" '
                       f'fill="rgb({r},{g},{b})" fill-opacity="{0.75 * heat[row, col]:.3f}"/>')
    stones = board.stones()
    for row, col in zip(*np.nonzero(stones)):
        x, y = xy(row, col)
        fill = "black" if stones[row, col] > 0 else "white"
        out.append(f'<circle cx="{x}" cy="{y}" r="{cell * 0.47}" fill="{fill}" stroke="black"/>')
    for (row, col), text in marks.items():
        x, y = xy(row, col)
        fill = "white" if stones[row, col] > 0 else "black"
        out.append(f'<text x="{x}" y="{y + 4}" font-size="11" text-anchor="middle" fill="{fill}">'
                   f'{_xml(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
