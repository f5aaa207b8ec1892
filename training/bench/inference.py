"""Inference backends side by side: network positions per second, and the shipped engines' visits per second.

Run: ``python -m training.bench.inference [--nets policy9 policy19] [--batches 1 8 16 32] [--rounds 7]
[--threads 1] [--extra openvino int8] [--engine-sizes 9 19] [--positions 4] [--engine-onnx-threads 1 2]
[--engine-torch-threads N]``.

Networks: each shipped net (``gogame/weights/{name}.pt``; a dual net on the size it learnt) on random 0/1
planes (the speed of a dense convolution does not depend on the values), at each batch size, by each backend of
:mod:`gogame.inference`:
``torch`` (the engine's default: a bf16 channels-last copy where the CPU computes bf16 natively),
``torch-autocast`` (the net itself under bf16 autocast, as a live runner runs it) and ``torch-fp32`` (both only
where bf16 is native) and ``onnx`` (ONNX Runtime, fp32), each with ``--threads`` intra-op threads; with
``--extra`` also ``openvino`` (OpenVINO's CPU plugin on the same ONNX model, its default precision: bf16 where
native) and ``int8`` (ONNX Runtime on the model statically quantised to int8, QDQ, calibrated on positions of the
first 40 games of the corpus, ``--corpus9`` / ``--corpus19``), each measured only, not shipped. Every round times each backend in turn for about
``--block`` seconds, so that load changes hit all alike; the report gives the median positions per second over
the rounds and each backend's ratio to ``torch``: the median of the per-round ratios and a 95% interval of their
mean. With ``--extra`` it also reports the top-1 agreement (over legal moves) of ``openvino`` and ``int8`` with
the fp32 ``onnx`` model on positions of later games of the corpus (held out from the calibration).

Engines: the shipped engine of each ``--engine-sizes`` size with default settings (``Engine.load(size=...)``:
400 visits, batches of 16, 2 rollout threads), one per backend, searches each of ``--positions`` corpus
positions from a fresh tree, the backends alternating position by position, ``--rounds`` times after an untimed
round (torch makes its oneDNN kernels once per batch shape: the first searches are slow); the report gives
visits per second (median over the searches), the ratio to torch, and the share of search time outside the
networks (1 - net seconds / search seconds, :class:`gogame.mcts.SearchStats`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gogame import Board, features, inference, nets
from gogame.api import Engine
from gogame.stats import mean_interval
from training.data.corpus import read_games

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
CORPUS = {9: str(SHARED_DATA / "pro9.tar.xz"), 19: str(SHARED_DATA / "pro19.tar.xz")}
Forward = Callable[[np.ndarray], object]


def corpus_positions(path: str, size: int, games: range, moves: tuple[int, ...]) -> list[Board]:
    """The boards after each of ``moves`` in games ``games`` (by order in the archive) of ``path``."""
    boards = []
    for i, (_, game) in enumerate(read_games(path, size)):
        if i >= games.stop:
            break
        if i >= games.start:
            played = len(game.moves_of(game.main_line()))
            boards += [game.board_at(n) for n in moves if n < played]
    return boards


def openvino_forward(model: bytes, threads: int) -> Forward:
    """OpenVINO's CPU plugin on ONNX ``model`` (its default inference precision), ``threads`` threads."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model, b""), "CPU",
                                  {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def forward(x: np.ndarray) -> tuple[np.ndarray, ...]:
        request.infer({0: x})
        return tuple(request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs)))

    return forward


