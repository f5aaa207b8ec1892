"""``gogame-train tally``: streams of a match read back as one, colours by game number, A's losses listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import cli
from training.eval import match, tally


def write_stream(folder: Path, results: list[str], *, size: int = 9, komi: float = 7.5) -> None:
    """A stream as the runner writes it: engine A black in games 1, 3, ..., each with 10 genmoves a side taking
    A 1 s and B 2 s a move."""
    folder.mkdir(parents=True)
    a, b = match.Player(None, "engine A"), match.Player(None, "engine B")
    for i, result in enumerate(results):
        a_black = i % 2 == 0
        a_time, b_time = (10, 10.0), (10, 20.0)
        record = match.GameRecord(moves=[("B", (2, 2)), ("W", (6, 6))], result=result, reason="a test ending",
                                  thinking={"B": a_time, "W": b_time} if a_black else {"B": b_time, "W": a_time})
        match._write_game(match.game_path(folder, i), record, size=size, komi=komi,
                          black=a if a_black else b, white=b if a_black else a, commands={"B": "b", "W": "w"})


def test_streams_tally_as_one_match_and_list_a_s_losses(tmp_path):
    write_stream(tmp_path / "s1", ["B+R", "W+R", "W+3.5"])  # A wins as black, as white, loses as black
    write_stream(tmp_path / "s2", ["B+R", "B+R"])  # A wins as black, loses as white
    whole, per_stream, losses = tally.tally([tally.read_stream(tmp_path / s) for s in ("s1", "s2")])
    assert (whole.games, whole.wins_a, whole.wins_b) == (5, 3, 2)
    assert [(t.games, t.wins_a) for t in per_stream] == [(3, 2), (2, 1)]
    assert [(Path(l["stream"]).name, l["game"], l["a_colour"], l["result"]) for l in losses] == [
        ("s1", 3, "B", "W+3.5"), ("s2", 2, "W", "B+R")]
    assert losses[0]["moves"] == 2 and losses[0]["ending"] == "a test ending"
    assert whole.summary()["seconds_per_move"] == [1.0, 2.0]


def test_the_command_reports_the_match_and_refuses_what_is_not_one(tmp_path, capsys):
    write_stream(tmp_path / "s1", ["B+R", "B+R"])
    write_stream(tmp_path / "s2", ["W+R"])
    assert cli.main(["tally", str(tmp_path / "s1"), str(tmp_path / "s2"), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert (summary["games"], summary["wins_a"]) == (3, 1)
    assert [s["games"] for s in summary["streams"]] == [2, 1] and len(summary["losses"]) == 2
    assert "win rate of A: 0.333" in "\n".join(out)

    (tmp_path / "empty").mkdir()
    write_stream(tmp_path / "s19", ["B+R"], size=19)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "game-0001.sgf").write_text("(;GM[1]SZ[9];B[")
    for folder, message in (("empty", "holds no match games"), ("s19", "not one match"),
                            ("broken", "cannot read the match game")):
        assert cli.main(["tally", str(tmp_path / "s1"), str(tmp_path / folder)]) == 2
        assert message in capsys.readouterr().err


def test_a_game_without_a_winner_counts_half_and_is_no_loss(tmp_path):
    write_stream(tmp_path / "s", ["Void", "0", "W+R"])  # no winner, a jigo, then A loses as black
    whole, _, losses = tally.tally([tally.read_stream(tmp_path / "s")])
    assert (whole.draws, whole.wins_a, whole.wins_b) == (2, 0, 1)
    assert whole.summary()["winrate_a"] == pytest.approx(1 / 3)
    assert [l["game"] for l in losses] == [3]
