"""Spec parsing: defaults, and rejections with messages that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from movierec_operator.spec import (
    SpecError,
    default_checks,
    format_duration,
    parse_duration,
    parse_spec,
    promql_duration,
)


def test_defaults_fill_a_minimal_spec() -> None:
    spec = parse_spec({"modelName": "movies", "followAlias": "challenger"})
    assert spec.rollout.steps == (10, 25, 50, 100)
    assert spec.rollout.interval_seconds == 120
    assert spec.rollout.window_seconds == 120
    assert (spec.rollout.max_failed_checks, spec.rollout.min_samples) == (2, 200)
    assert spec.rollout.inconclusive_deadline_seconds == 3600
    assert spec.replicas == 2 and spec.force_promote is False and spec.image is None
    assert spec.checks == default_checks()
    assert [c.name for c in spec.checks] == [
        "success-rate",
        "latency-p95-seconds",
        "online-rmse",
        "engagement",
        "fairness-disparity-ratio",
    ]


def test_full_spec_round_trips_camel_case() -> None:
    spec = parse_spec(
        {
            "modelName": "movies",
            "version": "7",
            "image": "img:1",
            "replicas": 3,
            "forcePromote": True,
            "rollout": {
                "steps": [5, 100],
                "interval": "1m30s",
                "analysisWindow": "5m",
                "maxFailedChecks": 3,
                "minSamples": 10,
                "inconclusiveDeadline": "1h30m",
            },
            "analysis": [
                {"name": "custom", "query": "up", "min": 1},
                {"name": "online-rmse", "maxIncrease": 0.1},
            ],
        }
    )
    assert spec.rollout.interval_seconds == 90 and spec.rollout.window_seconds == 300
    assert spec.rollout.inconclusive_deadline_seconds == 5400
    assert [c.name for c in spec.checks] == ["custom", "online-rmse"]
    assert spec.checks[1].relative and not spec.checks[0].relative


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"modelName": "m"}, "exactly one of version"),
        ({"modelName": "m", "version": "1", "followAlias": "a"}, "exactly one of version"),
        ({"modelName": "m", "version": "v1"}, "version"),
        (
            {"modelName": "m", "version": "1", "rollout": {"steps": [10, 10, 100]}},
            "strictly increasing",
        ),
        ({"modelName": "m", "version": "1", "rollout": {"steps": [50, 20]}}, "strictly increasing"),
        ({"modelName": "m", "version": "1", "rollout": {"steps": [0, 100]}}, "1 to 100"),
        ({"modelName": "m", "version": "1", "rollout": {"steps": [10, 101]}}, "1 to 100"),
        ({"modelName": "m", "version": "1", "rollout": {"steps": []}}, "at least one"),
        (
            {"modelName": "m", "version": "1", "rollout": {"interval": "2 minutes"}},
            "not a duration",
        ),
        ({"modelName": "m", "version": "1", "rollout": {"maxFailedChecks": 0}}, "maxFailedChecks"),
        ({"modelName": "m", "version": "1", "replicas": 0}, "replicas"),
        (
            {"modelName": "m", "version": "1", "rollout": {"inconclusiveDeadline": "forever"}},
            "inconclusiveDeadline",
        ),
        (
            {"modelName": "m", "version": "1", "analysis": [{"name": "success-rate"}]},
            "needs min, max",
        ),
        (
            {"modelName": "m", "version": "1", "analysis": [{"name": "mystery", "min": 1}]},
            "not a built-in check",
        ),
        (
            {
                "modelName": "m",
                "version": "1",
                "analysis": [
                    {"name": "engagement", "minRatio": 1},
                    {"name": "engagement", "min": 0},
                ],
            },
            "unique",
        ),
        ({"modelName": "m", "version": "1", "bogus": 1}, "bogus"),
        (
            {
                "modelName": "m",
                "version": "1",
                "analysis": [{"name": "deployment", "query": "vector(1)", "min": 0}],
            },
            "reserved",
        ),
    ],
)
def test_invalid_specs_name_the_problem(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(raw)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h30m", 5400), ("500ms", 0.5), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3600, "1h"), (301.4, "5m1s"), (3725, "1h2m5s"), (45, "45s"), (0.5, "500ms"), (0, "0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["", "2", "m", "2 m", "-1s", "1d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(120, "120s"), (0.5, "500ms"), (2.25, "2250ms")])
def test_promql_durations(seconds: float, text: str) -> None:
    assert promql_duration(seconds) == text
