"""policy-match: raw-policy games between two nets, the same games as the RL stage's own measure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gogame import nets
from training.cli import main as train_main
from training.eval.policy_match import parse_seeds, summarise
from training.stages.rl import WinRateGames

SIZE = 5


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(folder / f"p{seed}.pt")
        nets.save(nets.build("policy", 48, SIZE, "tiny"), paths[-1], features="alphago48")
    torch.manual_seed(2)
    paths.append(folder / "seven.pt")
    nets.save(nets.build("policy", 48, 7, "tiny"), paths[-1], features="alphago48")
    return paths


def test_seeds_parse_as_ranges_and_lists():
    assert parse_seeds("1-8") == list(range(1, 9))
    assert parse_seeds("3") == [3] and parse_seeds("1,4-5") == [1, 4, 5]
    for bad in ("", "a-b", "1-2,2", "5-4"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_summary_counts_wins_overall_and_by_colour():
    z = np.array([1, -1, 1, 1, -1, -1], np.float32)
    black = np.array([True, False, True, False, True, False])
    report = summarise(z, black)
    assert (report["games"], report["wins"]) == (6, 3) and report["elo"] == 0
    assert report["as_black"] == {"games": 3, "wins": 2, "win_rate": 2 / 3, "ci95": report["as_black"]["ci95"]}
    assert report["as_white"]["wins"] == 1 and report["ci95"][0] < 0.5 < report["ci95"][1]
    assert summarise(np.ones(4), np.array([True, False] * 2))["elo"] is None  # unbounded: no JSON infinity


def test_policy_match_plays_the_rl_stages_games_for_each_seed(policies, capsys):
    a, b, _ = policies
    assert train_main(["policy-match", str(a), str(b), "--seeds", "3-4", "--games-per-seed", "6", "--batch", "4",
                       "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    learner, reference = nets.load(a, kind="policy"), nets.load(b, kind="policy")
    with torch.no_grad():
        z = np.concatenate([x["z"].numpy() for seed in (3, 4) for x in
                            WinRateGames(learner, reference, games=6, batch=4, size=SIZE, seed=seed).batches(0)])
    assert report["games"] == 12 and report["wins"] == int((z > 0).sum()) and report["seeds"] == [3, 4]
    assert report["as_black"]["games"] == report["as_white"]["games"] == 6  # colours alternate in each batch
    assert report["as_black"]["wins"] + report["as_white"]["wins"] == report["wins"]
    assert train_main(["policy-match", str(a), str(b), "--seeds", "3-4", "--games-per-seed", "6", "--batch", "4",
                       "--workers", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report  # the same games in worker processes


def test_policy_match_refuses_bad_input(policies, tmp_path):
    a, _, seven = policies
    with pytest.raises(SystemExit, match="different board sizes"):
        train_main(["policy-match", str(a), str(seven)])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="policy-match: .*junk.pt"):
        train_main(["policy-match", str(a), str(tmp_path / "junk.pt")])
    with pytest.raises(SystemExit, match="seeds"):
        train_main(["policy-match", str(a), str(a), "--seeds", "x"])
