"""Inference backends: ONNX Runtime against torch on the shipped nets, the model cache, backend choice and errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gogame import Board, features, inference, nets
from gogame.api import Engine, NetEvaluator


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def exports(monkeypatch):
    """Counts :func:`gogame.inference.export_model` calls (``exports[0]``)."""
    count = [0]
    real = inference.export_model

    def counting(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "export_model", counting)
    return count


def planes(batch: int, net: nn.Module, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, (batch, net.in_planes, net.board_size, net.board_size)).astype(np.float32)


@pytest.mark.parametrize("name", ["policy9", "policy19"])
def test_onnx_runtime_matches_torch_fp32_on_the_shipped_nets(name, tmp_path):
    net = nets.load(nets.WEIGHTS_DIR / f"{name}.pt")
    torch_run = inference.TorchRunner(net, bf16=False)
    onnx_run = inference.OnnxRunner(net, cache_dir=tmp_path)
    for batch in (1, 16):  # one session: the batch axis is dynamic
        x = planes(batch, net, seed=batch)
        (expected,), (got,) = torch_run(x), onnx_run(x)
        assert got.shape == expected.shape == (batch, net.board_size ** 2 + 1) and got.dtype == np.float32
        assert np.abs(got - expected).max() < 1e-4


class TwoHeads(nn.Module):
    """A net with a tuple of outputs, as a dual policy-value net has."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.value = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.conv(x))
        return h.flatten(1), torch.tanh(self.value(h.mean(dim=(2, 3)))).squeeze(1)


def test_a_net_with_several_outputs_gives_one_array_each_on_both_backends(tmp_path, exports):
    torch.manual_seed(0)
    net = TwoHeads().eval()
    onnx_run = inference.OnnxRunner(net, cache_dir=tmp_path)
    for batch, size in ((3, 5), (7, 5), (2, 7)):  # a second board size is a second export
        x = np.random.default_rng(batch).normal(size=(batch, 3, size, size)).astype(np.float32)
        expected, got = inference.TorchRunner(net, bf16=False)(x), onnx_run(x)
        assert [a.shape for a in got] == [a.shape for a in expected] == [(batch, 4 * size * size), (batch,)]
        assert all(np.abs(g - e).max() < 1e-5 for g, e in zip(got, expected))
    assert exports[0] == 2



def test_a_torch_runner_runs_the_weights_it_was_made_with_and_a_live_one_the_nets_own():
    torch.manual_seed(0)
    net = TwoHeads().eval()
    x = np.random.default_rng(1).normal(size=(2, 3, 5, 5)).astype(np.float32)
    made, live = inference.TorchRunner(net, bf16=False), inference.TorchRunner(net, bf16=False, live=True)
    before = made(x)
    with torch.no_grad():
        net.value.bias += 0.5
    after = net(torch.from_numpy(x))[1].detach().numpy()
    assert np.array_equal(made(x)[1], before[1])
    assert np.allclose(live(x)[1], after) and not np.allclose(after, before[1])


def test_the_bf16_copy_is_the_nets_forward_in_bf16_and_leaves_the_net_as_it_was(monkeypatch):
    """On any CPU (bf16 declared native here, so the copy is made where it is not): a bf16 channels-last copy
    whose outputs are fp32's to bf16's precision, and the same as bf16 autocast's to about that."""
    monkeypatch.setattr(nets, "bf16_native", lambda device_type: True)
    net = nets.build("dual", 49, 9, "b2c16").eval()
    with torch.no_grad():
        for param in net.parameters():  # a trained-like scale: the residual branches on
            param.add_(torch.randn_like(param) * 0.05)
    x = np.random.default_rng(2).integers(0, 2, (4, 49, 9, 9)).astype(np.uint8)
    copy, autocast = inference.TorchRunner(net), inference.TorchRunner(net, live=True)
    fp32 = inference.TorchRunner(net, bf16=False)(x)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert all(p.dtype == torch.bfloat16 for p in copy.net.parameters())
    assert copy.net.stem.weight.is_contiguous(memory_format=torch.channels_last)
    for got, ref, auto in zip(copy(x), fp32, autocast(x)):
        assert got.dtype == np.float32 and got.shape == ref.shape
        scale = np.abs(ref).max() + 1e-6
        assert np.abs(got - ref).max() < 0.05 * scale and np.abs(got - auto).max() < 0.05 * scale


