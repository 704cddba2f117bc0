"""Prometheus collector serving the evaluator's latest snapshot (ARCHITECTURE.md section 8 names).

Each scrape yields the last snapshot's values only, so an arm that left the evaluation window
disappears from /metrics instead of repeating a stale value.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from movierec_recommender.online.abtest import Verdict
from movierec_recommender.online.arms import Snapshot

ARM = ["track", "model_version"]


class SnapshotCollector(Collector):
    """Online metrics of the latest snapshot plus the evaluator's own health."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._last_success = math.nan
        self._runs = {"success": 0, "failure": 0}
        self._duration = math.nan

    def update(self, snapshot: Snapshot, *, finished_at: float, duration: float) -> None:
        with self._lock:
            self._snapshot = snapshot
            self._last_success = finished_at
            self._runs["success"] += 1
            self._duration = duration

    def failed(self) -> None:
        with self._lock:
            self._runs["failure"] += 1

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self._lock:
            snap, last, runs, duration = (
                self._snapshot, self._last_success, dict(self._runs), self._duration,
            )  # fmt: skip
        yield from _health(last, runs, duration, snap)
        if snap is not None:
            yield from snapshot_families(snap)


def _health(
    last: float, runs: dict[str, int], duration: float, snap: Snapshot | None
) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    total = CounterMetricFamily(
        "movierec_online_evaluations", "Evaluation rounds by result", labels=["result"]
    )
    for result, n in sorted(runs.items()):
        total.add_metric([result], n)
    yield total
    if not math.isnan(last):
        yield GaugeMetricFamily(
            "movierec_online_last_success_timestamp_seconds",
            "Unix time the last evaluation round finished",
            value=last,
        )
        yield GaugeMetricFamily(
            "movierec_online_evaluation_seconds", "Duration of the last round", value=duration
        )
    if snap is not None:
        yield GaugeMetricFamily(
            "movierec_online_exposures",
            "Exposures in the evaluation window",
            value=snap.exposures,
        )
        yield GaugeMetricFamily(
            "movierec_online_dropped_exposures",
            "Exposures of arms beyond the label bounds (not exported per arm)",
            value=snap.dropped_exposures,
        )


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _add(family: GaugeMetricFamily, labels: list[str], value: float) -> None:
    if value is not None and not math.isnan(value) and not math.isinf(value):
        family.add_metric(labels, float(value))


