"""The speed benchmarks' own parts: the engine bench's corpus positions and the inference bench's backends."""

from __future__ import annotations

import argparse

import numpy as np

from gogame import nets, sgf
from training.bench import engine_speed, inference

from tests.shared import shared_archive


def test_the_engine_bench_takes_its_positions_from_the_corpus_at_its_move():
    shared_archive(engine_speed.CORPUS[9].name)
    positions = engine_speed.positions(9, 2)
    assert len(positions) == 2
    for text, move in positions:
        game, = sgf.loads(text)
        assert move == engine_speed.MOVE[9] < len(game.moves_of(game.main_line()))


def test_the_inference_bench_times_a_dual_net_on_every_torch_backend_and_onnx():
    net = nets.build("dual", 49, 9, "b2c16").eval()
    args = argparse.Namespace(threads=1, extra=[])
    backends = inference.net_backends(net, 9, args, None)
    assert {"torch", "onnx"} <= set(backends)
    x = np.random.default_rng(0).integers(0, 2, (3, 49, 9, 9)).astype(np.float32)
    reference = backends["onnx"](x)
    for label, forward in backends.items():
        out = forward(x)
        assert [a.shape for a in out] == [(3, 82), (3,), (3, 81)], label
        assert np.abs(out[1] - reference[1]).max() < 0.1, label