def test_only_the_torch_backend_runs_live_weights():
    net = tiny_policy(0)
    assert inference.runner(net, "torch", live=True).net is net
    with pytest.raises(ValueError, match="backend='torch'"):
        inference.runner(net, "onnx", live=True)

@pytest.mark.parametrize(("size", "visits", "symmetries"), [(9, 96, "none"), (9, 96, "random"), (19, 48, "random")])
def test_engine_search_chooses_the_same_moves_on_both_backends(size, visits, symmetries):
    """The shipped engines, fixed seed (which fixes the random symmetries too), fp32 torch: the same visits for
    every root move.

    Float differences (below 1e-4 in the logits) could in principle flip a near tie between two children;
    on these positions they do not, and the priors are pinned within 1e-4 as well."""
    board = Board(size)
    for move in ("E5", "C3", "G7", "C7", "D4"):
        board.play(move)
    results = {}
    for backend in ("torch", "onnx"):
        engine = Engine.load(size=size, seed=3, symmetries=symmetries, bf16=False, backend=backend, visits=visits,
                             threads=1)
        assert engine.evaluator.backend == backend
        first = engine.analyze(Board(size))
        second = engine.analyze(board)
        results[backend] = [(a.move, [(c.move, c.visits, c.prior) for c in a.candidates]) for a in (first, second)]
    for (move_t, cands_t), (move_o, cands_o) in zip(results["torch"], results["onnx"]):
        assert move_t == move_o
        assert [(m, v) for m, v, _ in cands_t] == [(m, v) for m, v, _ in cands_o]
        assert max(abs(p - q) for (_, _, p), (_, _, q) in zip(cands_t, cands_o)) < 1e-4


def test_evaluator_policy_and_value_agree_across_backends_with_random_symmetries():
    torch.manual_seed(1)
    policy, value = nets.build("policy", 48, 9, "tiny"), nets.build("value", 49, 9, "tiny")
    x = np.random.default_rng(2).integers(0, 2, (12, 49, 9, 9)).astype(np.uint8)
    out = {}
    for backend in ("torch", "onnx"):
        ev = NetEvaluator(policy, value, symmetries="random", seed=5, bf16=False, backend=backend, cache=False)
        out[backend] = ev.policy(x), ev.value(x)
    assert np.abs(out["torch"][0] - out["onnx"][0]).max() < 1e-4
    assert np.abs(out["torch"][1] - out["onnx"][1]).max() < 1e-4


def test_a_dual_nets_priors_value_and_ownership_agree_across_backends_over_all_symmetries():
    torch.manual_seed(3)
    net = nets.build("dual", 49, 9, "b2c16").eval()
    with torch.no_grad():
        for block in net.trunk:
            block.scale.fill_(0.5)  # the residual branches in use, as in a trained net
    x = np.random.default_rng(4).integers(0, 2, (5, 49, 9, 9)).astype(np.uint8)
    out = {}
    for backend in ("torch", "onnx"):
        ev = NetEvaluator(net, None, size=9, symmetries="all", bf16=False, backend=backend, cache=False)
        out[backend] = (*ev.policy_value(x), ev.ownership(x))
    for t, o in zip(out["torch"], out["onnx"]):
        assert t.shape == o.shape and np.abs(t - o).max() < 1e-4


