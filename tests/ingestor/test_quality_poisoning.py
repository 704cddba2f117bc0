"""Poisoning detection on hand-built windows: shilling bursts found, organic windows left alone."""

from __future__ import annotations

import numpy as np
import pytest
from movierec_ingestor.quality.poisoning import History, WindowRatings, detect, latest_pairs
from movierec_ingestor.quality.settings import PoisoningThresholds

TH = PoisoningThresholds()
START = 1_000_000.0  # window start, epoch seconds
DAY = 86400.0
N_MOVIES = 40
MOVIES = np.array([f"movie+{i}+2000" for i in range(N_MOVIES)])
TARGET = "movie+7+2000"
P = np.array([0.1, 0.2, 0.3, 0.25, 0.15])


def _world(
    rng: np.random.Generator, attackers: int = 0, value: int = 5, spread: bool = False
) -> tuple[WindowRatings, History, set[int]]:
    """A 6-hour window: 400 established users, 50 organic newcomers and `attackers` fresh shill
    accounts, who strike within 30 minutes (or spread over the window)."""
    users, movies, ratings = [], [], []
    for u in range(450):
        for m in rng.choice(N_MOVIES, 4, replace=False):
            users.append(u)
            movies.append(MOVIES[m])
            ratings.append(int(rng.choice(np.arange(1, 6), p=P)))
    shills = set(range(10_000, 10_000 + attackers))
    for u in sorted(shills):
        users.append(u)
        movies.append(TARGET)
        ratings.append(value)
        for m in rng.choice(np.delete(np.arange(N_MOVIES), 7), 3, replace=False):
            users.append(u)
            movies.append(MOVIES[m])
            ratings.append(int(rng.choice(np.arange(1, 6), p=P)))
    n_organic = 4 * 450
    n_attack = len(users) - n_organic
    times = np.concatenate(
        [
            rng.uniform(0, 6 * 3600, n_organic),
            rng.uniform(0, 6 * 3600, n_attack) if spread else rng.uniform(3600, 5400, n_attack),
        ]
    )
    window = WindowRatings(
        user_ids=np.array(users, dtype=np.int64),
        movie_ids=np.array(movies),
        ratings=np.array(ratings, dtype=np.int64),
        times=START + times,
    )
    known = np.arange(450)
    history = History(
        movie_ids=MOVIES,
        rating_counts=np.round(np.outer(np.full(N_MOVIES, 200), P)),
        user_ids=known,
        # users 400..449 are organic newcomers: first seen in the window, few ratings
        first_seen=np.where(known < 400, START - 60 * DAY, START + 100.0),
        total_ratings=np.where(known < 400, 80, 4),
        span_hours=200.0,  # 200 ratings per movie: one an hour
    )
    return window, history, shills


@pytest.mark.parametrize("value", [5, 1])
def test_shilling_burst_is_found_with_its_accounts(value: int) -> None:
    window, history, shills = _world(np.random.default_rng(5), attackers=25, value=value)
    result = detect(window, history, START, TH)
    assert [m["movie_id"] for m in result.movies] == [TARGET]
    evidence = result.movies[0]
    assert evidence["value"] == value
    assert "young_burst" in evidence["signal"]
    assert evidence["p_value"] < TH.alpha
    suspects = {u["user_id"] for u in result.users}
    assert shills <= suspects
    # The only possible collateral: organic newcomers who gave the target the same extreme value
    # (indistinguishable from a shill by these signals); it must stay rare.
    same = (window.movie_ids == TARGET) & (window.ratings == value)
    assert suspects - shills <= set(window.user_ids[same].tolist()) & set(range(400, 450))
    assert len(suspects - shills) <= 0.1 * len(suspects)
    assert all(u["target"] == TARGET for u in result.users)
    # every rating of every shill in the window is quarantined, the target one flagged as such
    pairs = {(u, m) for u, m, _ in result.pairs}
    assert {
        (u, m)
        for u, m in zip(window.user_ids.tolist(), window.movie_ids.tolist(), strict=True)
        if u in shills
    } <= pairs
    assert {(u, TARGET) for u in shills} <= {(u, m) for u, m, r in result.pairs if "target" in r}
    assert not result.truncated


def test_organic_window_has_no_suspects() -> None:
    for seed in range(5):
        window, history, _ = _world(np.random.default_rng(100 + seed))
        result = detect(window, history, START, TH)
        assert result.movies == [] and result.users == [] and result.pairs == []
        assert result.movies_tested >= 0.9 * N_MOVIES  # the tests had support


def test_an_attack_spread_over_the_window_is_caught_by_the_shift() -> None:
    window, history, shills = _world(np.random.default_rng(9), attackers=25, value=1, spread=True)
    result = detect(window, history, START, TH)
    assert [m["movie_id"] for m in result.movies] == [TARGET]
    evidence = result.movies[0]
    assert "shift" in evidence["signal"]
    assert evidence["value"] == 1 and evidence["mean_recent"] < evidence["mean_history"]
    assert shills <= {u["user_id"] for u in result.users}


def test_few_young_extremes_are_not_a_burst() -> None:
    window, history, _ = _world(np.random.default_rng(6), attackers=3)
    assert detect(window, history, START, TH).movies == []


def test_established_accounts_are_not_quarantined_on_a_shifted_movie() -> None:
    rng = np.random.default_rng(7)
    window, history, _ = _world(rng)
    # established users (first seen long ago, many ratings) all love the target now
    hot = window.movie_ids == TARGET
    shifted = WindowRatings(
        window.user_ids, window.movie_ids, np.where(hot, 5, window.ratings), window.times
    )
    result = detect(shifted, history, START, TH)
    assert [m["movie_id"] for m in result.movies] == [TARGET]
    assert result.movies[0]["signal"] == "shift"
    assert result.movies[0]["cramers_v"] >= TH.min_cramers_v
    suspects = {u["user_id"] for u in result.users}
    assert suspects <= set(range(400, 450))  # only young accounts can be suspects


def test_output_is_bounded() -> None:
    window, history, _ = _world(np.random.default_rng(8), attackers=40)
    result = detect(window, history, START, PoisoningThresholds(max_users=10))
    assert len(result.users) == 10
    assert result.truncated


def test_latest_pairs_keeps_the_last_rating() -> None:
    w = WindowRatings(
        np.array([1, 1, 2]),
        np.array(["a", "a", "a"]),
        np.array([1, 5, 3]),
        np.array([2.0, 1.0, 0.0]),
    )
    got = latest_pairs(w)
    assert sorted(zip(got.user_ids.tolist(), got.ratings.tolist(), strict=True)) == [(1, 1), (2, 3)]


def test_empty_window() -> None:
    empty = WindowRatings(
        np.zeros(0, np.int64), np.zeros(0, str), np.zeros(0, np.int64), np.zeros(0)
    )
    history = History(
        np.zeros(0, str),
        np.zeros((0, 5)),
        np.zeros(0, np.int64),
        np.zeros(0),
        np.zeros(0, np.int64),
    )
    result = detect(empty, history, START, TH)
    assert result.as_dict()["quarantined_pairs"] == 0
