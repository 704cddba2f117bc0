"""Known answers for the gate's statistics: PSI, chi-squared with Cramér's V, KS, Poisson excess."""

from __future__ import annotations

import math

import numpy as np
import pytest
from movierec_ingestor.quality import stats
from scipy import stats as sps
from scipy.stats.contingency import association


@pytest.mark.parametrize(
    ("ref", "new", "expected"),
    [
        ([50, 50], [50, 50], 0.0),
        ([50, 50], [25, 75], 0.25 * math.log(2) + 0.25 * math.log(1.5)),
        ([10, 20, 30, 40], [10, 20, 30, 40], 0.0),
        ([100, 0], [50, 50], (0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)),
    ],
)
def test_psi_known_values(ref: list[int], new: list[int], expected: float) -> None:
    assert stats.psi(ref, new).statistic == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_psi_p_value_depends_on_sample_size() -> None:
    small = stats.psi([10, 10, 10, 10, 10], [14, 8, 10, 9, 9])
    large = stats.psi([10_000] * 5, [14_000, 8_000, 10_000, 9_000, 9_000])
    assert small.effect == pytest.approx(large.effect)
    assert small.p_value > 0.5
    assert large.p_value < 1e-12


@pytest.mark.parametrize(
    "table",
    [
        [[30, 20, 10, 5, 35], [10, 20, 30, 35, 5]],
        [[5, 0, 7, 3, 0], [2, 0, 9, 1, 0]],  # empty columns are dropped
        [[1000, 1010], [990, 1000]],
    ],
)
def test_chi2_matches_scipy(table: list[list[int]]) -> None:
    obs = np.array(table, dtype=float)
    used = obs[:, obs.sum(axis=0) > 0]
    expected = sps.chi2_contingency(used, correction=False)
    got = stats.chi2_homogeneity(obs[0], obs[1])
    assert got.statistic == pytest.approx(expected.statistic)
    assert got.p_value == pytest.approx(expected.pvalue)
    assert got.effect == pytest.approx(association(used.astype(int), method="cramer"))


def test_chi2_rows_is_vectorised_and_handles_degenerate_tables() -> None:
    tables = np.array(
        [
            [[30, 20, 10, 5, 35], [10, 20, 30, 35, 5]],
            [[0, 0, 0, 0, 0], [1, 2, 3, 4, 5]],  # no history: nothing to compare
            [[0, 0, 9, 0, 0], [0, 0, 4, 0, 0]],  # one used column
        ]
    )
    stat, p, v = stats.chi2_rows(tables)
    single = stats.chi2_homogeneity(tables[0, 0], tables[0, 1])
    assert stat[0] == pytest.approx(single.statistic)
    assert list(stat[1:]) == [0.0, 0.0]
    assert list(p[1:]) == [1.0, 1.0]
    assert list(v[1:]) == [0.0, 0.0]


def test_chi2_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        stats.chi2_homogeneity([1, -1], [1, 1])


def test_ks_matches_scipy_and_drops_nan() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 500), rng.normal(0.5, 1, 400)
    expected = sps.ks_2samp(a, b, method="asymp")
    got = stats.ks(np.append(a, np.nan), b)
    assert got.statistic == pytest.approx(expected.statistic)
    assert got.p_value == pytest.approx(expected.pvalue)
    assert got.effect == got.statistic
    assert (got.n_ref, got.n_new) == (500, 400)


def test_empty_samples_are_untestable() -> None:
    assert math.isnan(stats.ks([], [1.0]).effect)
    assert math.isnan(stats.psi([0, 0], [1, 2]).effect)


def test_poisson_excess() -> None:
    p = stats.poisson_excess([0, 3, 15], [0.5, 0.5, 0.5])
    assert p[0] == pytest.approx(1.0)
    assert p[1] == pytest.approx(sps.poisson.sf(2, 0.5))
    assert p[2] < 1e-15