def snapshot_families(snap: Snapshot) -> Iterator[GaugeMetricFamily]:
    """Gauge families for every arm and A/B comparison of a snapshot (NaN values are left out)."""
    f = {
        "requests": _gauge(
            "movierec_online_requests", "Answers (exposures) in the evaluation window", ARM
        ),
        "users": _gauge("movierec_online_users", "Distinct users exposed in the window", ARM),
        "success": _gauge(
            "movierec_online_success_rate",
            "Share of answers with status 200 within the latency budget (800 ms)",
            ARM,
        ),
        "latency": _gauge(
            "movierec_online_latency_seconds",
            "Answer latency quantiles as the provenance events record them",
            [*ARM, "quantile"],
        ),
        "rmse": _gauge(
            "movierec_online_rmse",
            "RMSE of the serving version's predicted rating against ratings given later",
            ARM,
        ),
        "rmse_n": _gauge(
            "movierec_online_rmse_samples", "Ratings behind movierec_online_rmse", ARM
        ),
        "engagement": _gauge(
            "movierec_engagement_rate",
            "Mean share of an answer's recommended movies the user started watching within the window",
            [*ARM, "group"],
        ),
        "engagement_n": _gauge(
            "movierec_engagement_samples",
            "Answers behind the engagement rate (those at least one engagement window old)",
            ARM,
        ),
        "completion": _gauge(
            "movierec_engagement_completion",
            "Mean share of a started recommended movie's runtime that was watched",
            ARM,
        ),
        "disparity": _gauge(
            "movierec_fairness_disparity_ratio",
            "Lowest over highest group engagement for an attribute (1 = parity)",
            ["attribute", *ARM],
        ),
        "group_ratio": _gauge(
            "movierec_fairness_group_ratio",
            "Lowest over an attribute's groups of this arm's engagement relative to the baseline "
            "track's in the same group (1 = no group worse off)",
            ["attribute", *ARM],
        ),
        "gini": _gauge(
            "movierec_exposure_gini", "Gini coefficient of how often each movie was shown", ARM
        ),
        "popular": _gauge(
            "movierec_popular_share",
            "Share of shown slots given to the catalogue's most popular 5% of movies",
            ARM,
        ),
        "coverage": _gauge(
            "movierec_catalogue_coverage", "Share of the catalogue shown at least once", ARM
        ),
        "confirm": _gauge(
            "movierec_self_confirmation_ratio",
            "Share of new ratings on movies recommended to that user before",
            ARM,
        ),
        "confirm_n": _gauge(
            "movierec_self_confirmation_samples", "Ratings behind the self-confirmation ratio", ARM
        ),
    }
    for arm in snap.arms:
        key = [arm.track, arm.model_version]
        _add(f["requests"], key, arm.requests)
        _add(f["users"], key, arm.users)
        _add(f["success"], key, arm.success_rate)
        for q, seconds in arm.latency_seconds.items():
            _add(f["latency"], [*key, q], seconds)
        _add(f["rmse"], key, arm.online_rmse)
        _add(f["rmse_n"], key, arm.rmse_samples)
        _add(f["engagement"], [*key, "all"], arm.engagement_rate)
        for group, rate in sorted(arm.engagement_by_group.items()):
            _add(f["engagement"], [*key, group], rate)
        _add(f["engagement_n"], key, arm.engagement_samples)
        _add(f["completion"], key, arm.completion)
        for attr, ratio in sorted(arm.disparity.items()):
            _add(f["disparity"], [attr, *key], ratio)
        for attr, ratio in sorted(arm.group_ratio.items()):
            _add(f["group_ratio"], [attr, *key], ratio)
        _add(f["gini"], key, arm.exposure_gini)
        _add(f["popular"], key, arm.popular_share)
        _add(f["coverage"], key, arm.coverage)
        _add(f["confirm"], key, arm.self_confirmation)
        _add(f["confirm_n"], key, arm.self_confirmation_samples)
    yield from f.values()
    yield from _ab_families(snap)


def _ab_families(snap: Snapshot) -> Iterator[GaugeMetricFamily]:
    exp = ["experiment"]
    p = _gauge(
        "movierec_ab_p_value",
        "p-value of the per-user engagement difference (Welch t-test; the user is the unit)",
        exp,
    )
    effect = _gauge(
        "movierec_ab_effect", "Engagement of B minus A (mean per-user share watched)", exp
    )
    low = _gauge("movierec_ab_effect_ci_low", "Lower end of the effect's 95% interval", exp)
    high = _gauge("movierec_ab_effect_ci_high", "Upper end of the effect's 95% interval", exp)
    samples = _gauge("movierec_ab_samples", "Users per arm of the comparison", [*exp, "arm"])
    needed = _gauge(
        "movierec_ab_samples_needed",
        "Users per arm still missing for the configured power (0 when enough)",
        exp,
    )
    verdict = _gauge(
        "movierec_ab_verdict", "1 for the comparison's current verdict", [*exp, "verdict"]
    )
    for ab in snap.ab:
        c, key = ab.comparison, [ab.experiment]
        _add(p, key, c.p_value)
        _add(effect, key, c.effect)
        _add(low, key, c.ci_low)
        _add(high, key, c.ci_high)
        _add(samples, [*key, "a"], c.n_a)
        _add(samples, [*key, "b"], c.n_b)
        _add(needed, key, c.n_needed)
        for v in Verdict:
            verdict.add_metric([*key, str(v)], 1.0 if v == c.verdict else 0.0)
    yield from (p, effect, low, high, samples, needed, verdict)
