"""Known-answer tests for the online-experiment statistics."""

import math

import numpy as np
import pytest
from movierec_recommender.online import stats


def test_two_proportion_ztest_known_answer() -> None:
    # 200/1000 vs 250/1000: pooled p = 0.225, se = sqrt(.225*.775*.002) = 0.018675, z = 2.6774
    res = stats.two_proportion_ztest(200, 1000, 250, 1000)
    assert res.diff == pytest.approx(0.05)
    assert res.z == pytest.approx(2.6774, abs=1e-3)
    assert res.p_value == pytest.approx(0.00742, abs=2e-4)
    assert res.ci_low < 0.05 < res.ci_high
    assert res.ci_low > 0  # significant at 5%: the interval excludes zero


def test_two_proportion_ztest_no_difference() -> None:
    res = stats.two_proportion_ztest(50, 100, 50, 100)
    assert res.z == 0 and res.p_value == pytest.approx(1.0)


def test_two_proportion_ztest_rejects_empty_group() -> None:
    with pytest.raises(ValueError, match="at least one trial"):
        stats.two_proportion_ztest(0, 0, 1, 10)


def test_welch_ttest_detects_shift_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.3, 0.1, 400)
    assert stats.welch_ttest(a, rng.normal(0.35, 0.1, 400)).p_value < 1e-6
    assert stats.welch_ttest(a, rng.normal(0.3, 0.1, 400)).p_value > 0.01


def test_welch_ttest_small_samples_are_inconclusive() -> None:
    assert stats.welch_ttest(np.array([1.0]), np.array([0.0, 1.0])).p_value == 1.0


def test_rmse_and_disparity_and_gini() -> None:
    assert stats.rmse(np.array([1, 2, 3]), np.array([1, 2, 5])) == pytest.approx(math.sqrt(4 / 3))
    assert stats.disparity_ratio({"f": 0.2, "m": 0.25}) == pytest.approx(0.8)
    assert math.isnan(stats.disparity_ratio({"f": 0.2}))
    assert stats.gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert stats.gini(np.array([0, 0, 0, 100])) == pytest.approx(0.75)
