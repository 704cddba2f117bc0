"""Drift of the newest window against the reference: rating distribution, activity, completion."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from movierec_ingestor.quality import stats
from movierec_ingestor.quality.checks import Severity
from movierec_ingestor.quality.settings import DriftThresholds

RATING_VALUES = np.arange(1, 6)


@dataclass(frozen=True)
class DriftResult:
    """One drift test of one feature, with the effect size the verdict rests on."""

    feature: str
    test: str
    statistic: float
    p_value: float
    effect: float
    effect_name: str
    warn: float
    fail: float
    n_ref: int
    n_new: int
    severity: Severity

    def as_dict(self) -> dict[str, Any]:
        # JSON has no NaN: an untestable value is reported as null.
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


@dataclass(frozen=True)
class DriftInputs:
    """The samples drift is measured on, each as (reference, newest window)."""

    rating_counts: tuple[NDArray[np.float64], NDArray[np.float64]]  # histograms over 1..5
    activity: tuple[NDArray[np.float64], NDArray[np.float64]]  # events per active user per window
    completion: tuple[NDArray[np.float64], NDArray[np.float64]]  # fraction watched, runtime known
    watch_minutes: tuple[NDArray[np.float64], NDArray[np.float64]]  # max minute, runtime unknown


def judge(sample: stats.TwoSample, warn: float, fail: float, alpha: float, min_n: int) -> Severity:
    """Flag only a shift that is both significant and large.

    Small samples are inconclusive ("skipped"), so noise is not flagged; a tiny effect is "ok"
    however small its p-value, so a huge sample does not flag a trivial shift.
    """
    if min(sample.n_ref, sample.n_new) < min_n or not math.isfinite(sample.effect):
        return "skipped"
    if sample.p_value >= alpha:
        return "ok"
    if sample.effect >= fail:
        return "fail"
    return "warn" if sample.effect >= warn else "ok"


def rating_histogram(ratings: ArrayLike) -> NDArray[np.float64]:
    """Counts of the ratings 1..5 (other values are ignored: the schema check counts them)."""
    r = np.asarray(ratings, dtype=np.float64)
    r = r[np.isin(r, RATING_VALUES)].astype(np.int64)
    return np.bincount(r - 1, minlength=5).astype(np.float64)


def completion(
    max_minute: ArrayLike, runtime: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(fraction watched where the runtime is known, max minute where it is not).

    Minutes are 0-based, so minute m means m + 1 minutes watched. Fractions are capped at 1.5:
    a session past the runtime (credits, bad metadata) is a full watch, not an outlier that
    stretches the distribution.
    """
    minutes = np.asarray(max_minute, dtype=np.float64)
    runtimes = np.asarray(runtime, dtype=np.float64)
    known = np.isfinite(runtimes) & (runtimes > 0)
    frac = np.minimum((minutes[known] + 1.0) / runtimes[known], 1.5)
    return frac, minutes[~known]


def activity_per_user(
    user_ids: ArrayLike, counts: ArrayLike, slots: ArrayLike
) -> NDArray[np.float64]:
    """Events per (user, window slot) from partial counts, e.g. one row per table and slot.

    Each reference slot has the newest window's length, so a user's count in one slot is
    comparable with their count in the newest window.
    """
    users = np.asarray(user_ids, dtype=np.int64)
    slot = np.asarray(slots, dtype=np.int64)
    n = np.asarray(counts, dtype=np.float64)
    if users.size == 0:
        return np.zeros(0)
    keys = np.stack([users, slot], axis=1)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    totals = np.zeros(int(inverse.max()) + 1)
    np.add.at(totals, inverse, n)
    return totals


def measure(inputs: DriftInputs, th: DriftThresholds) -> list[DriftResult]:
    """Every drift test the gate runs, in a stable order."""
    ref_counts, new_counts = inputs.rating_counts
    rating = {"alpha": th.alpha, "min_n": th.min_ratings}
    results = [
        _result(
            "rating",
            "psi",
            stats.psi(ref_counts, new_counts),
            "psi",
            warn=th.psi_warn,
            fail=th.psi_fail,
            **rating,
        ),
        _result(
            "rating",
            "chi2",
            stats.chi2_homogeneity(ref_counts, new_counts),
            "cramers_v",
            warn=th.cramers_v_warn,
            fail=th.cramers_v_fail,
            **rating,
        ),
    ]
    for feature, (ref, new) in (
        ("activity", inputs.activity),
        ("completion", inputs.completion),
        ("watch_minutes", inputs.watch_minutes),
    ):
        results.append(
            _result(
                feature,
                "ks",
                stats.ks(ref, new),
                "ks_d",
                warn=th.ks_warn,
                fail=th.ks_fail,
                alpha=th.alpha,
                min_n=th.min_ks_samples,
            )
        )
    return results


def _result(
    feature: str,
    test: str,
    sample: stats.TwoSample,
    effect_name: str,
    *,
    warn: float,
    fail: float,
    alpha: float,
    min_n: int,
) -> DriftResult:
    return DriftResult(
        feature=feature,
        test=test,
        statistic=sample.statistic,
        p_value=sample.p_value,
        effect=sample.effect,
        effect_name=effect_name,
        warn=warn,
        fail=fail,
        n_ref=sample.n_ref,
        n_new=sample.n_new,
        severity=judge(sample, warn, fail, alpha, min_n),
    )
