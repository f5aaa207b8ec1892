"""``gogame-train match``: statistics pinned to known values, the GTP controller's failure modes against scripted
fake engines, and real matches (GNU Go against itself on 7x7, our engine against GNU Go on a capped 9x9 game)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gogame import sgf
from gogame.coords import from_gtp
from gtp.engine import GtpError
from training.eval import match, tally

GNUGO = shutil.which("gnugo") or "/usr/games/gnugo"
GNUGO_CMD = f"{GNUGO} --mode gtp --level 0 --chinese-rules --capture-all-dead"
needs_gnugo = pytest.mark.skipif(not shutil.which(GNUGO), reason="GNU Go is not installed")

# A scripted GTP engine: MODE is ok (answers '=' to everything, genmove A1 always: illegal on its 2nd move),
# garbage (not GTP after 'name'), exit (exits after 'name'), silent (never answers after 'name'), refuse ('?'),
# warm (as ok, but it knows gogame-wait_ready, and it logs each command to stderr).
FAKE = textwrap.dedent("""
    import sys, time
    mode = sys.argv[1]
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "name":
            print("= fake\\n", flush=True)
            continue
        if cmd[0] == "quit":
            print("=\\n", flush=True)
            break
        if mode == "warm":  # knows gogame-wait_ready and logs every command it gets
            print(line.strip(), file=sys.stderr, flush=True)
            if cmd[0] == "known_command":
                print("= " + str(cmd[1:] == ["gogame-wait_ready"]).lower() + "\\n", flush=True)
                continue
        if mode == "garbage":
            print("hello there\\n", flush=True)
        elif mode == "exit":
            sys.exit(1)
        elif mode == "silent":
            time.sleep(60)
        elif mode == "refuse":
            print("? no way\\n", flush=True)
        elif cmd[0] == "genmove":
            print("= A1\\n", flush=True)
        elif cmd[0] == "final_score":
            print("= 0\\n", flush=True)
        else:
            print("=\\n", flush=True)