def test_self_play_and_eval_policy_agree_across_backends():
    from training.eval.policy import policy_log_probs
    from training.stages.selfplay import NetPlayer

    net = nets.load(nets.WEIGHTS_DIR / "policy9.pt")
    x = np.random.default_rng(6).integers(0, 2, (16, 49, 9, 9)).astype(np.uint8)
    sensible = np.random.default_rng(7).random((16, 81)) < 0.7
    legal = torch.from_numpy(np.append(sensible, np.ones((16, 1), bool), axis=1))
    moves, logp = {}, {}
    for backend in ("torch", "onnx"):
        run = inference.runner(net, backend, bf16=False, cache=False)
        logp[backend] = policy_log_probs(net, x[:, :48], legal, ensemble=True, runner=run).exp().numpy()
        player = NetPlayer(net, backend=backend)
        player.run = run  # fp32 torch, as onnx is
        moves[backend] = player.choose([], x, sensible, np.random.default_rng(8))
    assert np.abs(logp["torch"] - logp["onnx"]).max() < 1e-4
    assert np.array_equal(moves["torch"], moves["onnx"])


# -- the symmetric forward ---------------------------------------------------------------------------------


def test_the_symmetric_policy_is_the_mean_of_each_views_softmax_turned_back():
    """:func:`inference.policy` against the plain loop: each view's planes, its masked softmax, the inverse
    transform of its points, the mean over the views."""
    net = tiny_policy(2)
    x = np.random.default_rng(9).integers(0, 2, (3, 48, 9, 9)).astype(np.uint8)
    legal = np.random.default_rng(10).random((3, 82)) < 0.6
    legal[:, -1] = True
    run = inference.TorchRunner(net, bf16=False)
    expected = np.zeros((3, 82))
    for k in range(8):
        logits = net(torch.from_numpy(features.transform_planes(x, k).astype(np.float32))).detach()
        p = nets.masked_log_softmax(logits, torch.from_numpy(np.stack([
            np.append(features.transform_planes(row[:81].reshape(9, 9), k).ravel(), row[81]) for row in legal])))
        p = p.exp().numpy()
        back = p.copy()  # the point of view k at (r, c) is the board's point transform_flat_move^-1
        back[:, :81] = p[:, features.transform_flat_move(np.arange(81), 9, k)]
        expected += back / 8
    got = np.exp(inference.policy(run, x, inference.symmetries("all", 3), legal))
    assert np.allclose(got, expected, atol=1e-5)
    assert (got[~legal] == 0).all()
    plain = np.exp(inference.policy(run, x, inference.symmetries("none", 3)))
    assert np.allclose(plain, torch.softmax(net(torch.from_numpy(x).float()), dim=1).detach().numpy(), atol=1e-6)


def test_symmetry_modes():
    assert inference.symmetries("all", 2).tolist() == list(range(8)) * 2
    assert inference.symmetries("none", 3).tolist() == [0, 0, 0]
    ks = inference.symmetries("random", 1000, np.random.default_rng(0))
    assert ks.shape == (1000,) and set(ks.tolist()) == set(range(8))
    for bad in ("random", "some"):
        with pytest.raises(ValueError, match="symmetries must be one of"):
            inference.symmetries(bad, 2)


# -- the cache --------------------------------------------------------------------------------------------


def tiny_policy(seed: int) -> nets.PolicyNet:
    torch.manual_seed(seed)
    return nets.build("policy", 48, 9, "tiny").eval()


def tiny_dual(seed: int) -> nets.DualNet:
    torch.manual_seed(seed)
    return nets.build("dual", 49, 9, "b2c16").eval()


def cached_files(folder):
    return sorted(folder.glob("*.onnx"))


