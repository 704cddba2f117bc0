"""PromQL rendering per check and the verdict of each check from measured numbers."""

from __future__ import annotations

import pytest
from movierec_operator.analysis import (
    DEFAULT_QUERIES,
    CheckResult,
    _single_value,
    evaluate,
    queries_for,
    render,
    run_analysis,
)
from movierec_operator.constants import Verdict
from movierec_operator.spec import BUILT_IN_CHECK_NAMES, Check, default_checks

CANARY = {"track": "canary", "version": "7", "window": "2m"}


C = 'track="canary",model_version="7"'
REQUESTS = f'sum(increase(movierec_requests_total{{component="recommender",{C}}}[2m]))'


@pytest.mark.parametrize(
    ("name", "value_query", "samples_query"),
    [
        (
            # the recommender's histogram: status 200 within 800 ms over every answer
            "success-rate",
            "(sum(rate(movierec_request_latency_seconds_bucket"
            f'{{component="recommender",{C},status="200",le="0.8"}}[2m])) or vector(0)) / '
            f'sum(rate(movierec_request_latency_seconds_count{{component="recommender",{C}}}[2m]))',
            REQUESTS,
        ),
        (
            "latency-p95-seconds",
            "histogram_quantile(0.95, sum by (le) (rate(movierec_request_latency_seconds_bucket"
            f'{{component="recommender",{C}}}[2m])))',
            REQUESTS,
        ),
        # the evaluator's sample counts with max(): two evaluator pods are not counted twice
        (
            "online-rmse",
            f"max(movierec_online_rmse{{{C}}})",
            f"max(movierec_online_rmse_samples{{{C}}})",
        ),
        (
            "engagement",
            f'max(movierec_engagement_rate{{{C},group="all"}})',
            f"max(movierec_engagement_samples{{{C}}})",
        ),
        (
            "fairness-disparity-ratio",
            f"min(movierec_fairness_disparity_ratio{{{C}}})",
            f"max(movierec_engagement_samples{{{C}}})",
        ),
        (
            "fairness-group-ratio",
            f"min(movierec_fairness_group_ratio{{{C}}})",
            f"max(movierec_engagement_samples{{{C}}})",
        ),
        (
            "ab-engagement",
            'max(movierec_ab_verdict{experiment="stable_vs_canary",verdict="b_worse"})',
            'min(movierec_ab_samples{experiment="stable_vs_canary"})',
        ),
    ],
)
def test_default_queries_render(name: str, value_query: str, samples_query: str) -> None:
    check = Check(name=name, max=0)
    value_t, samples_t = queries_for(check)
    assert render(value_t, **CANARY) == value_query
    assert render(samples_t, **CANARY) == samples_query


def test_every_default_check_has_a_query() -> None:
    # built in but optional: not among the checks of an empty spec.analysis
    optional = {"fairness-group-ratio", "ab-engagement"}
    assert {c.name for c in default_checks()} == set(DEFAULT_QUERIES) - optional
    assert set(DEFAULT_QUERIES) == set(BUILT_IN_CHECK_NAMES)


def test_a_checks_own_queries_override_the_built_in_ones() -> None:
    check = Check(name="engagement", query='q{t="{{track}}"}', samples_query="n", min=0.1)
    assert queries_for(check) == ('q{t="{{track}}"}', "n")
    only_value = Check(name="online-rmse", query="my_rmse", max=1)
    assert queries_for(only_value) == ("my_rmse", DEFAULT_QUERIES["online-rmse"][1])


def test_custom_query_and_label_escaping() -> None:
    check = Check(name="custom", query='up{job="{{track}}",v="{{version}}"}', min=1)
    value_t, samples_t = queries_for(check)
    assert render(value_t, track="canary", version='7"x', window="1m") == (
        'up{job="canary",v="7\\"x"}'
    )
    assert "movierec_requests_total" in samples_t  # default samples: canary requests


MIN = Check(name="success-rate", min=0.99)
MAX = Check(name="latency-p95-seconds", max=0.4)
INCREASE = Check(name="online-rmse", max_increase=0.05)
RATIO = Check(name="engagement", min_ratio=0.95)


