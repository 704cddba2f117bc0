"""Rollout analysis: PromQL per check from templates, Prometheus queries, and each check's verdict."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from movierec_operator import constants
from movierec_operator.constants import Verdict
from movierec_operator.spec import Check

log = logging.getLogger(__name__)

_CANARY = 'track="{{track}}",model_version="{{version}}"'
_LATENCY = "movierec_request_latency_seconds"
_REQUESTS = f'movierec_requests_total{{component="recommender",{_CANARY}}}'
_WINDOW = "[{{window}}]"
REQUEST_SAMPLES = f"sum(increase({_REQUESTS}{_WINDOW}))"
# The evaluator's sample counts are gauges: max(), not sum(), so that two evaluator pods
# (both scraped during an update) are not counted twice.
ENGAGEMENT_SAMPLES = f"max(movierec_engagement_samples{{{_CANARY}}})"
# the evaluator's A/B experiment of a track against the stable track (`--baseline-track`)
_EXPERIMENT = f'experiment="{constants.TRACK_STABLE}_vs_{{{{track}}}}"'

# name -> (value query, samples query); metric names and labels as the recommender
# (web/metrics.py) and the online evaluator (online/exporter.py) export them
DEFAULT_QUERIES: dict[str, tuple[str, str]] = {
    "success-rate": (
        # the course's criterion: status 200 within 800 ms (the histogram's 0.8 bucket).
        # "or vector(0)": a canary that answers nothing but errors must read 0, not "no data"
        f'(sum(rate({_LATENCY}_bucket{{component="recommender",{_CANARY},status="200",le="0.8"}}'
        f"{_WINDOW})) or vector(0)) / "
        f'sum(rate({_LATENCY}_count{{component="recommender",{_CANARY}}}{_WINDOW}))',
        REQUEST_SAMPLES,
    ),
    "latency-p95-seconds": (
        f"histogram_quantile(0.95, sum by (le) (rate({_LATENCY}_bucket"
        f'{{component="recommender",{_CANARY}}}{_WINDOW})))',
        REQUEST_SAMPLES,
    ),
    "online-rmse": (
        f"max(movierec_online_rmse{{{_CANARY}}})",
        f"max(movierec_online_rmse_samples{{{_CANARY}}})",
    ),
    "engagement": (
        f'max(movierec_engagement_rate{{{_CANARY},group="all"}})',
        ENGAGEMENT_SAMPLES,
    ),
    # the lowest ratio over the attributes (age_group, gender)
    "fairness-disparity-ratio": (
        f"min(movierec_fairness_disparity_ratio{{{_CANARY}}})",
        ENGAGEMENT_SAMPLES,
    ),
    # optional (not in the default checks; use with min): the worst-off group's engagement under
    # the canary relative to the same group's under stable, over the attributes
    "fairness-group-ratio": (
        f"min(movierec_fairness_group_ratio{{{_CANARY}}})",
        ENGAGEMENT_SAMPLES,
    ),
    # optional (not in the default checks; use with max: 0): 1 when the evaluator's A/B test
    # finds the track significantly worse than stable; samples: users in the smaller arm
    "ab-engagement": (
        f'max(movierec_ab_verdict{{{_EXPERIMENT},verdict="b_worse"}})',
        f"min(movierec_ab_samples{{{_EXPERIMENT}}})",
    ),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def render(template: str, *, track: str, version: str, window: str) -> str:
    """A template with ``{{track}}``, ``{{version}}`` and ``{{window}}`` filled in."""
    return (
        template.replace("{{track}}", _escape(track))
        .replace("{{version}}", _escape(version))
        .replace("{{window}}", window)
    )


def queries_for(check: Check) -> tuple[str, str]:
    """The (value, samples) templates of a check: its own, else the built-in ones."""
    default_value, default_samples = DEFAULT_QUERIES.get(check.name, ("", REQUEST_SAMPLES))
    return check.query or default_value, check.samples_query or default_samples


def threshold_text(check: Check) -> str:
    """The bounds of a check as a person reads them."""
    parts = []
    if check.min is not None:
        parts.append(f">= {check.min:g}")
    if check.max is not None:
        parts.append(f"<= {check.max:g}")
    if check.max_increase is not None:
        parts.append(f"<= stable +{check.max_increase:.0%}")
    if check.min_ratio is not None:
        parts.append(f">= {check.min_ratio:g} x stable")
    return ", ".join(parts)


@dataclass(frozen=True)
class CheckResult:
    """One check of one analysis: values, samples, verdict and why."""

    name: str
    verdict: Verdict
    value: float | None
    samples: float | None
    threshold: str
    stable_value: float | None = None
    detail: str = ""

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verdict": str(self.verdict),
            "value": _fmt(self.value),
            "samples": _fmt(self.samples),
            "threshold": self.threshold,
            "detail": self.detail,
        }
        if self.stable_value is not None:
            out["stableValue"] = _fmt(self.stable_value)
        return out


def _fmt(value: float | None) -> float | None:
    # six significant digits keep status readable; NaN and Inf never get here (see _single_value)
    return None if value is None else float(f"{value:.6g}")


def evaluate(
    check: Check,
    *,
    value: float | None,
    samples: float | None,
    min_samples: int,
    stable_value: float | None = None,
) -> CheckResult:
    """The verdict of one check from its measured numbers (pure)."""
    threshold = threshold_text(check)

    def result(verdict: Verdict, detail: str) -> CheckResult:
        return CheckResult(check.name, verdict, value, samples, threshold, stable_value, detail)

    if value is None:
        return result(Verdict.INCONCLUSIVE, "no data")
    if samples is None or samples < min_samples:
        have = "no" if samples is None else f"{samples:g}"
        return result(Verdict.INCONCLUSIVE, f"{have} samples < minSamples {min_samples}")
    if check.min is not None and value < check.min:
        return result(Verdict.FAIL, f"{value:.4g} < min {check.min:g}")
    if check.max is not None and value > check.max:
        return result(Verdict.FAIL, f"{value:.4g} > max {check.max:g}")
    if check.relative:
        if stable_value is None:
            return result(Verdict.INCONCLUSIVE, "no data for the stable track")
        if check.max_increase is not None:
            if stable_value == 0:
                return result(Verdict.INCONCLUSIVE, "stable value is 0: no relative increase")
            increase = (value - stable_value) / abs(stable_value)
            if increase > check.max_increase:
                return result(
                    Verdict.FAIL,
                    f"{value:.4g} is {increase:+.1%} vs stable {stable_value:.4g} "
                    f"(max +{check.max_increase:.0%})",
                )
        if check.min_ratio is not None:
            if stable_value <= 0:
                return result(Verdict.INCONCLUSIVE, "stable value is 0: no ratio")
            ratio = value / stable_value
            if ratio < check.min_ratio:
                return result(
                    Verdict.FAIL,
                    f"{value:.4g} is {ratio:.3g} x stable {stable_value:.4g} "
                    f"(min {check.min_ratio:g})",
                )
    return result(Verdict.PASS, "")


class PrometheusError(RuntimeError):
    """Prometheus did not answer a query (the analysis is retried later)."""


class QueryFn(Protocol):
    def __call__(self, promql: str) -> float | None: ...


class Prometheus:
    """A minimal Prometheus HTTP API client: instant queries reduced to one number. Each
    attempt has a connect and read timeout; refused connections, timeouts and 502/503/504 are
    retried ``retries`` times with a short backoff, then the analysis holds (no verdict)."""

    def __init__(self, base_url: str, *, timeout: float = 5.0, retries: int = 2) -> None:
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._session = requests.Session()
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            status_forcelist=(502, 503, 504),
            allowed_methods=("GET",),
            backoff_factor=0.2,
            raise_on_status=False,  # the last 5xx answer is reported as such
        )
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def query(self, promql: str) -> float | None:
        """The single value of an instant query; ``None`` for no data, NaN or +-Inf."""
        try:
            resp = self._session.get(
                f"{self.base_url}/api/v1/query", params={"query": promql}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            cause = exc.__context__ or exc.__cause__
            detail = type(getattr(cause, "reason", None) or exc).__name__
            raise PrometheusError(
                f"PrometheusUnavailable: {self.base_url}: {detail} "
                f"(after {self.retries + 1} attempts of {self.timeout:g}s)"
            ) from exc
        if resp.status_code == 400:
            raise PrometheusError(f"Prometheus rejected the query {promql!r}: {resp.text[:300]}")
        if resp.status_code != 200:
            raise PrometheusError(f"Prometheus answered {resp.status_code}: {resp.text[:300]}")
        data = resp.json().get("data", {})
        return _single_value(data)

    def close(self) -> None:
        self._session.close()


def _single_value(data: dict[str, Any]) -> float | None:
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        raw = result[1] if result else None
    elif kind == "vector":
        if not result:
            return None
        if len(result) > 1:
            log.warning("query returned %d series; using the first", len(result))
        raw = result[0]["value"][1]
    else:
        return None
    value = float(raw) if raw is not None else math.nan
    return None if math.isnan(value) or math.isinf(value) else value


def run_analysis(
    checks: Sequence[Check],
    query: QueryFn,
    *,
    canary_version: str,
    stable_version: str,
    window: str,
    min_samples: int,
) -> list[CheckResult]:
    """Query every check for the canary (and the stable track for relative checks) and judge it."""
    results = []
    for check in checks:
        value_t, samples_t = queries_for(check)
        canary = {"track": constants.TRACK_CANARY, "version": canary_version, "window": window}
        value = query(render(value_t, **canary))
        samples = query(render(samples_t, **canary))
        stable_value = None
        if check.relative:
            stable_value = query(
                render(value_t, track=constants.TRACK_STABLE, version=stable_version, window=window)
            )
        results.append(
            evaluate(
                check,
                value=value,
                samples=samples,
                min_samples=min_samples if check.min_samples is None else check.min_samples,
                stable_value=stable_value,
            )
        )
    return results
