"""The value stage end to end, and the pipeline runner: config checks, skipping finished stages, failures."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from gogame import nets
from training.cli import main as train_main
from training.data import shards
from training.stages import pipeline, selfplay

SIZE = 5
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("nets")
    paths = folder / "sl.pt", folder / "rl.pt"
    for seed, path in enumerate(paths):
        torch.manual_seed(seed)
        nets.save(nets.build("policy", 48, SIZE, "tiny"), path, features="alphago48")
    return paths


def test_value_stage_keeps_one_position_per_game_and_reports_held_out_mse(policies, tmp_path):
    sl, rl = policies
    games, out, export = tmp_path / "games", tmp_path / "value", tmp_path / "value5.pt"
    args = ["value", str(games), "--sl", str(sl), "--rl", str(rl), "--games", "24", "--games-per-shard", "12",
            "--max-u", "6", "--val-fraction", "0.25", "--out", str(out), "--preset", "tiny", "--steps", "6",
            "--batch-size", "4", "--warmup-steps", "1", "--val-every", "3", "--no-progress", "--export", str(export)]
    assert train_main(args) == 0
    arrays = [shards.load_shard(p) for p in shards.shard_paths(games, "train") + shards.shard_paths(games, "val")]
    names = [str(n) for a in arrays for n in a["game_name"]]
    assert len(names) == len(set(names)) == 24  # every game reached move U here
    for a in arrays:
        assert a["move"].size == a["game_name"].size  # one position per game
        assert set(a["move_number"].tolist()) <= set(range(1, 7)) and set(a["outcome"].tolist()) <= {-1, 1}
    val = [r for r in csv.DictReader(open(out / "metrics.csv")) if r["split"] == "val"]
    assert val and 0 <= float(val[-1]["mse"]) <= 4
    assert nets.load(export, kind="value").meta["features"] == "alphago49"


def test_value_stage_trains_an_ownership_head_on_the_final_area(policies, tmp_path):
    sl, rl = policies
    games, out, export = tmp_path / "games", tmp_path / "value", tmp_path / "value5.pt"
    args = ["value", str(games), "--sl", str(sl), "--rl", str(rl), "--games", "16", "--games-per-shard", "8",
            "--max-u", "6", "--val-fraction", "0.25", "--out", str(out), "--preset", "tiny", "--steps", "6",
            "--batch-size", "4", "--warmup-steps", "1", "--val-every", "3", "--ownership-weight", "1.5",
            "--no-progress", "--export", str(export)]
    assert train_main(args) == 0
    assert all(shards.OWNERSHIP in shards.load_shard(p) for p in shards.shard_paths(games, "train"))
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert all(0 < float(r["ownership"]) < 2 for r in rows)  # logged beside the MSE, in train and val rows
    assert {r["split"] for r in rows} == {"train", "val"}
    net = nets.load(export, kind="value")
    assert net.meta["ownership_head"] and net(torch.zeros(2, 49, SIZE, SIZE), ownership=True)[1].shape == (2, 25)


def write_config(path: Path, root: Path, stages: str) -> Path:
    path.write_text(f'root = "{root}"\n{stages}')
    return path


def test_config_fills_in_the_root_and_rejects_nonsense(tmp_path):
    config = write_config(tmp_path / "p.toml", tmp_path / "run", """
[[stage]]
command = "selfplay"
args = ["--out", "{root}/sp", "--games", 2]
creates = "{root}/sp/summary.json"
""")
    stage, = pipeline.load_config(config)
    assert stage.name == "selfplay" and stage.args == ("--out", f"{tmp_path}/run/sp", "--games", "2")
    assert pipeline.load_config(config, root="elsewhere")[0].creates == Path("elsewhere/sp/summary.json")
    for body, message in [("", "no \\[\\[stage\\]\\]"), ('[[stage]]\ncommand = "sl"\n', "lacks creates"),
                          ('[[stage]]\ncommand = "fly"\ncreates = "x"\n', "unknown command"),
                          ("root = [", "p.toml"),
                          ('[[stage]]\ncommand = "rl"\ncreates = "x"\nprocesses = 0\n', "positive integer"),
                          ('[[stage]]\ncommand = "selfplay"\ncreates = "x"\nprocesses = 2\n', "data-parallel")]:
        with pytest.raises(ValueError, match=message):
            pipeline.load_config(write_config(tmp_path / "p.toml", tmp_path, body))


def test_pipeline_skips_stages_whose_outputs_exist_and_stops_at_a_failure(policies, tmp_path, capsys):
    root = tmp_path / "run"
    (root / "rl").mkdir(parents=True)
    (root / "rl" / "policy.pt").write_bytes(b"")  # the rl stage's output exists: never run (its args are bad)
    config = write_config(tmp_path / "p.toml", root, f"""
[[stage]]
name = "rl"
command = "rl"
args = ["--no-such-option"]
creates = "{{root}}/rl/policy.pt"