@pytest.mark.parametrize(
    ("check", "value", "samples", "stable", "verdict", "detail"),
    [
        (MIN, 0.995, 500, None, Verdict.PASS, ""),
        (MIN, 0.99, 500, None, Verdict.PASS, ""),
        (MIN, 0.95, 500, None, Verdict.FAIL, "0.95 < min 0.99"),
        (MIN, None, 500, None, Verdict.INCONCLUSIVE, "no data"),
        (MIN, 0.5, 199, None, Verdict.INCONCLUSIVE, "199 samples < minSamples 200"),
        (MIN, 0.5, None, None, Verdict.INCONCLUSIVE, "no samples < minSamples 200"),
        (MAX, 0.3, 500, None, Verdict.PASS, ""),
        (MAX, 0.5, 500, None, Verdict.FAIL, "0.5 > max 0.4"),
        (INCREASE, 1.02, 500, 1.0, Verdict.PASS, ""),
        (INCREASE, 0.8, 500, 1.0, Verdict.PASS, ""),
        (INCREASE, 1.10, 500, 1.0, Verdict.FAIL, "+10.0% vs stable 1"),
        (INCREASE, 1.10, 500, None, Verdict.INCONCLUSIVE, "no data for the stable track"),
        (INCREASE, 1.10, 500, 0.0, Verdict.INCONCLUSIVE, "stable value is 0"),
        (RATIO, 0.30, 500, 0.30, Verdict.PASS, ""),
        (RATIO, 0.20, 500, 0.30, Verdict.FAIL, "0.667 x stable 0.3"),
        (RATIO, 0.20, 10, 0.30, Verdict.INCONCLUSIVE, "10 samples"),
    ],
)
def test_evaluate(
    *,
    check: Check,
    value: float | None,
    samples: float | None,
    stable: float | None,
    verdict: Verdict,
    detail: str,
) -> None:
    result = evaluate(check, value=value, samples=samples, min_samples=200, stable_value=stable)
    assert result.verdict == verdict
    assert detail in result.detail
    assert result.threshold


def test_run_analysis_queries_stable_only_for_relative_checks() -> None:
    asked: list[str] = []
    answers = {"canary": 1.0, "stable": 2.0}

    def query(promql: str) -> float | None:
        asked.append(promql)
        if "increase(" in promql or "_samples" in promql or "online_requests" in promql:
            return 1000.0
        return answers["stable" if 'track="stable"' in promql else "canary"]

    results = run_analysis(
        [MIN, RATIO], query, canary_version="7", stable_version="6", window="30s", min_samples=1
    )
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.FAIL]
    stable_queries = [q for q in asked if 'track="stable"' in q]
    assert stable_queries == [
        'max(movierec_engagement_rate{track="stable",model_version="6",group="all"})'
    ]
    assert results[1].to_status() == {
        "verdict": "fail",
        "value": 1.0,
        "samples": 1000.0,
        "threshold": ">= 0.95 x stable",
        "detail": "1 is 0.5 x stable 2 (min 0.95)",
        "stableValue": 2.0,
    }


def test_a_checks_own_min_samples_overrides_the_rollouts() -> None:
    """Requests in a window and answers old enough to judge are different units: a check may
    ask for its own minimum."""
    own = Check(name="engagement", min_ratio=0.8, min_samples=600)
    plain = Check(name="success-rate", min=0.9)

    def query(promql: str) -> float | None:
        return 300.0 if ("increase(" in promql or "_samples" in promql) else 1.0

    results = run_analysis(
        [own, plain], query, canary_version="7", stable_version="6", window="30s", min_samples=100
    )
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE, Verdict.PASS]
    assert "300 samples < minSamples 600" in results[0].detail


def test_the_status_names_each_checks_own_min_samples() -> None:
    """What a hold says ("engagement had 300/800 samples") uses the check's own minimum."""
    from movierec_operator.reconcile import _min_samples
    from movierec_operator.spec import parse_spec

    spec = parse_spec(
        {
            "modelName": "movies",
            "followAlias": "champion",
            "rollout": {"minSamples": 100},
            "analysis": [
                {"name": "engagement", "minRatio": 0.8, "minSamples": 800},
                {"name": "success-rate", "min": 0.9},
            ],
        }
    )
    measured = CheckResult("engagement", Verdict.INCONCLUSIVE, 0.1, 300.0, ">= 0.8 x stable")
    plain = CheckResult("success-rate", Verdict.INCONCLUSIVE, 1.0, 50.0, ">= 0.9")
    unmeasured = CheckResult("engagement", Verdict.INCONCLUSIVE, None, None, ">= 0.8 x stable")
    assert _min_samples(measured, spec) == 800
    assert _min_samples(plain, spec) == 100
    assert _min_samples(unmeasured, spec) is None


@pytest.mark.parametrize(
    ("data", "value"),
    [
        ({"resultType": "vector", "result": []}, None),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.25"]}]}, 0.25),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}, None),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, "+Inf"]}]}, None),
        ({"resultType": "scalar", "result": [1, "3"]}, 3.0),
        ({"resultType": "matrix", "result": []}, None),
    ],
)
def test_prometheus_answers_reduce_to_one_number(data: dict, value: float | None) -> None:
    assert _single_value(data) == value
