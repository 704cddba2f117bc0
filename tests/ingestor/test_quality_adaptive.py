"""Poisoning defences against an adaptive attacker, through the real store and gate: accounts
aged by backdated lines are judged by arrival time, only the attack's ratings are held, and a
person can review and release them."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.poisoning import attacks, run_attack

HONEST_NEWCOMER = 99_999_999


@functools.cache
def _run(name: str, folder: str) -> dict[str, Any]:
    attack = next(a for a in attacks(30) if a.name == name)
    extra = [  # an honest new user: rates a movie hours before the attack, then the target in it
        (4.0, f"{{time}},{HONEST_NEWCOMER},GET /data/m/{{target}}/0.mpg"),
        (4.0, f"{{time}},{HONEST_NEWCOMER},GET /rate/honest+favourite+=4"),
        (0.2, f"{{time}},{HONEST_NEWCOMER},GET /rate/{{target}}=5"),
    ]
    return run_attack(attack, users=1000, movies=150, folder=Path(folder), extra=extra)


@pytest.mark.parametrize("name", ["naive", "backdated"])
def test_naive_and_backdated_attacks_are_quarantined(name: str, tmp_path: Path) -> None:
    r = _run(name, str(tmp_path))
    assert r["gate_clock"] == "arrival"
    assert r["detected"]
    assert r["fake_ratings_quarantined"] >= 0.9
    assert r["honest_users_touched_share"] < 0.01
    assert r["target_rank_attacked"] == 1
    assert r["target_rank_defended"] != 1


def _movierec(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "movierec", *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_only_the_attack_session_is_held_and_a_person_can_release_it(tmp_path: Path) -> None:
    r = _run("backdated", str(tmp_path))
    db = r["db"]
    held = [
        json.loads(line)
        for line in _movierec("quarantine", "list", "--db", db, "--json").splitlines()
    ]
    mine = {h["movie_id"]: h for h in held if h["user_id"] == HONEST_NEWCOMER}
    # the newcomer's rating of another movie, hours before the burst, is kept
    assert "honest+favourite+" not in mine
    fake = [h for h in held if h["movie_id"] == r["target"] and h["user_id"] != HONEST_NEWCOMER]
    assert len(fake) == 30
    assert all("shilling target" in h["reason"] and "p=" in h["reason"] for h in fake)
    # review: the newcomer's target rating (if held) and one fake account's are released
    user = fake[0]["user_id"]
    out = _movierec("quarantine", "release", "--db", db, "--user", str(user), "--note", "audit")
    assert json.loads(out)["released"] >= 1
    assert all(
        h["user_id"] != user
        for h in map(json.loads, _movierec("quarantine", "list", "--db", db, "--json").splitlines())
    )
    # the gate does not quarantine a released pair again
    _movierec("quality", "--db", db, "--window-hours", "6", "--force")
    again = _movierec("quarantine", "list", "--db", db, "--json").splitlines()
    assert all(json.loads(h)["user_id"] != user for h in again)
