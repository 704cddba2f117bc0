"""Per-arm online metrics on hand-built exposures and outcomes, and their /metrics export."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from movierec_recommender.online.arms import (
    ArmSettings,
    evaluate_arms,
    exposures_frame,
    group_ratios,
)
from movierec_recommender.online.exporter import SnapshotCollector
from prometheus_client import CollectorRegistry, generate_latest

T0 = datetime(2026, 1, 1, 12, 0, 0)


def _exposures() -> pd.DataFrame:
    rows = [
        # time, user, track, name, version, items, status, latency
        (T0, 1, "stable", "movies", "6", ["m1", "m2"], 200, 100.0),
        (T0, 2, "stable", "movies", "6", ["m3", "m4"], 200, 900.0),  # 200 but too slow
        (T0, 3, "canary", "movies", "7", ["m1", "m5"], 200, 50.0),
        (T0, 4, "canary", "movies", "7", [], 503, 5.0),
        (T0 - timedelta(minutes=30), 5, "canary", "movies", "5", ["m1"], 200, 10.0),
        (T0 - timedelta(minutes=60), 5, "canary", "movies", "4", ["m1"], 200, 10.0),
    ]
    cols = ["time", "user_id", "track", "model_name", "model_version", "items", "status"]
    return exposures_frame(pd.DataFrame(rows, columns=[*cols, "latency_ms"]))


def _outcomes() -> dict[str, pd.DataFrame]:
    watches = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 3],
            "movie_id": ["m2", "m2", "m2", "m5"],
            "time": pd.to_datetime(
                [
                    T0 + timedelta(minutes=5),
                    T0 + timedelta(minutes=6),
                    T0 + timedelta(minutes=7),
                    T0 + timedelta(minutes=200),  # outside the 2 h window
                ]
            ),
            "minute": [0, 1, 2, 0],
        }
    )
    ratings = pd.DataFrame(
        {
            "user_id": [1, 3],
            "movie_id": ["m2", "m1"],
            "time": pd.to_datetime([T0 + timedelta(minutes=30), T0 + timedelta(minutes=40)]),
            "rating": [4, 2],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [1, 2, 3, 4, 5],
            "age": [20, 40, 30, 50, 30],
            "gender": ["f", "M", "F", "M", "x"],
        }
    )
    movies = pd.DataFrame({"movie_id": ["m2"], "runtime": [10], "popularity": [1.0]})
    return {"watches": watches, "ratings": ratings, "users": users, "movies": movies}


def _predictor_for(name: str, version: str):
    if version != "6":
        return None
    return lambda users, movies: np.full(len(users), 3.0)


SETTINGS = ArmSettings(
    window=timedelta(hours=2),
    min_group_size=1,
    popular_items=frozenset({"m1"}),
    catalogue_size=10,
    max_versions_per_track=2,
)


def test_metrics_per_arm() -> None:
    snap = evaluate_arms(_exposures(), _outcomes(), _predictor_for, SETTINGS)
    arms = {(a.track, a.model_version): a for a in snap.arms}
    # canary served 7, 5 and 4: only the two most recent versions get labels
    assert sorted(arms) == [("canary", "5"), ("canary", "7"), ("stable", "6")]
    assert snap.dropped_exposures == 1 and snap.exposures == 6
    stable, canary = arms[("stable", "6")], arms[("canary", "7")]
    assert stable.success_rate == 0.5  # the 900 ms answer misses the 800 ms budget
    assert canary.success_rate == 0.5  # the 503
    assert stable.engagement_rate == pytest.approx(0.25)  # user 1 watched 1 of 2, user 2 none
    assert canary.engagement_rate == 0.0  # the watch came after the window
    assert stable.completion == pytest.approx(0.3)  # 3 of 10 minutes
    assert stable.online_rmse == pytest.approx(1.0) and stable.rmse_samples == 1
    assert np.isnan(canary.online_rmse)  # no predictor for version 7
    assert stable.engagement_by_group == {
        "age_group:18-24": 0.5,
        "age_group:35-44": 0.0,
        "gender:F": 0.5,
        "gender:M": 0.0,
    }
    assert stable.disparity == {"age_group": 0.0, "gender": 0.0}
    # canary 7 answered one woman of 25-34 who did not watch in time; stable has no 25-34 group
    assert canary.group_ratio == {"gender": 0.0}
    assert stable.group_ratio == {}  # the baseline is not compared with itself
    assert canary.popular_share == 0.5 and canary.coverage == 0.2
    assert stable.latency_seconds["0.5"] == pytest.approx(0.5)
    assert stable.self_confirmation == 1.0 and stable.self_confirmation_samples == 1
    assert [ab.experiment for ab in snap.ab] == ["stable_vs_canary"]
    assert snap.ab[0].arm_b == ("canary", "7")


def test_export_has_contract_names_and_no_nan() -> None:
    snap = evaluate_arms(_exposures(), _outcomes(), _predictor_for, SETTINGS)
    registry = CollectorRegistry()
    collector = SnapshotCollector()
    registry.register(collector)
    collector.update(snap, finished_at=1.0e9, duration=0.5)
    text = generate_latest(registry).decode()
    for line in (
        'movierec_online_rmse{model_version="6",track="stable"} 1.0',
        'movierec_engagement_rate{group="all",model_version="6",track="stable"} 0.25',
        'movierec_fairness_disparity_ratio{attribute="gender",model_version="6",track="stable"} 0.0',
        'movierec_online_success_rate{model_version="7",track="canary"} 0.5',
        'movierec_fairness_group_ratio{attribute="gender",model_version="7",track="canary"} 0.0',
        'movierec_ab_verdict{experiment="stable_vs_canary",verdict="inconclusive"} 1.0',
        'movierec_online_evaluations_total{result="success"} 1.0',
        "movierec_online_last_success_timestamp_seconds 1e+09",
    ):
        assert line in text, line
    assert "NaN" not in text
    assert 'model_version="4"' not in text  # beyond the label bound


def test_engagement_waits_for_the_window() -> None:
    """Answers younger than the window are left out of engagement (not counted as unwatched)."""
    young = evaluate_arms(
        _exposures(), _outcomes(), _predictor_for, SETTINGS, as_of=T0 + timedelta(minutes=30)
    )
    arms = {(a.track, a.model_version): a for a in young.arms}
    assert np.isnan(arms[("stable", "6")].engagement_rate)
    assert arms[("stable", "6")].engagement_samples == 0
    assert arms[("stable", "6")].requests == 2  # success and latency count every answer
    assert arms[("canary", "5")].engagement_samples == 0  # 30 + 30 minutes < 2 hours
    old = evaluate_arms(
        _exposures(), _outcomes(), _predictor_for, SETTINGS, as_of=T0 + timedelta(hours=2)
    )
    stable = {(a.track, a.model_version): a for a in old.arms}[("stable", "6")]
    assert stable.engagement_rate == pytest.approx(0.25) and stable.engagement_samples == 2


@pytest.mark.parametrize(
    ("arm", "baseline", "expected"),
    [
        # a group that watches less anyway is not unfairness: each group against itself
        ({"gender:F": 0.2, "gender:M": 0.4}, {"gender:F": 0.2, "gender:M": 0.4}, {"gender": 1.0}),
        # the new model halves one group's engagement
        ({"gender:F": 0.1, "gender:M": 0.4}, {"gender:F": 0.2, "gender:M": 0.4}, {"gender": 0.5}),
        # per attribute, the worst-off group
        (
            {"gender:F": 0.3, "age_group:18-24": 0.1, "age_group:25-34": 0.3},
            {"gender:F": 0.3, "age_group:18-24": 0.4, "age_group:25-34": 0.3},
            {"gender": 1.0, "age_group": 0.25},
        ),
        # groups only one arm has, and a baseline rate of zero, give no ratio
        ({"gender:F": 0.3, "gender:X": 0.1}, {"gender:F": 0.0, "gender:M": 0.2}, {}),
        ({"gender:F": float("nan")}, {"gender:F": 0.2}, {}),
    ],
)
def test_group_ratios(
    arm: dict[str, float], baseline: dict[str, float], expected: dict[str, float]
) -> None:
    assert group_ratios(arm, baseline) == pytest.approx(expected)