def test_a_second_load_reuses_the_cached_model(tmp_path, exports):
    net = tiny_policy(0)
    x = planes(4, net)
    first = inference.OnnxRunner(net, cache_dir=tmp_path)(x)[0]
    assert exports[0] == 1 and len(cached_files(tmp_path)) == 1
    again = tiny_policy(0)  # the same weights in another module
    second = inference.OnnxRunner(again, cache_dir=tmp_path)(x)[0]
    assert exports[0] == 1 and np.array_equal(first, second)
    key = inference.model_key(net, (48, 9, 9))
    assert cached_files(tmp_path)[0].name.startswith(f"{key}-")


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_corrupt_cached_model_is_rebuilt(tmp_path, exports, damage):
    net = tiny_policy(0)
    x = planes(2, net)
    expected = inference.TorchRunner(net, bf16=False)(x)[0]
    inference.OnnxRunner(net, cache_dir=tmp_path).prepare((48, 9, 9))
    (path,) = cached_files(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x40  # one byte of the weights: the digest no longer fits
    else:
        data = bytearray(b"not a model")
    path.write_bytes(bytes(data))
    got = inference.OnnxRunner(net, cache_dir=tmp_path)(x)[0]
    assert exports[0] == 2 and np.abs(got - expected).max() < 1e-4
    (rebuilt,) = cached_files(tmp_path)
    assert rebuilt.read_bytes() != bytes(data)


def test_a_cached_model_of_other_weights_is_not_used(tmp_path, exports):
    a, b = tiny_policy(0), tiny_policy(1)
    shape = (48, 9, 9)
    assert inference.model_key(a, shape) != inference.model_key(b, shape)
    inference.OnnxRunner(a, cache_dir=tmp_path).prepare(shape)
    (path_a,) = cached_files(tmp_path)
    # a's model under b's key, with a digest that fits its bytes: only the key stored inside tells them apart
    digest = path_a.stem.split("-")[1]
    foreign = tmp_path / f"{inference.model_key(b, shape)}-{digest}.onnx"
    foreign.write_bytes(path_a.read_bytes())
    x = planes(3, b)
    got = inference.OnnxRunner(b, cache_dir=tmp_path)(x)[0]
    assert exports[0] == 2 and not foreign.exists()
    assert np.abs(got - inference.TorchRunner(b, bf16=False)(x)[0]).max() < 1e-4


def test_the_key_follows_the_weights_and_the_input_shape():
    net = tiny_policy(0)
    key = inference.model_key(net, (48, 9, 9))
    assert inference.model_key(tiny_policy(0), (48, 9, 9)) == key
    assert inference.model_key(net, (48, 7, 7)) != key
    with torch.no_grad():
        net.point_bias[3] += 1e-3
    assert inference.model_key(net, (48, 9, 9)) != key


def test_an_unwritable_cache_runs_the_model_from_memory(tmp_path, exports):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    net = tiny_policy(0)
    run = inference.OnnxRunner(net, cache_dir=blocker / "onnx")
    assert run(planes(2, net))[0].shape == (2, 82) and exports[0] == 1


def test_the_nets_are_exported_at_construction_unless_deferred_to_prepare(tmp_path, exports):
    NetEvaluator(tiny_policy(0), None, backend="onnx", cache_dir=tmp_path)
    assert exports[0] == 1
    deferred = NetEvaluator(tiny_policy(1), None, backend="onnx", cache_dir=tmp_path, prepare=False)
    assert exports[0] == 1 and len(cached_files(tmp_path)) == 1
    deferred.prepare()
    deferred.prepare()  # once per net and shape
    assert exports[0] == 2 and len(cached_files(tmp_path)) == 2
    engine = Engine(tiny_policy(2), None, backend="onnx", threads=1, prepare_nets=False)
    assert exports[0] == 2
    engine.evaluate(Board(9))  # the first evaluation exports it
    assert exports[0] == 3


def test_a_cached_model_runs_without_importing_onnx(tmp_path):
    """onnx (the exporter's dependency, a second or more to import) is imported by an export only."""
    script = f"""
import sys
import torch
from gogame import inference, nets
torch.manual_seed(0)
net = nets.build("policy", 48, 9, "tiny").eval()
run = inference.runner(net, "onnx", cache_dir={str(tmp_path)!r})
assert inference.choose("onnx") == "onnx" and "onnx" not in sys.modules
run.prepare((48, 9, 9))
print("onnx" in sys.modules)
"""
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo))
    imported = [subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True,
                               check=True, timeout=120).stdout.split() for _ in range(2)]
    assert imported == [["True"], ["False"]]  # exported on the empty cache, loaded from it the second time


