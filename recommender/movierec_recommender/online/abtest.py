"""A/B comparison of two arms on per-user values: effect with CI, p-value, power and a verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats as sps


class Verdict(StrEnum):
    """What a comparison allows one to say about B against A."""

    INCONCLUSIVE = "inconclusive"  # fewer users than the configured power needs
    B_BETTER = "b_better"
    B_WORSE = "b_worse"
    NO_DIFFERENCE = "no_difference"  # enough users, and no significant difference


@dataclass(frozen=True)
class Comparison:
    """B minus A on the mean per-user value (Welch), with what the sample size allows."""

    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    effect: float  # mean_b - mean_a
    relative_effect: float  # effect / mean_a (NaN when mean_a is 0)
    ci_low: float
    ci_high: float
    p_value: float
    n_required: float  # users per arm for `power` to detect the minimum effect (inf: unknowable)
    verdict: Verdict

    @property
    def n_needed(self) -> float:
        """Users still missing in the smaller arm (0 once there are enough)."""
        return max(0.0, self.n_required - min(self.n_a, self.n_b))


def required_per_arm(
    sd_a: float, sd_b: float, delta: float, *, alpha: float, power: float
) -> float:
    """Users per arm for a two-sided test at ``alpha`` to detect ``delta`` with ``power``.

    Normal approximation with unequal variances: n = (z_{1-a/2} + z_{power})^2 (sa^2 + sb^2) / d^2.
    """
    if delta <= 0 or not math.isfinite(delta):
        return math.inf
    variance = sd_a**2 + sd_b**2
    if variance == 0:
        return 2.0  # no spread: the smallest sample a t-test accepts decides it
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return float(math.ceil(z**2 * variance / delta**2))


def compare(
    a: np.ndarray,
    b: np.ndarray,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    min_effect: float = 0.05,
) -> Comparison:
    """Compare per-user values of B with A; ``min_effect`` is relative to A's mean.

    Below the sample size the power needs, the verdict is inconclusive whatever the p-value:
    an early significant result on few users is mostly noise (the peeking problem).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    n_a, n_b = len(a), len(b)
    mean_a = float(a.mean()) if n_a else math.nan
    mean_b = float(b.mean()) if n_b else math.nan
    effect = mean_b - mean_a
    relative = effect / mean_a if n_a and mean_a != 0 else math.nan
    if n_a < 2 or n_b < 2:
        return Comparison(
            mean_a, mean_b, n_a, n_b, effect, relative, math.nan, math.nan, 1.0, math.inf,
            Verdict.INCONCLUSIVE,
        )  # fmt: skip
    var_a, var_b = float(a.var(ddof=1)), float(b.var(ddof=1))
    se = math.sqrt(var_a / n_a + var_b / n_b)
    if se == 0:
        p = 1.0 if effect == 0 else 0.0
        low = high = effect
    else:
        # Welch-Satterthwaite degrees of freedom
        df = (var_a / n_a + var_b / n_b) ** 2 / (
            (var_a / n_a) ** 2 / (n_a - 1) + (var_b / n_b) ** 2 / (n_b - 1)
        )
        t = effect / se
        p = float(2 * sps.t.sf(abs(t), df))
        half = float(sps.t.ppf(1 - alpha / 2, df)) * se
        low, high = effect - half, effect + half
    n_required = required_per_arm(
        math.sqrt(var_a), math.sqrt(var_b), min_effect * abs(mean_a), alpha=alpha, power=power
    )
    if min(n_a, n_b) < n_required:
        verdict = Verdict.INCONCLUSIVE
    elif p < alpha:
        verdict = Verdict.B_BETTER if effect > 0 else Verdict.B_WORSE
    else:
        verdict = Verdict.NO_DIFFERENCE
    return Comparison(mean_a, mean_b, n_a, n_b, effect, relative, low, high, p, n_required, verdict)