[[stage]]
name = "games"
command = "selfplay"
args = ["--size", "{SIZE}", "--weights", "{policies[0]}", "--games", "2", "--max-moves", "6", "--out",
        "{{root}}/sp", "--no-progress"]
creates = "{{root}}/sp/summary.json"

[[stage]]
name = "broken"
command = "selfplay"
args = ["--size", "{SIZE}", "--weights", "{root}/missing.pt", "--games", "1", "--out", "{{root}}/sp2"]
creates = "{{root}}/sp2/summary.json"
""")
    assert train_main(["pipeline", "--config", str(config), "--only", "rl,games"]) == 0
    assert (root / "sp" / "summary.json").exists() and not (root / "sp2").exists()
    assert "rl: skipped" in capsys.readouterr().err
    assert train_main(["pipeline", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "games: skipped" in err and "broken failed" in err
    assert train_main(["pipeline", "--config", str(config), "--only", "nope"]) == 2


def test_a_stage_runs_as_torchrun_ranks(policies, tmp_path, capsys):
    config = write_config(tmp_path / "p.toml", tmp_path / "run", f"""
[[stage]]
name = "rl"
command = "rl"
processes = 2
args = ["--size", "{SIZE}", "--weights", "{policies[0]}", "--out", "{{root}}/rl", "--iterations", "2",
        "--games", "2", "--eval-every", "2", "--eval-games", "4", "--max-moves", "12", "--no-progress",
        "--export", "{{root}}/rl.pt"]
creates = "{{root}}/rl.pt"
""")
    assert train_main(["pipeline", "--config", str(config)]) == 0
    assert "(2 torchrun ranks)" in capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / "run" / "rl" / "metrics.csv")))
    assert [int(r["step"]) for r in rows if r["split"] == "train"] == [1, 2]
    assert nets.load(tmp_path / "run" / "rl.pt", kind="policy").board_size == SIZE


def test_the_shipped_nine_by_nine_config_parses():
    stages = pipeline.load_config(REPO / "training" / "pipeline9.toml", root="R")
    assert [s.name for s in stages] == ["dataset", "sl", "rollout", "rl", "value", "evaluate"]
    assert all(str(s.creates).startswith("R/") for s in stages)
    assert [s.processes for s in stages] == [1, 1, 1, 2, 1, 1]
    engine = {s.name: s.creates for s in stages if s.creates.parent == Path("R/engine")}
    assert set(engine) == {"sl", "rollout", "value"}  # the folder gogame-gtp --weights plays


def run_gpu_value_script(data: str, out: Path) -> dict:
    script = REPO / "training" / "train_value9_gpu.sh"
    done = subprocess.run(["bash", str(script), data, str(out), "0.02", "tiny", "4"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "held-out MSE" in done.stdout and (out / "metrics.csv").exists()
    assert nets.load(out / "value9.pt", kind="value").meta["ownership_head"]
    return json.loads((out / "eval.json").read_text())


def test_the_gpu_value_script_trains_and_scores_a_net_from_packed_value_data(policies, tmp_path):
    sl, rl = policies
    spec = selfplay.GameSpec(SIZE, (str(sl), str(rl)), "value", max_u=6, val_fraction=0.25)
    selfplay.generate(tmp_path / "value-data", spec, 24, games_per_shard=12, progress=False)
    packed = tmp_path / "data.tar.xz"
    subprocess.run(["tar", "cJf", str(packed), "-C", str(tmp_path), "--exclude", "sgf", "value-data"], check=True)
    report = run_gpu_value_script(str(packed), tmp_path / "out")
    held_out = sum(shards.load_shard(p)["outcome"].size for p in shards.shard_paths(tmp_path / "value-data", "val"))
    assert 0 <= report["mse"] <= 4 and report["positions"] == held_out


def test_the_gpu_value_script_plays_its_games_with_the_shipped_policies(tmp_path):
    report = run_gpu_value_script("60", tmp_path / "out")  # about 3 of the 60 games are held out
    assert 0 <= report["mse"] <= 4 and report["positions"] >= 1


def test_a_stopped_stage_stops_the_pipeline_to_go_on_later(policies, tmp_path, capsys):
    root = tmp_path / "run"
    config = write_config(tmp_path / "p.toml", root, f"""
[[stage]]
name = "games"
command = "selfplay"
args = ["--size", "{SIZE}", "--weights", "{policies[0]}", "--games", "4", "--games-per-shard", "2",
        "--max-moves", "6", "--out", "{{root}}/sp", "--no-progress", "--stop-after", "1e-9"]
creates = "{{root}}/sp/summary.json"

[[stage]]
name = "after"
command = "selfplay"
args = ["--size", "{SIZE}", "--weights", "{policies[0]}", "--games", "1", "--out", "{{root}}/sp3"]
creates = "{{root}}/sp3/summary.json"
""")
    assert train_main(["pipeline", "--config", str(config)]) == 75
    err = capsys.readouterr().err
    assert "games stopped" in err and "run the same pipeline command to go on" in err
    assert not (root / "sp3").exists()