def test_the_default_cache_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert inference.default_cache_dir() == tmp_path / "gogame" / "onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert inference.default_cache_dir().parts[-3:] == (".cache", "gogame", "onnx")


# -- choosing a backend -----------------------------------------------------------------------------------


def test_auto_is_onnx_on_a_cpu_without_native_bf16_and_torch_elsewhere(monkeypatch):
    monkeypatch.setattr(inference.nets, "bf16_native", lambda device_type: False)
    assert inference.choose("auto", "cpu") == "onnx"
    assert inference.choose("auto", "cuda") == "torch"
    monkeypatch.setattr(inference.nets, "bf16_native", lambda device_type: True)
    assert inference.choose("auto", "cpu") == "torch"
    assert inference.choose("auto", "cpu", bf16=False) == "onnx"
    assert inference.choose("torch", "cpu") == "torch"


def test_bad_backends_are_clear_errors():
    with pytest.raises(ValueError, match="backend must be one of"):
        inference.choose("tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU"):
        inference.choose("onnx", "cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        Engine.load(size=9, backend="fast")


@pytest.mark.parametrize("package", ["onnxruntime", "onnx"])
def test_an_onnx_backend_that_is_not_installed_names_the_install_command(monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # import then raises ImportError
    with pytest.raises(inference.BackendUnavailable, match=f"pip install {package}"):
        inference.choose("onnx")
    with pytest.raises(inference.BackendUnavailable, match=f"pip install {package}"):
        NetEvaluator(tiny_policy(0), None, backend="onnx")
    assert inference.choose("auto", "cpu", bf16=False) == "torch"
    assert NetEvaluator(tiny_policy(0), None, backend="auto", bf16=False).backend == "torch"


def test_the_engine_runs_torch_nets_on_one_thread_beside_rollouts_unless_told_otherwise(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    Engine(tiny_policy(0), None, backend="torch", threads=3)
    Engine(tiny_policy(0), None, backend="torch", torch_threads=None, threads=1)
    Engine(tiny_policy(0), None, backend="torch", torch_threads=2, threads=1)
    Engine(tiny_policy(0), None, backend="onnx", threads=1, torch_threads=2)  # no torch nets: torch left alone
    assert calls == [1, 2]


def test_without_rollouts_the_nets_get_the_rollout_threads(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    net = tiny_dual(0)
    Engine(net, backend="torch", threads=3, lambda_=0)
    Engine(net, backend="torch", threads=3, lambda_=0.5)
    onnx = Engine(net, backend="onnx", threads=3, lambda_=0)
    assert calls == [3, 1]
    assert onnx.evaluator._runners["dual"].threads == 3
    assert Engine(net, backend="onnx", threads=3, lambda_=0, onnx_threads=1).evaluator._runners["dual"].threads == 1


def test_torch_threads_follow_each_search_when_rollouts_join_later(monkeypatch):
    net = tiny_dual(0)
    engine = Engine(net, size=7, backend="torch", threads=2, lambda_=0.5, rollouts_from=0.1, visits=4)
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(torch, "get_num_threads", lambda: calls[-1] if calls else 1)
    board = Board(7)
    engine.analyze(board)  # no stone yet: the value net alone, so the nets take the rollout threads' cores
    for move in ("D4", "C3", "E5", "C5", "E3"):  # 5 of 49 points: past rollouts_from, rollouts run
        board.play(move)
    engine.analyze(board)
    engine.analyze(board)
    pinned = Engine(net, size=7, backend="torch", threads=2, lambda_=0.5, rollouts_from=0.1, visits=4,
                    torch_threads=1)
    pinned.analyze(Board(7))
    assert calls == [2, 1, 1]
