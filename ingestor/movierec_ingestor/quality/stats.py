"""Vectorised two-sample statistics with effect sizes: PSI, chi-squared with Cramér's V, KS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

# Proportions are floored before the log in PSI: an empty bin on one side would otherwise make the
# index infinite although one missing rating value is not an infinite shift.
PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class TwoSample:
    """One two-sample test: its statistic, p-value, effect size and the sample sizes it saw."""

    statistic: float
    p_value: float
    effect: float
    n_ref: int
    n_new: int


def _as_counts(counts: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim < 1 or (arr < 0).any() or not np.isfinite(arr).all():
        raise ValueError("counts must be a non-negative finite array")
    return arr


def psi(ref_counts: ArrayLike, new_counts: ArrayLike) -> TwoSample:
    """Population stability index of two histograms over the same bins.

    The p-value uses the known large-sample law of PSI under no change:
    PSI / (1/n_ref + 1/n_new) is approximately chi-squared with (bins - 1) degrees of freedom
    (Yurdakul 2018), so a small PSI on a tiny sample is not mistaken for stability or drift.
    """
    ref, new = _as_counts(ref_counts), _as_counts(new_counts)
    if ref.shape != new.shape:
        raise ValueError("histograms must have the same bins")
    n_ref, n_new = float(ref.sum()), float(new.sum())
    if n_ref == 0 or n_new == 0:
        return TwoSample(float("nan"), float("nan"), float("nan"), int(n_ref), int(n_new))
    p = np.maximum(ref / n_ref, PSI_FLOOR)
    q = np.maximum(new / n_new, PSI_FLOOR)
    value = float(np.sum((q - p) * np.log(q / p)))
    used = int(np.count_nonzero((ref + new) > 0))
    dof = max(used - 1, 1)
    p_value = float(sps.chi2.sf(value / (1.0 / n_ref + 1.0 / n_new), dof))
    return TwoSample(value, p_value, value, int(n_ref), int(n_new))


def chi2_rows(
    table: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Chi-squared homogeneity tests of many 2×K tables at once.

    `table` has shape (..., 2, K): row 0 the reference counts, row 1 the new counts. Columns empty
    in both rows are dropped per table (they carry no information and would divide by zero).
    Returns (statistic, p_value, cramers_v), each of shape (...). A table with an empty row or a
    single used column has statistic 0, p-value 1 and V 0: there is nothing to compare.
    """
    obs = _as_counts(table)
    if obs.ndim < 2 or obs.shape[-2] != 2:
        raise ValueError("tables must have shape (..., 2, K)")
    rows = obs.sum(axis=-1, keepdims=True)  # (..., 2, 1)
    cols = obs.sum(axis=-2, keepdims=True)  # (..., 1, K)
    total = obs.sum(axis=(-2, -1))  # (...)
    safe_total = np.where(total > 0, total, 1.0)
    expected = rows * cols / safe_total[..., None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (obs - expected) ** 2 / expected, 0.0)
    stat = terms.sum(axis=(-2, -1))
    used_cols = np.count_nonzero(cols[..., 0, :] > 0, axis=-1)
    both_rows = (rows[..., 0] > 0).all(axis=-1)
    dof = used_cols - 1
    valid = both_rows & (dof >= 1)
    stat = np.where(valid, stat, 0.0)
    p_value = np.where(valid, sps.chi2.sf(stat, np.maximum(dof, 1)), 1.0)
    # Cramér's V for a 2×K table: sqrt(chi2 / (n · (min(2, K) - 1))) = sqrt(chi2 / n).
    cramers_v = np.where(valid, np.sqrt(stat / safe_total), 0.0)
    return stat, p_value, np.minimum(cramers_v, 1.0)


def chi2_homogeneity(ref_counts: ArrayLike, new_counts: ArrayLike) -> TwoSample:
    """Chi-squared test that two histograms come from one distribution; effect is Cramér's V."""
    ref, new = _as_counts(ref_counts), _as_counts(new_counts)
    if ref.shape != new.shape or ref.ndim != 1:
        raise ValueError("histograms must be 1-D over the same bins")
    stat, p_value, v = chi2_rows(np.stack([ref, new]))
    return TwoSample(float(stat), float(p_value), float(v), int(ref.sum()), int(new.sum()))


def ks(ref: ArrayLike, new: ArrayLike) -> TwoSample:
    """Two-sample Kolmogorov-Smirnov test; the effect is the statistic D itself (0 to 1)."""
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(new, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return TwoSample(float("nan"), float("nan"), float("nan"), int(a.size), int(b.size))
    # The exact method is quadratic in the sample sizes; the asymptotic one is accurate at the
    # sizes the gate tests (it never tests fewer than tens of points per side).
    res = sps.ks_2samp(a, b, method="asymp")
    d = float(res.statistic)
    return TwoSample(d, float(res.pvalue), d, int(a.size), int(b.size))


def poisson_excess(counts: ArrayLike, expected: ArrayLike) -> NDArray[np.float64]:
    """One-sided p-values that `counts` exceed Poisson means `expected`, element-wise."""
    k = np.asarray(counts, dtype=np.float64)
    lam = np.asarray(expected, dtype=np.float64)
    return np.asarray(sps.poisson.sf(k - 1, lam), dtype=np.float64)
