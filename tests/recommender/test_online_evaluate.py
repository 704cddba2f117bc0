"""Online evaluation on hand-built exposures and outcomes: engagement, online RMSE, fairness, A/B."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from movierec_recommender.online.evaluate import evaluate_frames, exposures_frame
from movierec_recommender.online.exposures import Exposure, read_exposures, write_exposures

T0 = datetime(2026, 1, 1, 12, 0, 0)


def _exposures() -> list[Exposure]:
    return [
        Exposure(T0, 1, "a", "1", ("m1", "m2"), 200, 10.0),
        Exposure(T0, 2, "a", "1", ("m3",), 200, 20.0),
        Exposure(T0, 3, "b", "2", ("m1", "m4"), 200, 30.0),
        Exposure(T0, 4, "b", "2", (), 503, 1.0),
    ]


def _outcomes() -> dict[str, pd.DataFrame]:
    watches = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "movie_id": ["m2", "m3", "m4"],
            # user 2 watched m3 BEFORE being shown it: not engagement
            "time": pd.to_datetime(
                [T0 + timedelta(minutes=5), T0 - timedelta(hours=1), T0 + timedelta(minutes=90)]
            ),
        }
    )
    ratings = pd.DataFrame(
        {
            "user_id": [1, 3],
            "movie_id": ["m2", "m4"],
            "time": pd.to_datetime([T0 + timedelta(minutes=30), T0 + timedelta(minutes=100)]),
            "rating": [4, 2],
        }
    )
    users = pd.DataFrame(
        {"user_id": [1, 2, 3, 4], "age": [20, 40, 30, 50], "gender": ["F", "M", "F", "M"]}
    )
    return {"watches": watches, "ratings": ratings, "users": users}


def test_engagement_rmse_and_health_per_track() -> None:
    def predict_a(users: list[str], movies: list[str]) -> np.ndarray:
        return np.full(len(users), 3.0)

    report = evaluate_frames(
        exposures_frame(_exposures()),
        _outcomes(),
        {"a": predict_a},
        window=timedelta(hours=2),
        popular_items={"m1"},
        min_group_size=1,
    )
    a, b = report.tracks["a"], report.tracks["b"]
    # user 1 watched 1 of 2 shown; user 2 watched m3 before the exposure: not engagement
    assert a.engagement_rate == pytest.approx(0.25)
    assert a.session_engagement_rate == pytest.approx(0.5)
    assert b.engagement_rate == pytest.approx(0.5)  # 1 of 2 shown
    assert b.session_engagement_rate == pytest.approx(1.0)
    assert b.success_rate == pytest.approx(0.5)
    assert a.online_rmse == pytest.approx(1.0) and a.rmse_samples == 1
    assert np.isnan(b.online_rmse)  # no predictor for b
    assert a.engagement_by_group["gender"] == {"F": 0.5, "M": 0.0}
    assert a.disparity["gender"] == 0.0
    assert b.popular_share == pytest.approx(0.5)
    assert [r.experiment for r in report.ab] == ["a_vs_b"]
    assert report.to_dict()["tracks"]["b"]["online_rmse"] is None


def test_engagement_respects_window() -> None:
    report = evaluate_frames(
        exposures_frame(_exposures()),
        _outcomes(),
        {},
        window=timedelta(minutes=60),
        popular_items=set(),
        min_group_size=1,
    )
    assert report.tracks["b"].engagement_rate == 0.0  # the watch came 90 minutes later


def test_exposures_round_trip(tmp_path) -> None:
    path = tmp_path / "prov.jsonl"
    assert write_exposures(path, _exposures()) == 4
    assert list(read_exposures(path)) == _exposures()


def test_exposures_bad_line_names_its_line(tmp_path) -> None:
    path = tmp_path / "prov.jsonl"
    path.write_text('{"time": "2026-01-01T00:00:00", "user_id": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"prov.jsonl:2"):
        list(read_exposures(path))
