"""Drift verdicts: significant AND large shifts fail; trivial shifts in huge samples and noise don't."""

from __future__ import annotations

import numpy as np
import pytest
from movierec_ingestor.quality import drift, stats
from movierec_ingestor.quality.settings import DriftThresholds

TH = DriftThresholds()
BASE = np.array([0.05, 0.10, 0.25, 0.35, 0.25])


def _inputs(
    ref_counts: np.ndarray,
    new_counts: np.ndarray,
    activity: tuple[np.ndarray, np.ndarray] | None = None,
) -> drift.DriftInputs:
    rng = np.random.default_rng(1)
    same = (rng.uniform(0, 1, 400), rng.uniform(0, 1, 400))
    return drift.DriftInputs(
        rating_counts=(ref_counts, new_counts),
        activity=activity or (rng.poisson(8, 400) + 1.0, rng.poisson(8, 400) + 1.0),
        completion=same,
        watch_minutes=same,
    )


def _by_key(results: list[drift.DriftResult]) -> dict[tuple[str, str], drift.DriftResult]:
    return {(r.feature, r.test): r for r in results}


@pytest.mark.parametrize(
    ("effect", "p_value", "n", "severity"),
    [
        (0.5, 1e-9, 1000, "fail"),
        (0.15, 1e-9, 1000, "warn"),
        (0.01, 1e-300, 10**7, "ok"),  # huge sample, trivial shift: significant but negligible
        (0.5, 0.2, 1000, "ok"),  # large but not significant
        (0.9, 1e-9, 10, "skipped"),  # too few to judge
        (float("nan"), float("nan"), 1000, "skipped"),
    ],
)
def test_judge_table(effect: float, p_value: float, n: int, severity: str) -> None:
    sample = stats.TwoSample(effect, p_value, effect, n, n)
    assert drift.judge(sample, warn=0.1, fail=0.25, alpha=0.01, min_n=30) == severity


def test_huge_sample_with_trivial_shift_passes() -> None:
    # Two million ratings per side; 1% of the mass moves from 4 to 5 stars. Every p-value is
    # astronomically small, the effect sizes are not.
    ref = BASE * 2_000_000
    new = (BASE + np.array([0, 0, 0, -0.01, 0.01])) * 2_000_000
    rng = np.random.default_rng(2)
    activity = (rng.poisson(8.0, 200_000) + 1.0, rng.poisson(8.1, 200_000) + 1.0)
    results = _by_key(drift.measure(_inputs(ref, new, activity), TH))
    assert results["rating", "chi2"].p_value < 1e-100
    assert results["rating", "chi2"].effect < TH.cramers_v_warn
    assert results["activity", "ks"].p_value < 0.01
    assert results["activity", "ks"].effect < TH.ks_warn
    assert all(r.severity in ("ok", "skipped") for r in results.values()), results


def test_severe_rating_shift_fails_with_effect_size() -> None:
    ref = BASE * 5000
    new = np.array([0.35, 0.25, 0.2, 0.1, 0.1]) * 2000  # the audience turned sour
    results = _by_key(drift.measure(_inputs(ref, new), TH))
    assert results["rating", "psi"].severity == "fail"
    assert results["rating", "psi"].effect > TH.psi_fail
    assert results["rating", "chi2"].severity == "fail"
    assert results["rating", "chi2"].effect > TH.cramers_v_fail


def test_small_noisy_sample_is_not_flagged() -> None:
    rng = np.random.default_rng(3)
    ref = drift.rating_histogram(rng.choice(np.arange(1, 6), 5000, p=BASE))
    new = drift.rating_histogram(rng.choice(np.arange(1, 6), 60, p=BASE))
    results = _by_key(drift.measure(_inputs(ref, new), TH))
    assert results["rating", "psi"].severity == "skipped"  # 60 < min_ratings
    assert results["rating", "chi2"].severity == "skipped"


def test_activity_shift_is_caught_by_ks() -> None:
    rng = np.random.default_rng(4)
    activity = (rng.poisson(8, 500) + 1.0, rng.poisson(20, 500) + 1.0)
    results = _by_key(drift.measure(_inputs(BASE * 1000, BASE * 1000, activity), TH))
    assert results["activity", "ks"].severity == "fail"
    assert results["rating", "psi"].severity == "ok"


def test_rating_histogram_ignores_invalid_values() -> None:
    assert list(drift.rating_histogram([1, 5, 5, 0, 6, 3.5])) == [1, 0, 0, 0, 2]


def test_completion_splits_known_and_unknown_runtime() -> None:
    frac, minutes = drift.completion([59, 119, 500, 30], [120, 120, 100, np.nan])
    assert list(frac) == [0.5, 1.0, 1.5]  # capped: past the runtime is a full watch
    assert list(minutes) == [30.0]


def test_activity_per_user_sums_partial_counts_per_slot() -> None:
    # user 1: 3 watch + 2 rate in slot 1, 4 in slot 2; user 2: 1 in slot 1
    got = drift.activity_per_user([1, 1, 1, 2], [3, 2, 4, 1], [1, 1, 2, 1])
    assert sorted(got.tolist()) == [1.0, 4.0, 5.0]


def test_report_dict_has_no_nan() -> None:
    result = drift.measure(_inputs(np.zeros(5), np.zeros(5)), TH)[0]
    assert result.as_dict()["effect"] is None
    assert result.severity == "skipped"
