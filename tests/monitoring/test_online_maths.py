"""Table tests for the evaluator's maths: A/B comparison, power, feedback-loop signals."""

import math

import numpy as np
import pandas as pd
import pytest
from movierec_recommender.online import abtest, feedback
from movierec_recommender.online.abtest import Verdict


@pytest.mark.parametrize(
    ("sd_a", "sd_b", "delta", "expected"),
    [
        # (1.96 + 0.8416)^2 * 2 / 0.5^2 = 62.79 -> 63 users per arm
        (1.0, 1.0, 0.5, 63),
        # halving the effect quadruples the users
        (1.0, 1.0, 0.25, 252),
        (0.0, 0.0, 0.1, 2),  # no spread at all: the smallest testable sample
        (1.0, 1.0, 0.0, math.inf),  # no effect to detect: no sample size suffices
    ],
)
def test_required_per_arm(sd_a: float, sd_b: float, delta: float, expected: float) -> None:
    assert abtest.required_per_arm(sd_a, sd_b, delta, alpha=0.05, power=0.8) == expected


def _normal(mean: float, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 0.1, n)


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [
        (_normal(0.30, 2000, 1), _normal(0.36, 2000, 2), Verdict.B_BETTER),
        (_normal(0.30, 2000, 1), _normal(0.24, 2000, 2), Verdict.B_WORSE),
        (_normal(0.30, 2000, 1), _normal(0.30, 2000, 2), Verdict.NO_DIFFERENCE),
        # a big difference on 5 users: significant maybe, but below the power's sample size
        (_normal(0.30, 5, 1), _normal(0.40, 5, 2), Verdict.INCONCLUSIVE),
        (np.array([0.3]), np.array([0.5, 0.6]), Verdict.INCONCLUSIVE),
    ],
)
def test_compare_verdicts(a: np.ndarray, b: np.ndarray, verdict: Verdict) -> None:
    assert abtest.compare(a, b, min_effect=0.05).verdict == verdict


def test_compare_known_answer() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([2.0, 3.0, 4.0, 5.0])
    c = abtest.compare(a, b, min_effect=0.05)
    # equal variances 1.667, se = sqrt(2 * 1.667 / 4) = 0.9129, t = 1.0954, df = 6
    assert c.effect == pytest.approx(1.0)
    assert c.relative_effect == pytest.approx(1.0 / 2.5)
    assert c.p_value == pytest.approx(0.3153, abs=1e-3)
    assert c.ci_low == pytest.approx(1.0 - 2.4469 * 0.9129, abs=1e-3)
    assert c.ci_high == pytest.approx(1.0 + 2.4469 * 0.9129, abs=1e-3)
    # 5% of 2.5 = 0.125: (2.8016)^2 * 3.333 / 0.125^2 = 1674.4 -> 1675
    assert c.n_required == 1675
    assert c.n_needed == 1671
    assert c.verdict == Verdict.INCONCLUSIVE


def test_feedback_signals() -> None:
    shown = pd.Series(["m1", "m1", "m1", "m2"])
    assert feedback.popular_share(shown, {"m1"}) == 0.75
    assert math.isnan(feedback.popular_share(shown, set()))
    assert feedback.catalogue_coverage(shown, 4) == 0.5
    assert feedback.exposure_gini(pd.Series(["m1", "m2"])) == pytest.approx(0.0)
    assert feedback.exposure_gini(shown) > 0


def test_self_confirmation_counts_ratings_after_a_recommendation() -> None:
    t = pd.Timestamp("2026-01-01 12:00")
    shown = pd.DataFrame({"user_id": [1, 1, 2], "movie_id": ["a", "b", "a"], "time": [t, t, t]})
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "movie_id": ["a", "c", "a", "a"],
            # user 2 rated "a" before it was recommended: not self-confirmation
            "time": [t + pd.Timedelta("1h"), t + pd.Timedelta("1h"), t - pd.Timedelta("1h"), t],
        }
    )
    share, n = feedback.self_confirmation(shown, ratings)
    assert (share, n) == (0.25, 4)
    assert math.isnan(feedback.self_confirmation(shown, ratings.iloc[0:0])[0])