""")


@pytest.fixture
def fake(tmp_path: Path):
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE)
    return lambda mode: f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {mode}"


def run_match(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    match.add_arguments(parser)
    return match.run(parser.parse_args(argv))


# -- the tally -----------------------------------------------------------------------------------------------


def test_tally_summary_counts_colours_draws_and_unbounded_elo():
    tally = match.Tally()
    tally.add("B+3", a_is_black=True)       # A wins as black
    tally.add("B+R", a_is_black=False)      # B wins as black
    tally.add("W+F", a_is_black=False)      # A wins as white
    tally.add("0", a_is_black=True, disagreement=True)
    s = tally.summary()
    assert (s["games"], s["wins_a"], s["wins_b"], s["draws"], s["disagreements"]) == (4, 2, 1, 1, 1)
    assert s["winrate_a"] == 0.625
    assert s["ci95"] == pytest.approx([0.219427, 0.908101], abs=1e-6)  # Wilson for 2.5 of 4 (tests/test_stats.py)
    shutout = match.Tally()
    shutout.add("B+1", a_is_black=True)
    summary = shutout.summary()
    assert summary["elo"] is None and summary["elo_ci95"][1] is None  # +inf is null in JSON
    json.dumps(summary, allow_nan=False)


def test_tally_puts_thinking_time_on_the_engine_that_thought():
    tally = match.Tally()
    tally.add("B+3", a_is_black=True, thinking={"B": (10, 5.0), "W": (9, 0.9)})
    tally.add("W+1", a_is_black=False, thinking={"B": (8, 0.8), "W": (8, 4.0)})
    tally.add("B+R", a_is_black=True)  # a record from before timing: counts for the result only
    assert tally.summary()["seconds_per_move"] == [pytest.approx(9.0 / 18), pytest.approx(1.7 / 17)]
    assert match.Tally().summary()["seconds_per_move"] == [None, None]


def test_parse_score():
    assert match.parse_score("B+3.5") == 3.5
    assert match.parse_score("W+2.0") == -2.0
    assert match.parse_score("0") == 0.0
    assert match.parse_score("? cannot score") is None


# -- the controller ---------------------------------------------------------------------------------------------


def test_controller_distinguishes_failures(fake):
    with match.GtpController(shlex.split(fake("refuse")), timeout=10) as engine:
        assert engine.send("name") == "fake"
        with pytest.raises(GtpError, match="'boardsize 9' failed: no way") as refused:
            engine.send("boardsize 9")
        assert (refused.value.message, refused.value.command) == ("no way", "boardsize 9")
    with match.GtpController(shlex.split(fake("garbage")), timeout=10) as engine:
        with pytest.raises(match.GtpProtocolError, match="hello there"):
            engine.send("boardsize 9")
    with match.GtpController(shlex.split(fake("exit")), timeout=10) as engine:
        with pytest.raises(match.GtpChannelClosed):
            engine.send("boardsize 9")
        with pytest.raises(match.GtpChannelClosed):
            engine.send("clear_board")
    with match.GtpController(shlex.split(fake("silent")), timeout=0.5) as engine:
        with pytest.raises(match.GtpTimeout):
            engine.send("boardsize 9")
        assert engine.closed  # out of step with the engine: no 'quit' to wait on, it is killed at once
    assert engine.process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("mode, error", [("garbage", "not a GTP response"), ("exit", "closed its pipe"),
                                         ("silent", "did not answer")])
def test_broken_engine_stops_the_match_with_a_clear_error(tmp_path, fake, capsys, mode, error):
    code = run_match([fake("ok"), fake(mode), "--games", "2", "--size", "5", "--komi", "0",
                      "--out", str(tmp_path / "out"), "--move-timeout", "1", "--no-logs"])
    assert code == 3
    err = capsys.readouterr().err
    assert error in err and "engine B" in err and "rerun to resume" in err
    assert not list((tmp_path / "out").glob("*.sgf"))


def test_each_game_waits_for_an_engine_that_compiles_its_search(tmp_path, fake):
    out = tmp_path / "out"
    assert run_match([fake("warm"), fake("ok"), "--games", "2", "--size", "5", "--komi", "0", "--out", str(out)]) == 0
    commands = (out / "engine-a.log").read_text().splitlines()
    asked = [i for i, c in enumerate(commands) if c == "gogame-wait_ready"]
    genmoves = [i for i, c in enumerate(commands) if c.startswith("genmove")]
    assert len(asked) == 2 and asked[0] < genmoves[0] and genmoves[0] < asked[1]  # before each game's first move


@needs_gnugo
def test_illegal_move_forfeits_the_game(tmp_path, fake, capsys):
    out = tmp_path / "out"
    assert run_match([fake("ok"), GNUGO_CMD, "--games", "1", "--size", "5", "--komi", "0", "--out", str(out),
                      "--json"]) == 0
    game = sgf.load(out / "game-0001.sgf")[0]
    assert game.result == "W+F" and game.get("PB") == "fake" and game.get("PW") == "GNU Go"
    assert "forfeits" in game.get("C") and "A1" in game.get("C")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["wins_a"], summary["wins_b"]) == (0, 1)


# -- real matches -----------------------------------------------------------------------------------------------


@needs_gnugo
def test_gnugo_match_writes_sgf_reports_json_and_resumes(tmp_path, capsys):
    out = tmp_path / "out"
    args = [GNUGO_CMD, GNUGO_CMD, "--games", "2", "--size", "7", "--komi", "7.5", "--out", str(out), "--json"]
    assert run_match(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["games"] == 2 and summary["wins_a"] + summary["wins_b"] + summary["draws"] == 2
    lo, hi = summary["ci95"]
    assert 0 <= lo <= summary["winrate_a"] <= hi <= 1
    assert set(summary) == {"games", "wins_a", "wins_b", "draws", "winrate_a", "ci95", "elo", "elo_ci95",
                            "disagreements", "seconds_per_move"}
    assert len(summary["seconds_per_move"]) == 2  # one figure per engine
    games = [sgf.load(out / f"game-000{i}.sgf")[0] for i in (1, 2)]
    assert [g.get("PB") for g in games] == ["GNU Go (A)", "GNU Go (B)"]  # colours alternate
    for game in games:
        assert game.size == 7 and game.komi == 7.5 and game.result and game.moves
        assert game.winner in ("B", "W")
        board = game.board_at()  # the record replays on our board
        assert board.move_number == len(game.moves)
        timed = re.search(r"Thinking: black (\d+) genmoves [\d.]+ s, white (\d+) genmoves", game.get("C"))
        assert int(timed[1]) + int(timed[2]) >= sum(1 for colour, _ in game.moves)  # every genmove timed
    before = {p.name: p.read_bytes() for p in out.glob("*.sgf")}

    # Resume: the finished games are read back, not replayed; the engines are not even started.
    missing = str(tmp_path / "no-such-engine")
    assert run_match([missing, missing, *args[2:]]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1]) == summary
    assert "resuming: 2 game(s)" in captured.err
    assert {p.name: p.read_bytes() for p in out.glob("*.sgf")} == before
    whole, _, _ = tally.tally([tally.read_stream(out)])  # the tally reads a folder back as the runner does
    assert json.loads(json.dumps(whole.summary())) == summary

    # Asking for more games plays only the new one.
    args[args.index("--games") + 1] = "3"
    assert run_match(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["games"] == 3
    assert {p.name: p.read_bytes() for p in out.glob("game-000[12].sgf")} == before
    assert sgf.load(out / "game-0003.sgf")[0].get("PB") == "GNU Go (A)"

    # A folder from another match is refused, not mixed in.
    assert run_match([missing, missing, "--games", "2", "--size", "9", "--komi", "7.5", "--out", str(out)]) == 3
    assert "not 9x9" in capsys.readouterr().err


@needs_gnugo
def test_our_engine_against_gnugo_capped_game(tmp_path, capsys):
    ours = f"{shlex.quote(sys.executable)} -m gtp --size 9 --visits 4 --resign-threshold 0 --seed 1"
    out = tmp_path / "out"
    assert run_match([ours, GNUGO_CMD, "--games", "1", "--size", "9", "--komi", "7", "--out", str(out),
                      "--max-moves", "12", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["games"] == 1
    game = sgf.load(out / "game-0001.sgf")[0]
    assert game.get("PB") == "gogame" and game.get("PW") == "GNU Go"
    comment = game.get("C")
    assert "Ours (area, all stones alive)" in comment and "final_score" in comment
    # Capped at 12 moves unless someone passed twice or resigned first.
    assert len(game.moves) <= 12
    assert (out / "engine-a.log").exists()


@needs_gnugo
def test_resignations_are_played_out_by_the_judge(tmp_path, capsys):
    """With komi -40.5 black wins any 7x7 game: black's resignation was premature, white's stands."""
    from training import cli

    opening = [("B", "D4"), ("W", "C3"), ("B", "E3")]
    for name, result in (("black-resigned", "W+R"), ("white-resigned", "B+R"), ("scored", "B+40.5")):
        game = sgf.Game.from_moves([(c, from_gtp(v, 7)) for c, v in opening], size=7, komi=-40.5,
                                   result=result)
        (tmp_path / f"{name}.sgf").write_text(sgf.dumps(game))
    judge = f"{GNUGO_CMD} --seed {{seed}}"
    assert cli.main(["resignations", str(tmp_path), "--judge", judge, "--seeds", "0", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert (report["resignations"], report["stands"], report["premature"], report["split"]) == (2, 1, 1, 0)
    verdicts = {Path(g["record"]).stem: (g["verdict"], g["play_outs"][0][0]) for g in report["games"]}
    assert verdicts == {"black-resigned": ("premature", "B"), "white-resigned": ("stands", "B")}
    assert "black resigned at move 3" in lines[0]


@needs_gnugo
def test_play_game_goes_on_from_an_opening():
    opening = [("B", from_gtp("D4", 7)), ("W", from_gtp("C3", 7)), ("B", from_gtp("E3", 7))]
    controllers = [match.GtpController(shlex.split(GNUGO_CMD)) for _ in range(2)]
    try:
        black, white = (match.Player(c, "GNU Go") for c in controllers)
        record = match.play_game(black, white, size=7, komi=7.5, max_moves=4, opening=opening)
        assert record.moves[:3] == opening and len(record.moves) == 4 and record.moves[3][0] == "W"
        for c in controllers:  # both engines hold the opening
            assert [c.send(f"color {v}") for v in ("D4", "C3", "E3")] == ["black", "white", "black"]
    finally:
        for c in controllers:
            c.close()


def test_resignations_report_a_broken_judge(tmp_path, fake, capsys):
    from training import cli

    game = sgf.Game.from_moves([("B", from_gtp("D4", 7))], size=7, komi=7.5, result="B+R")
    (tmp_path / "resigned.sgf").write_text(sgf.dumps(game))
    assert cli.main(["resignations", str(tmp_path / "resigned.sgf"), "--judge", fake("garbage")]) == 3
    assert "not a GTP response" in capsys.readouterr().err
    assert cli.main(["resignations", str(tmp_path / "missing.sgf")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
