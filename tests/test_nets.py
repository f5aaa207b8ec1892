"""Tests for gogame.nets: shapes, orientation, masking, files, trainer checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gogame import nets
from gogame.checkpoint import CheckpointError, save_checkpoint
from gogame.coords import to_flat
from training.trainer import Trainer, TrainConfig

REPO = Path(__file__).resolve().parents[1]
PLANES = 48


def planes(batch: int, size: int, in_planes: int = PLANES, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, in_planes, size, size, generator=g) < 0.3).float()


# -- shapes ------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["tiny", "small", "medium"])
@pytest.mark.parametrize("size", [9, 13, 19])
def test_output_shapes(preset, size):
    x = planes(2, size)
    with torch.no_grad():
        assert nets.build("policy", PLANES, size, preset)(x).shape == (2, size * size + 1)
        assert nets.build("value", PLANES + 1, size, preset)(planes(2, size, PLANES + 1)).shape == (2,)


def test_alphago_preset_at_19():
    with torch.no_grad():
        policy = nets.build("policy", PLANES, 19, "alphago")
        assert policy(planes(1, 19)).shape == (1, 362)
        value = nets.build("value", PLANES + 1, 19, "alphago")
        assert value(planes(1, 19, PLANES + 1)).shape == (1,)
    convs = [m for m in policy.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13 and convs[0].kernel_size == (5, 5) and convs[-1].kernel_size == (1, 1)
    assert all(c.out_channels == 192 for c in convs[:-1])


@pytest.mark.parametrize("size", [2, 25])
def test_extreme_board_sizes(size):
    with torch.no_grad():
        assert nets.build("policy", 4, size, "tiny")(planes(1, size, 4)).shape == (1, size * size + 1)
        assert nets.build("value", 4, size, "tiny")(planes(1, size, 4)).shape == (1,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="board size"):
        nets.build("policy", PLANES, 26, "tiny")
    with pytest.raises(ValueError, match="board size"):
        nets.build("policy", PLANES, 1, "tiny")
    with pytest.raises(ValueError, match="kind"):
        nets.build("rollout", PLANES, 9, "tiny")
    with pytest.raises(ValueError, match="preset"):
        nets.build("policy", PLANES, 9, "huge")
    with pytest.raises(ValueError, match="layers"):
        nets.build("policy", PLANES, 9, None, layers=1, filters=8)
    with pytest.raises(ValueError, match="shape"):
        nets.build("policy", PLANES, 9, "tiny")(planes(1, 13))


def test_custom_architecture_and_integer_planes():
    net = nets.build("policy", PLANES, 9, None, layers=4, filters=8)
    assert net.meta["preset"] is None and (net.meta["layers"], net.meta["filters"]) == (4, 8)
    x = planes(3, 9)
    with torch.no_grad():
        assert torch.equal(net(x.to(torch.uint8)), net(x))


# -- policy details ----------------------------------------------------------


def test_per_point_bias():
    net = nets.build("policy", PLANES, 9, "tiny")
    assert net.point_bias.shape == (81,)
    x = planes(2, 9)
    with torch.no_grad():
        before = net(x)
        net.point_bias[40] += 5.0
        delta = net(x) - before
    assert delta[:, 40].tolist() == pytest.approx([5.0, 5.0])
    assert delta[:, :40].abs().max() == 0 and delta[:, 41:].abs().max() == 0


def test_logit_index_is_row_times_size_plus_col():
    # A 2-layer net wired to copy input plane 0 to the logits: a stone at
    # planes[0, 0, row, col] must light up logit row * size + col.
    size, point = 9, (1, 3)  # row 1 (second from the bottom), column D
    net = nets.build("policy", 1, size, None, layers=2, filters=1)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.hidden[0].weight[0, 0, 2, 2] = 1.0  # centre tap of the 5x5 kernel
        net.to_points.weight.fill_(1.0)
        x = torch.zeros(1, 1, size, size)
        x[0, 0, point[0], point[1]] = 1.0
        logits = net(x)
    assert logits.argmax().item() == to_flat(point, size) == 12


def test_masked_log_softmax():
    logits = torch.randn(2, 10)
    legal = torch.zeros(2, 10, dtype=torch.bool)
    legal[0, [1, 4, 9]] = True
    legal[1, 9] = True  # only pass
    probs = nets.masked_log_softmax(logits, legal).exp()
    assert probs[~legal].abs().max() == 0
    assert probs.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])
    assert probs[1, 9] == 1.0
    single = nets.masked_log_softmax(logits[0], legal[0]).exp()  # one position, no batch dim
    assert torch.allclose(single, probs[0])
    with pytest.raises(ValueError, match="no legal move"):
        nets.masked_log_softmax(logits, torch.zeros(2, 10, dtype=torch.bool))


def test_value_is_in_range():
    net = nets.build("value", PLANES + 1, 9, "tiny")
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(50.0)  # saturate: tanh must still bound the output
        v = net(planes(8, 9, PLANES + 1) * 100)
    assert v.shape == (8,) and v.abs().max() <= 1.0


def test_value_head_cannot_die_at_its_single_plane():
    """A single-plane layer pushed far negative (what a ReLU there would zero for every input) still passes
    the input through: the value keeps depending on the position."""
    torch.manual_seed(0)
    net = nets.build("value", PLANES + 1, 9, "tiny")
    with torch.no_grad():
        net.to_plane.bias.sub_(5.0)  # the plane is negative everywhere: a ReLU would output zeros
        assert net.to_plane(net.hidden(net._planes(planes(8, 9, PLANES + 1)))).max() < 0
        v = net(planes(8, 9, PLANES + 1))
    assert v.std() > 1e-3


# -- files -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["policy", "value"])
def test_save_load_round_trip(tmp_path, kind):
    net = nets.build(kind, PLANES, 9, "tiny")
    provenance = {"command": "gogame-train policy", "metrics": {"accuracy": 0.5}, "games": [1, 2]}
    nets.save(net, tmp_path / "net.pt", features="alphago48", provenance=provenance)
    loaded = nets.load(tmp_path / "net.pt")
    assert type(loaded) is type(net) and not loaded.training
    head = {"ownership_head": False} if kind == "value" else {}
    assert loaded.meta == {"kind": kind, "preset": "tiny", "layers": 3, "filters": 16, "in_planes": PLANES,
                           "board_size": 9, **head, "features": "alphago48", "provenance": provenance}
    x = planes(4, 9)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    nets.save(loaded, tmp_path / "again.pt")  # a loaded net keeps its description
    assert nets.load(tmp_path / "again.pt").meta == loaded.meta


def test_ownership_head_gives_per_point_logits_and_survives_a_round_trip(tmp_path):
    torch.manual_seed(0)
    net = nets.build("value", PLANES + 1, 9, "tiny", ownership_head=True).eval()
    x = planes(3, 9, PLANES + 1)
    with torch.no_grad():
        value, logits = net(x, ownership=True)
        assert logits.shape == (3, 81) and torch.equal(value, net(x))  # the head leaves the value alone
    nets.save(net, tmp_path / "value.pt", features="alphago49")
    loaded = nets.load(tmp_path / "value.pt", kind="value")
    assert loaded.meta["ownership_head"] is True
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded(x, ownership=True), (value, logits)))
    with pytest.raises(ValueError, match="no ownership head"):
        nets.build("value", PLANES + 1, 9, "tiny")(x, ownership=True)
    with pytest.raises(ValueError, match="only a value net"):
        nets.build("policy", PLANES, 9, "tiny", ownership_head=True)
    trunk = nets.value_from_policy(nets.build("policy", PLANES, 9, "tiny"), PLANES + 1, ownership_head=True)
    assert trunk(x, ownership=True)[1].shape == (3, 81)


def test_fp16_storage(tmp_path):
    net = nets.build("policy", PLANES, 19, "small")
    nets.save(net, tmp_path / "fp32.pt")
    nets.save(net, tmp_path / "fp16.pt", half=True)
    assert (tmp_path / "fp16.pt").stat().st_size < 0.6 * (tmp_path / "fp32.pt").stat().st_size
    loaded = nets.load(tmp_path / "fp16.pt")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = planes(2, 19)
    with torch.no_grad():
        ref, out = net(x), loaded(x)
    assert torch.allclose(ref, out, atol=1e-2, rtol=1e-2)
    assert torch.equal(ref.argmax(1), out.argmax(1))


def test_load_checks_kind_and_contents(tmp_path):
    nets.save(nets.build("value", PLANES, 9, "tiny"), tmp_path / "value.pt")
    with pytest.raises(CheckpointError, match="expected a policy network"):
        nets.load(tmp_path / "value.pt", kind="policy")
    save_checkpoint(tmp_path / "bare.pt", {"kind": "policy", "model": {}})
    with pytest.raises(CheckpointError, match="does not describe"):
        nets.load(tmp_path / "bare.pt")
    meta = {**nets.describe(nets.build("policy", PLANES, 9, "tiny")), "filters": 32}
    save_checkpoint(tmp_path / "wrong.pt", {"kind": "policy", "meta": meta,
                                            "model": nets.build("policy", PLANES, 9, "tiny").state_dict()})
    with pytest.raises(CheckpointError, match="do not fit"):
        nets.load(tmp_path / "wrong.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a network")
    with pytest.raises(CheckpointError):
        nets.load(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError):
        nets.load(tmp_path / "missing.pt")


def test_load_strips_ddp_and_compile_prefixes(tmp_path):
    net = nets.build("policy", PLANES, 9, "tiny")
    state = {f"module._orig_mod.{k}": v for k, v in net.state_dict().items()}
    save_checkpoint(tmp_path / "ddp.pt", {"kind": "policy", "meta": nets.describe(net), "model": state})
    x = planes(1, 9)
    with torch.no_grad():
        assert torch.equal(nets.load(tmp_path / "ddp.pt")(x), net(x))


def test_load_trainer_checkpoints(tmp_path):
    size = 5
    torch.manual_seed(0)
    net = nets.build("policy", 4, size, "tiny")
    x = planes(32, size, 4, seed=1)
    moves = torch.randint(0, size * size + 1, (32,))
    data = torch.utils.data.TensorDataset(x, moves)

    def policy_loss(model, batch):
        inputs, targets = batch
        logits = model(inputs)
        return torch.nn.functional.cross_entropy(logits, targets), {}

    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=4, batch_size=8, val_every=2, device="cpu",
                      progress=False)
    meta = nets.describe(net, features="test4", provenance={"data": "random"})
    trainer = Trainer(net, policy_loss, data, data, config=cfg, extra_meta=meta)
    trainer.fit()

    loaded = nets.load(tmp_path / "run" / "last.pt", kind="policy")
    assert loaded.meta == meta
    with torch.no_grad():
        assert torch.equal(loaded(x), trainer.model.eval()(x))
    assert nets.load(tmp_path / "run" / "best.pt").meta["features"] == "test4"

    # a trainer checkpoint of some other model is refused with a clear message
    Trainer(torch.nn.Linear(4, 1), lambda m, b: (m(b[0]).mean(), {}),
            torch.utils.data.TensorDataset(torch.zeros(4, 4)), config=cfg).fit()
    with pytest.raises(CheckpointError, match="does not describe"):
        nets.load(tmp_path / "run" / "last.pt")


def test_gogame_nets_does_not_import_training():
    code = "import sys, gogame.nets; assert not any(m.startswith('training') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_deep_stack_keeps_the_signal_of_its_input():
    # He initialisation: the last hidden layer of a 12-layer net still depends on the input.
    torch.manual_seed(0)
    net = nets.build("value", 49, 9, "medium")
    x = torch.rand(8, 49, 9, 9).round()
    hidden = net.hidden(x)
    assert hidden.std(dim=0).mean() > 0.05 * hidden.abs().mean()
    assert net(x).std() > 1e-4


def test_autocast_runs_in_bf16_exactly_where_the_device_has_it_natively():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with nets.autocast("cpu"):
        y = torch.nn.functional.conv2d(x, w)
    assert y.dtype == (torch.bfloat16 if nets.bf16_native("cpu") else torch.float32)
    assert not nets.bf16_native("meta")


def test_value_from_policy_starts_with_the_policys_trunk():
    torch.manual_seed(0)
    policy = nets.build("policy", 48, 9, "tiny")
    value = nets.value_from_policy(policy, 49)
    assert (value.layers, value.filters, value.board_size) == (policy.layers, policy.filters, 9)
    x = torch.rand(4, 49, 9, 9)
    with torch.no_grad():
        assert torch.allclose(value.hidden(x), policy.hidden(x[:, :48]), atol=1e-6)
    value.hidden[0].weight.data[:, 48] += 1  # the copy is the value net's own
    assert torch.equal(policy.hidden[0].weight[:, :48], value.hidden[0].weight[:, :48])
    with pytest.raises(ValueError, match="at least the policy's 48"):
        nets.value_from_policy(policy, 47)


def test_frozen_hidden_layers_do_not_train():
    torch.manual_seed(0)
    net = nets.build("value", 49, 9, "tiny")  # hidden: 2 convolutions
    nets.freeze_hidden_layers(net, 1)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net(torch.rand(8, 49, 9, 9)).pow(2).mean().backward()
    optimizer.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, net.parameters())]
    names = [n for n, _ in net.named_parameters()]
    assert [n for n, c in zip(names, changed) if not c] == ["hidden.0.weight", "hidden.0.bias"]
    with pytest.raises(ValueError, match="has 2 convolutions"):
        nets.freeze_hidden_layers(net, 3)


# -- the dual net --------------------------------------------------------------


DUAL_PLANES = 49


def trained_dual(size: int = 19, steps: int = 3) -> nets.DualNet:
    """A tiny dual net after a few Adam steps on random ``size`` x ``size`` data (its residual scales leave 0)."""
    torch.manual_seed(0)
    net = nets.build("dual", DUAL_PLANES, size, "b2c16")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = planes(8, size, DUAL_PLANES)
    for _ in range(steps):
        policy, value, ownership = net(x)
        loss = policy.logsumexp(1).mean() + (value - 0.5).square().mean() + ownership.sigmoid().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.mark.parametrize("preset", ["b2c16", "b4c64"])
@pytest.mark.parametrize("size", [7, 9, 13, 19])
def test_dual_output_shapes_on_every_size(preset, size):
    net = nets.build("dual", DUAL_PLANES, 19, preset)
    with torch.no_grad():
        policy, value, ownership = net(planes(3, size, DUAL_PLANES))
    assert policy.shape == (3, size * size + 1) and value.shape == (3,) and ownership.shape == (3, size * size)
    assert bool(((value > -1) & (value < 1)).all())


def test_dual_presets_are_blocks_by_channels():
    for name, (blocks, channels) in nets.DUAL_PRESETS.items():
        assert name == f"b{blocks}c{channels}"
    net = nets.build("dual", DUAL_PLANES, 19, "b6c96")
    assert (net.blocks, net.channels) == (6, 96) and len(net.trunk) == 6
    assert [i for i, block in enumerate(net.trunk) if block.to_bias is not None] == [1, 4]  # global pooling
    assert nets.build("dual", DUAL_PLANES, 9, None, blocks=3, channels=8).meta["preset"] is None
    with pytest.raises(ValueError, match="unknown dual preset"):
        nets.build("dual", DUAL_PLANES, 19, "small")
    with pytest.raises(ValueError, match="blocks and channels"):
        nets.build("dual", DUAL_PLANES, 19, None, blocks=3)
    with pytest.raises(ValueError, match="board size"):
        nets.build("dual", DUAL_PLANES, 26, "b2c16")


def test_dual_net_has_no_weight_sized_by_the_board():
    shapes = {size: {k: v.shape for k, v in nets.build("dual", DUAL_PLANES, size, "b2c16").state_dict().items()}
              for size in (7, 19)}
    assert shapes[7] == shapes[19]
    net = trained_dual(19)
    with pytest.raises(ValueError, match="expected planes"):
        net(planes(1, 9, DUAL_PLANES - 1))
    with pytest.raises(ValueError, match="board size"):
        net(planes(1, 26, DUAL_PLANES))


def test_dual_net_trained_at_19_runs_at_9_and_13(tmp_path):
    net = trained_dual(19)
    assert all(float(block.scale.detach()) != 0 for block in net.trunk)  # the residual branches are in use
    nets.save(net, tmp_path / "dual.pt", features="alphago49")
    loaded = nets.load(tmp_path / "dual.pt", kind="dual")
    assert loaded.meta["board_sizes"] == [19]
    for size in (9, 13):
        x = planes(4, size, DUAL_PLANES, seed=size)
        with torch.no_grad():
            policy, value, ownership = loaded(x)
            # one board of a batch is computed on its own: nothing mixes rows or depends on the batch
            alone = loaded(x[2:3])
        assert policy.shape == (4, size * size + 1) and ownership.shape == (4, size * size)
        assert all(bool(torch.isfinite(t).all()) for t in (policy, value, ownership))
        assert torch.allclose(alone[0][0], policy[2], atol=1e-5) and torch.allclose(alone[1][0], value[2], atol=1e-5)
        assert policy[:, :-1].std(dim=1).min() > 0  # the point logits differ across the board


def test_dual_pass_and_value_see_the_board_size():
    net = trained_dual(19)
    with torch.no_grad():
        small, large = net(torch.zeros(1, DUAL_PLANES, 9, 9)), net(torch.zeros(1, DUAL_PLANES, 19, 19))
    # all-zero planes: every pooled mean and max is the same at either size except the size-scaled mean
    pooled = [nets.global_pool(torch.ones(1, 2, n, n)) for n in (9, 19)]
    assert torch.equal(pooled[0][:, :2], pooled[1][:, :2]) and not torch.equal(pooled[0][:, 2:4], pooled[1][:, 2:4])
    assert small[0][0, -1] != large[0][0, -1] or small[1][0] != large[1][0]


def test_dual_save_load_round_trip_fp32_and_fp16(tmp_path):
    net = trained_dual(9)
    provenance = {"command": "gogame-train dual", "positions": 123}
    nets.save(net, tmp_path / "fp32.pt", features="alphago49", provenance=provenance)
    nets.save(net, tmp_path / "fp16.pt", half=True, features="alphago49", provenance=provenance)
    assert (tmp_path / "fp16.pt").stat().st_size < 0.7 * (tmp_path / "fp32.pt").stat().st_size
    x = planes(2, 13, DUAL_PLANES)
    with torch.no_grad():
        ref = net(x)
        exact = nets.load(tmp_path / "fp32.pt")
        half = nets.load(tmp_path / "fp16.pt")
        assert type(exact) is nets.DualNet and not exact.training
        assert exact.meta == {"kind": "dual", "preset": "b2c16", "blocks": 2, "channels": 16,
                              "in_planes": DUAL_PLANES, "board_sizes": [9], "features": "alphago49",
                              "provenance": provenance}
        assert all(torch.equal(a, b) for a, b in zip(exact(x), ref))
        assert all(p.dtype == torch.float32 for p in half.parameters())
        assert all(torch.allclose(a, b, atol=2e-2, rtol=2e-2) for a, b in zip(half(x), ref))
    nets.save(exact, tmp_path / "again.pt")
    assert nets.load(tmp_path / "again.pt").meta == exact.meta


def test_dual_load_refuses_foreign_and_corrupt_files(tmp_path):
    net = trained_dual(9, steps=1)
    nets.save(net, tmp_path / "dual.pt")
    with pytest.raises(CheckpointError, match="expected a policy network"):
        nets.load(tmp_path / "dual.pt", kind="policy")
    nets.save(nets.build("policy", PLANES, 9, "tiny"), tmp_path / "policy.pt")
    with pytest.raises(CheckpointError, match="expected a dual network"):
        nets.load(tmp_path / "policy.pt", kind="dual")
    meta = {k: v for k, v in nets.describe(net).items() if k != "blocks"}
    save_checkpoint(tmp_path / "bare.pt", {"kind": "dual", "meta": meta, "model": net.state_dict()})
    with pytest.raises(CheckpointError, match="does not describe"):
        nets.load(tmp_path / "bare.pt")
    save_checkpoint(tmp_path / "wrong.pt", {"kind": "dual", "meta": {**nets.describe(net), "channels": 32},
                                            "model": net.state_dict()})
    with pytest.raises(CheckpointError, match="do not fit"):
        nets.load(tmp_path / "wrong.pt")
    save_checkpoint(tmp_path / "size.pt", {"kind": "dual", "meta": {**nets.describe(net), "board_sizes": [40]},
                                           "model": net.state_dict()})
    with pytest.raises(CheckpointError, match="do not fit"):
        nets.load(tmp_path / "size.pt")
    data = (tmp_path / "dual.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        nets.load(tmp_path / "cut.pt")
