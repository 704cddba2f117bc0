"""Pure statistics for online experiments: proportion tests, Welch's t-test, intervals, disparity."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class ProportionTest:
    """Two-proportion z-test of B against A (pooled variance), with the difference's 95% CI."""

    rate_a: float
    rate_b: float
    n_a: int
    n_b: int
    diff: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float


def two_proportion_ztest(success_a: int, n_a: int, success_b: int, n_b: int) -> ProportionTest:
    if n_a <= 0 or n_b <= 0:
        raise ValueError("both groups need at least one trial")
    pa, pb = success_a / n_a, success_b / n_b
    pooled = (success_a + success_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (pb - pa) / se_pooled if se_pooled > 0 else 0.0
    p = float(2 * sps.norm.sf(abs(z))) if se_pooled > 0 else 1.0
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    return ProportionTest(pa, pb, n_a, n_b, pb - pa, pb - pa - 1.96 * se, pb - pa + 1.96 * se, z, p)


@dataclass(frozen=True)
class MeanTest:
    """Welch's t-test of B against A on per-unit values (the unit is the randomisation unit: a user)."""

    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    t: float
    p_value: float


def welch_ttest(a: np.ndarray, b: np.ndarray) -> MeanTest:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return MeanTest(_mean(a), _mean(b), len(a), len(b), 0.0, 1.0)
    if np.var(a) == 0 and np.var(b) == 0:
        p = 1.0 if np.mean(a) == np.mean(b) else 0.0
        return MeanTest(_mean(a), _mean(b), len(a), len(b), math.inf if p == 0 else 0.0, p)
    res = sps.ttest_ind(b, a, equal_var=False)
    return MeanTest(_mean(a), _mean(b), len(a), len(b), float(res.statistic), float(res.pvalue))


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true = np.asarray(y_true, dtype=float)
    if len(y_true) == 0:
        return float("nan")
    return float(np.sqrt(np.mean((y_true - np.asarray(y_pred, dtype=float)) ** 2)))


def disparity_ratio(rates: dict[str, float]) -> float:
    """Lowest group rate over highest (1.0 = parity); NaN when fewer than two groups or all zero."""
    values = [v for v in rates.values() if not math.isnan(v)]
    if len(values) < 2 or max(values) <= 0:
        return float("nan")
    return min(values) / max(values)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of exposure counts: 0 when every item is shown equally, near 1 when few are."""
    x = np.sort(np.asarray(counts, dtype=float))
    if len(x) == 0 or x.sum() == 0:
        return float("nan")
    n = len(x)
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def percentile(values: np.ndarray, q: float) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.percentile(values, q)) if len(values) else float("nan")
