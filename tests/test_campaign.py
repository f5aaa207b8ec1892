"""Campaigns: a run over several machines' turns, continued from its committed state in a fresh folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gogame.checkpoint import load_checkpoint
from tests.test_trainer import assert_same_weights
from training.cli import main as train_main
from training.metrics import read_metrics
from training.stages.campaign import Campaign, CampaignError, compact, expand

CONFIG = """name = "regression"
stage = "tests.campaign_stage:Config"
description = "the tests' tiny regression run"
[config]
samples = 200
steps = 60
seed = 1
"""


def write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "regression.toml"
    path.write_text(text)
    return path


def campaign_args(action: str, target: Path, tmp_path: Path, *extra: str, workdir: str = "live") -> list[str]:
    return ["campaign", action, str(target), "--workdir", str(tmp_path / workdir), "--no-progress", *extra]


def test_three_segments_in_fresh_folders_make_one_run(tmp_path, capsys):
    config = write_config(tmp_path)
    folder = tmp_path / "repo1" / "campaigns" / "regression"
    # the same run in one go, for comparison
    whole = tmp_path / "whole"
    assert train_main(["campaign", "start", str(config), "--folder", str(whole), "--workdir",
                       str(tmp_path / "whole-live"), "--no-progress"]) == 0
    # segment 1 on "machine 1"; then the folder is copied as a clone would have it, without the live run folder
    assert train_main(["campaign", "start", str(config), "--folder", str(folder), "--workdir", str(tmp_path / "m1"),
                       "--no-progress", "--steps", "20"]) == 0
    for machine in ("m2", "m3"):
        clone = tmp_path / f"repo-{machine}" / "campaigns" / "regression"
        shutil.copytree(folder, clone)
        folder = clone
        steps = ["--steps", "20"] if machine == "m2" else []
        assert train_main(campaign_args("continue", folder, tmp_path, *steps, workdir=machine)) == 0
        assert "restoring step" in capsys.readouterr().err
    segments = json.loads((folder / "segments.json").read_text())
    assert [(s["start_step"], s["end_step"]) for s in segments] == [(0, 20), (20, 40), (40, 60)]
    assert [s["how"] for s in segments] == ["20 steps", "20 steps", "finished"]
    assert all(s["positions"] == 20 * 16 and s["machine"]["cores"] for s in segments)
    # one continuous curve: every train row of the uninterrupted run, once
    assert [(r["step"], r["split"]) for r in read_metrics(folder)] == \
        [(r["step"], r["split"]) for r in read_metrics(whole)]
    assert (folder / "progress.png").stat().st_size > 0
    assert train_main(["plot", str(folder), "--out", str(tmp_path / "curve.png")]) == 0  # the campaign's plot
    assert (tmp_path / "curve.png").stat().st_size > 0
    # fp16 weights at each handover: close to the uninterrupted run, not bitwise
    a = load_checkpoint(whole / "state.pt", expect_kind="campaign-state")["model"]
    b = load_checkpoint(folder / "state.pt", expect_kind="campaign-state")["model"]
    assert all(v.dtype == torch.float16 for v in b.values())
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-2
    status = json.loads(_status(folder, tmp_path, capsys))
    assert status["step"] == 60 and status["segments"] == 3 and status["positions_seen"] == 60 * 16


def _status(folder: Path, tmp_path: Path, capsys) -> str:
    capsys.readouterr()
    assert train_main(campaign_args("status", folder, tmp_path, "--json")) == 0
    return capsys.readouterr().out


def test_the_same_machine_continues_exactly_from_its_full_checkpoint(tmp_path):
    config = write_config(tmp_path)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train_main(["campaign", "start", str(config), "--folder", str(whole), "--workdir",
                       str(tmp_path / "w"), "--no-progress"]) == 0
    assert train_main(["campaign", "start", str(config), "--folder", str(parts), "--workdir", str(tmp_path / "p"),
                       "--no-progress", "--steps", "30"]) == 0
    assert train_main(campaign_args("continue", parts, tmp_path, workdir="p")) == 0
    assert_same_weights(load_checkpoint(tmp_path / "w" / "last.pt")["model"],
                        load_checkpoint(tmp_path / "p" / "last.pt")["model"])


def test_compact_state_rounds_weights_to_fp16_and_moments_to_bf16():
    checkpoint = {"kind": "trainer", "step": 3, "model": {"w": torch.randn(4, 4), "n": torch.tensor(2)},
                  "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 4),
                                              "exp_avg_sq": torch.full((4, 4), 1e-12)}}, "param_groups": []}}
    small = compact(checkpoint, "reduced")
    assert small["model"]["w"].dtype == torch.float16 and small["model"]["n"].dtype == torch.int64
    assert small["optimizer"]["state"][0]["exp_avg_sq"].dtype == torch.bfloat16
    assert small["optimizer"]["state"][0]["step"].dtype == torch.float32  # a count, kept as it is
    back = expand(small)
    assert back["model"]["w"].dtype == torch.float32
    assert torch.allclose(back["model"]["w"], checkpoint["model"]["w"], rtol=1e-3, atol=1e-3)
    assert float(back["optimizer"]["state"][0]["exp_avg_sq"].min()) > 0  # fp16 would flush 1e-12 to zero
    assert compact(checkpoint, "fp32")["model"]["w"] is checkpoint["model"]["w"]


def test_bad_folders_are_named_and_nothing_is_overwritten(tmp_path, capsys):
    config = write_config(tmp_path)
    folder = tmp_path / "c"
    assert train_main(["campaign", "start", str(config), "--folder", str(folder), "--workdir", str(tmp_path / "w"),
                       "--no-progress", "--steps", "10"]) == 0
    capsys.readouterr()
    # starting it again
    assert train_main(["campaign", "start", str(config), "--folder", str(folder), "--no-progress"]) == 2
    assert "already holds a campaign" in capsys.readouterr().err
    # a config edited after the start
    original = (folder / "campaign.toml").read_text()
    (folder / "campaign.toml").write_text(original.replace("samples = 200", "samples = 300"))
    state_before = (folder / "state.pt").read_bytes()
    assert train_main(campaign_args("continue", folder, tmp_path, workdir="fresh")) == 2
    assert "[config] samples was 200, is 300" in capsys.readouterr().err
    assert (folder / "state.pt").read_bytes() == state_before and not (tmp_path / "fresh").exists()
    (folder / "campaign.toml").write_text(original)
    # a truncated state file
    (folder / "state.pt").write_bytes(state_before[: len(state_before) // 2])
    assert train_main(campaign_args("continue", folder, tmp_path, workdir="fresh")) == 2
    assert "state.pt" in capsys.readouterr().err and not (tmp_path / "fresh").exists()
    (folder / "state.pt").write_bytes(state_before)
    # a live folder of another campaign
    other = tmp_path / "other.toml"
    other.write_text(CONFIG.replace('"regression"', '"other"'))
    assert train_main(["campaign", "start", str(other), "--folder", str(tmp_path / "o"), "--workdir",
                       str(tmp_path / "ow"), "--no-progress", "--steps", "10"]) == 0
    capsys.readouterr()
    assert train_main(campaign_args("continue", folder, tmp_path, workdir="ow")) == 2
    assert "another config" in capsys.readouterr().err
    # unknown settings, a folder that is not a campaign
    bad = write_config(tmp_path, CONFIG.replace("samples = 200", "sample = 200"))
    assert train_main(["campaign", "start", str(bad), "--folder", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "no setting sample" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert train_main(campaign_args("continue", tmp_path, tmp_path)) == 2
    assert "not a campaign folder" in capsys.readouterr().err


def test_a_stopped_segment_is_logged_and_the_next_goes_on(tmp_path, capsys):
    config = write_config(tmp_path)
    folder = tmp_path / "c"
    assert train_main(["campaign", "start", str(config), "--folder", str(folder), "--workdir", str(tmp_path / "w"),
                       "--no-progress", "--stop-after", "1e-9"]) == 75
    assert f"to continue: gogame-train campaign continue {folder} --workdir {tmp_path / 'w'}" in \
        capsys.readouterr().err
    segments = Campaign(folder, tmp_path / "w").segments()
    assert segments[0]["how"] == "time limit" and segments[0]["end_step"] >= 1
    assert train_main(campaign_args("continue", folder, tmp_path, workdir="w")) == 0
    assert Campaign(folder).status()["step"] == 60


def test_read_config_names_what_is_wrong(tmp_path):
    with pytest.raises(CampaignError, match="needs 'stage'"):
        Campaign.create(write_config(tmp_path, 'name = "x"\n[config]\n'), tmp_path / "x")
    with pytest.raises(CampaignError, match="unknown keys train"):
        Campaign.create(write_config(tmp_path, CONFIG + '[train]\nsteps = 3\n'), tmp_path / "y")
    with pytest.raises(CampaignError, match="unknown stage 'nope'"):
        Campaign.create(write_config(tmp_path, CONFIG.replace("tests.campaign_stage:Config", "nope")), tmp_path / "z")


def test_export_writes_the_states_net_with_the_campaigns_provenance(tmp_path, capsys):
    from gogame import nets
    from gogame.checkpoint import save_checkpoint
    from training.stages.campaign import STATE_FILE, STATE_KIND

    campaign = Campaign.create(write_config(tmp_path), tmp_path / "campaigns" / "regression", tmp_path / "live")
    with pytest.raises(CampaignError, match="no state yet"):
        campaign.export(tmp_path / "net.pt")
    net = nets.build("dual", 49, 9, "b2c16")
    save_checkpoint(campaign.folder / STATE_FILE, {
        "kind": STATE_KIND, "campaign": {"digest": campaign.digest}, "step": 40, "total_steps": 60,
        "config": {"batch_size": 16}, "meta": nets.describe(net, features="alphago49", provenance={"data": "x"}),
        "model": {k: v.half() for k, v in net.state_dict().items()}})
    segment = {"index": 1, "start": "2026-12-02T00:00:00+0000", "stop": "2026-12-02T01:30:00+0000",
               "start_step": 0, "end_step": 40, "positions": 640, "positions_per_s": 0.12,
               "machine": {"cpu": "AMD EPYC", "torch_threads": 1}}
    (campaign.folder / "segments.json").write_text(json.dumps([segment]))
    assert train_main(["campaign", "export", str(campaign.folder), "--out", str(tmp_path / "net.pt"),
                       "--lambda", "1", "--c-puct", "1.5"]) == 0
    exported = nets.load(tmp_path / "net.pt", kind="dual")
    assert all(torch.equal(v, net.state_dict()[k].half().float()) for k, v in exported.state_dict().items())
    assert exported.meta["search"] == {"lambda_": 1.0, "c_puct": 1.5} and exported.meta["provenance"]["data"] == "x"
    made = exported.meta["provenance"]["campaign"]
    assert (made["name"], made["step"], made["positions_seen"], made["machine_hours"]) == ("regression", 40, 640, 1.5)
    assert train_main(["campaign", "export", str(campaign.folder)]) == 2
    assert "export needs --out" in capsys.readouterr().err
    assert train_main(["campaign", "export", str(campaign.folder), "--out", str(tmp_path / "bad.pt"),
                       "--lambda", "2"]) == 2
    assert "lambda_ must be in [0, 1]" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()