def int8_model(model: bytes, calibration: np.ndarray) -> bytes:
    """ONNX ``model`` statically quantised to int8 (QDQ, per-channel weights), calibrated on ``calibration``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(calibration.astype(np.float32), max(1, len(calibration) // 32)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {inference.INPUT: batch}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        fp32.write_bytes(model)
        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return int8.read_bytes()


def _ratio_text(ratios: list[float]) -> str:
    lo, hi = mean_interval(np.array(ratios))
    return f"{statistics.median(ratios):.2f}x ({lo:.2f}-{hi:.2f})"


def net_backends(net: nets.PolicyNet | nets.DualNet, size: int, args: argparse.Namespace,
                 calibration: np.ndarray | None) -> dict[str, Forward]:
    shape = (net.in_planes, size, size)
    backends: dict[str, Forward] = {"torch": inference.TorchRunner(net, bf16=True)}
    if nets.bf16_native("cpu"):
        backends["torch-autocast"] = inference.TorchRunner(net, bf16=True, live=True)
        backends["torch-fp32"] = inference.TorchRunner(net, bf16=False)
    onnx = inference.OnnxRunner(net, threads=args.threads, cache_dir=inference.default_cache_dir())
    onnx.prepare(shape)
    backends["onnx"] = onnx
    if args.extra:
        model = inference.export_model(net, shape, inference.model_key(net, shape))
        if "openvino" in args.extra:
            backends["openvino"] = openvino_forward(model, args.threads)
        if "int8" in args.extra:
            session = onnx._load(int8_model(model, calibration))
            backends["int8"] = lambda x: session.run(None, {inference.INPUT: x})
    return backends


def bench_nets(args: argparse.Namespace) -> None:
    print(f"{'net':>8} {'batch':>5} {'backend':>10} {'pos/s':>8}  ratio to torch: median (95% interval of the mean)")
    for name in args.nets:
        net = nets.load(nets.WEIGHTS_DIR / f"{name}.pt")
        size = net.board_sizes[0] if net.kind == "dual" else net.board_size  # a dual net: the size it learnt
        calibration = held_out = None
        if args.extra:
            calibration = np.stack([features.planes(b, "alphago49")[: net.in_planes]
                                    for b in corpus_positions(args.corpus[size], size, range(0, 40), args.moves[size])])
            held = corpus_positions(args.corpus[size], size, range(100, 100 + args.held_out), args.moves[size])
            held_out = (np.stack([features.planes(b, "alphago49")[: net.in_planes] for b in held]),
                        np.stack([np.append(features.legal_mask(b), True) for b in held]))
        backends = net_backends(net, size, args, calibration)
        rng = np.random.default_rng(0)
        for batch in args.batches:
            x = rng.integers(0, 2, (batch, net.in_planes, size, size)).astype(np.float32)
            calls = {}
            for label, forward in backends.items():  # warm up, and size each block to about --block seconds
                forward(x)
                start = time.perf_counter()
                forward(x)
                calls[label] = max(1, int(args.block / max(time.perf_counter() - start, 1e-6)))
            rates: dict[str, list[float]] = {label: [] for label in backends}
            for _ in range(args.rounds):
                for label, forward in backends.items():
                    start = time.perf_counter()
                    for _ in range(calls[label]):
                        forward(x)
                    rates[label].append(batch * calls[label] / (time.perf_counter() - start))
            for label, r in rates.items():
                ratio = "" if label == "torch" else _ratio_text([a / b for a, b in zip(r, rates["torch"])])
                print(f"{name:>8} {batch:>5} {label:>10} {statistics.median(r):>8.1f}  {ratio}", flush=True)
        if args.extra:
            planes, legal = held_out
            reference = _top1(backends["onnx"], planes, legal)
            for label in ("openvino", "int8"):
                if label in backends:
                    agree = float(np.mean(_top1(backends[label], planes, legal) == reference))
                    print(f"{name:>8} top-1 agreement of {label} with onnx fp32: {100 * agree:.1f}% "
                          f"of {len(planes)} held-out positions", flush=True)


def _top1(forward: Forward, planes: np.ndarray, legal: np.ndarray) -> np.ndarray:
    logits = np.concatenate([forward(planes[i:i + 32].astype(np.float32))[0] for i in range(0, len(planes), 32)])
    return np.where(legal, logits, -np.inf).argmax(axis=1)


def bench_engines(args: argparse.Namespace) -> None:
    print(f"{'size':>4} {'backend':>10} {'searches':>8} {'visits/s':>9}  {'outside nets':>12}  ratio to torch: "
          "median (95% interval of the mean)")
    for size in args.engine_sizes:
        boards = corpus_positions(args.corpus[size], size, range(0, args.positions), (args.moves[size][1],))
        common = {"size": size, "seed": 0, "torch_threads": args.engine_torch_threads}
        engines = {"torch": Engine.load(backend="torch", **common)}
        if nets.bf16_native("cpu"):
            engines["torch-fp32"] = Engine.load(backend="torch", bf16=False, **common)
        for threads in args.engine_onnx_threads:
            for batch in args.engine_batches:
                engines[f"onnx:{threads}/{batch}"] = Engine.load(backend="onnx", onnx_threads=threads,
                                                                 batch_size=batch, **common)
        for board in boards:  # warm up (numba kernels; torch's oneDNN primitives, made once per batch shape)
            for engine in engines.values():
                engine.mcts.set_root(Board(size))
                engine.analyze(board)
        rates: dict[str, list[float]] = {label: [] for label in engines}
        outside: dict[str, list[float]] = {label: [] for label in engines}
        for _ in range(args.rounds):
            for board in boards:
                for label, engine in engines.items():
                    engine.mcts.set_root(Board(size))  # a fresh tree for the next position
                    stats = engine.analyze(board).stats
                    rates[label].append(stats.simulations / stats.seconds)
                    outside[label].append(1 - stats.net_seconds / stats.seconds)
        for label in engines:
            ratio = "" if label == "torch" else _ratio_text([a / b for a, b in zip(rates[label], rates["torch"])])
            print(f"{size:>4} {label:>10} {len(rates[label]):>8} {statistics.median(rates[label]):>9.1f}  "
                  f"{100 * statistics.median(outside[label]):>11.1f}%  {ratio}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="*", default=["policy9", "policy19"], help="shipped nets to time")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds of every measurement")
    parser.add_argument("--block", type=float, default=0.3, help="seconds per backend per round (networks)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of every backend in the network timings (torch, ONNX Runtime, ...)")
    parser.add_argument("--engine-sizes", type=int, nargs="*", default=[9, 19])
    parser.add_argument("--engine-onnx-threads", type=int, nargs="+", default=[inference.DEFAULT_THREADS],
                        help="ONNX Runtime threads of the onnx engines compared with the torch one (one engine each)")
    parser.add_argument("--engine-batches", type=int, nargs="+", default=[16],
                        help="search batch sizes of the onnx engines (the torch ones keep the default, 16)")
    parser.add_argument("--engine-torch-threads", type=int, default=1,
                        help="torch threads of the engines (default 1, the Engine's; 0: torch's own default)")
    parser.add_argument("--positions", type=int, default=4, help="corpus positions per engine size")
    parser.add_argument("--extra", nargs="*", choices=["openvino", "int8"], default=[],
                        help="also time OpenVINO and int8 ONNX Runtime (measured, not shipped)")
    parser.add_argument("--held-out", type=int, default=60, help="games of the top-1 agreement positions")
    parser.add_argument("--corpus9", default=CORPUS[9], help="9x9 SGF archive of the positions")
    parser.add_argument("--corpus19", default=CORPUS[19], help="19x19 SGF archive of the positions")
    args = parser.parse_args(argv)
    args.corpus = {9: args.corpus9, 19: args.corpus19}
    args.moves = {9: (10, 20, 30), 19: (30, 80, 130)}
    args.engine_torch_threads = args.engine_torch_threads or None  # None: the Engine leaves torch's setting
    default_threads = args.engine_torch_threads or torch.get_num_threads()

    print("command: python -m training.bench.inference " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"torch {torch.__version__}, native bf16 {nets.bf16_native('cpu')}; networks: {args.threads} intra-op "
          f"thread(s) each; engines: torch {default_threads} threads")
    if args.nets:
        torch.set_num_threads(args.threads)
        bench_nets(args)
    if args.engine_sizes:
        torch.set_num_threads(default_threads)
        bench_engines(args)


if __name__ == "__main__":
    main()
