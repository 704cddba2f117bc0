"""Prometheus gauges for an online report (names from the architecture's metric contract)."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Gauge

from movierec_recommender.online.evaluate import OnlineReport


def report_registry(
    report: OnlineReport, registry: CollectorRegistry | None = None
) -> CollectorRegistry:
    registry = registry or CollectorRegistry()
    rmse = Gauge(
        "movierec_online_rmse",
        "RMSE of served predictions against ratings given later",
        ["model_version", "track"],
        registry=registry,
    )
    rmse_n = Gauge(
        "movierec_online_rmse_samples",
        "Ratings behind movierec_online_rmse",
        ["model_version", "track"],
        registry=registry,
    )
    engagement = Gauge(
        "movierec_engagement_rate",
        "Share of recommendation answers followed by a watch of a recommended movie",
        ["model_version", "track", "group"],
        registry=registry,
    )
    requests = Gauge(
        "movierec_online_requests",
        "Answers behind the online metrics",
        ["model_version", "track"],
        registry=registry,
    )
    p_value = Gauge(
        "movierec_ab_p_value",
        "p-value of the engagement difference between two tracks (user-level Welch t-test)",
        ["experiment"],
        registry=registry,
    )
    disparity = Gauge(
        "movierec_fairness_disparity_ratio",
        "Lowest over highest engagement rate across groups of an attribute",
        ["attribute", "track"],
        registry=registry,
    )
    for t in report.tracks.values():
        version = ",".join(t.model_versions)
        _set(rmse.labels(version, t.track), t.online_rmse)
        rmse_n.labels(version, t.track).set(t.rmse_samples)
        requests.labels(version, t.track).set(t.requests)
        _set(engagement.labels(version, t.track, "all"), t.engagement_rate)
        for attr, groups in t.engagement_by_group.items():
            for group, rate in groups.items():
                _set(engagement.labels(version, t.track, f"{attr}:{group}"), rate)
        for attr, ratio in t.disparity.items():
            _set(disparity.labels(attr, t.track), ratio)
    for ab in report.ab:
        _set(p_value.labels(ab.experiment), ab.user_test.p_value)
    return registry


def _set(gauge: Gauge, value: float) -> None:
    if not math.isnan(value):
        gauge.set(value)
