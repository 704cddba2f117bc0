"""Schema, range and hygiene checks: counts of invalid rows and their verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from movierec_ingestor.quality import checks
from movierec_ingestor.quality.settings import CheckThresholds

TH = CheckThresholds()
NOW = 2_000_000_000.0
OLD = -86400.0 * 2  # 1969: an epoch-0 style clock bug


def _summary(**overrides: object) -> checks.TableSummary:
    cols: dict[str, object] = {
        "user_ids": [1, 2, 3, 4],
        "movie_ids": ["a+1999", "b", "c+2001", "d"],
        "ratings": np.array([1.0, 5.0, 3.0, 4.0]),
        "times": np.full(4, NOW - 3600),
    }
    cols.update(overrides)
    return checks.summarize_ratings(
        cols["user_ids"],  # type: ignore[arg-type]
        cols["movie_ids"],  # type: ignore[arg-type]
        ratings=cols["ratings"],  # type: ignore[arg-type]
        times=cols["times"],  # type: ignore[arg-type]
        now=NOW,
        th=TH,
    )


@pytest.mark.parametrize(
    ("overrides", "field", "count"),
    [
        ({}, "schema_errors", 0),
        ({"ratings": np.array([0.0, 6.0, 3.5, 4.0])}, "out_of_range", 3),
        ({"ratings": np.array([np.nan, 5.0, 3.0, 4.0])}, "schema_errors", 1),
        ({"user_ids": [-1, 2, 3, 4]}, "bad_ids", 1),
        ({"movie_ids": ["Bad Id", "b", "c+2001", ""]}, "bad_ids", 2),
        ({"movie_ids": [None, "b", "c", "d"]}, "schema_errors", 1),
        ({"times": np.array([NOW + 3600, NOW + 10, NOW, OLD])}, "future", 1),
        ({"times": np.array([NOW + 3600, NOW + 10, NOW, OLD])}, "too_old", 1),
    ],
)
def test_rating_summary_counts(overrides: dict[str, object], field: str, count: int) -> None:
    assert getattr(_summary(**overrides), field) == count


def test_duplicates_count_repeated_content() -> None:
    s = _summary(
        user_ids=[1, 1, 1, 2],
        movie_ids=["a", "a", "a", "a"],
        ratings=np.array([5.0, 5.0, 4.0, 5.0]),
    )
    assert s.duplicates == 1  # (1, a, 5) twice; a different rating is a re-rating, not a duplicate
    assert checks.duplicate_rows([1, 1, 2], ["x", "x", "x"], [0, 0, 0]) == 1
    assert checks.duplicate_rows([]) == 0


def test_verdicts() -> None:
    clean = checks.TableSummary("rating_events", rows=1000)
    bad = checks.TableSummary("watch_events", rows=1000, out_of_range=1, duplicates=600)
    results = {(r.name, r.table): r for r in checks.evaluate([clean, bad], 30, 970, TH)}
    assert results["schema", "rating_events"].severity == "ok"
    assert results["schema", "watch_events"].severity == "fail"  # any invalid row blocks
    assert results["schema", "watch_events"].detail == "out_of_range=1"
    assert results["duplicates", "watch_events"].severity == "fail"
    assert results["dead_letters", "dead_letters"].rate == pytest.approx(0.03)
    assert results["dead_letters", "dead_letters"].severity == "ok"
    high = checks.evaluate([], 100, 900, TH)[0]
    assert (high.rate, high.severity) == (pytest.approx(0.1), "warn")


def test_schema_tolerance_is_configurable() -> None:
    s = checks.TableSummary("rating_events", rows=10_000, future=1)
    lenient = CheckThresholds(max_schema_error_rate=0.001)
    assert checks.evaluate([s], 0, 1, lenient)[0].severity == "warn"


def test_null_rates_of_metadata_only_warn() -> None:
    results = checks.null_rates("movies", {"runtime": 50, "title": 0}, 100, TH)
    assert [(r.name, r.severity) for r in results] == [
        ("nulls:runtime", "warn"),
        ("nulls:title", "ok"),
    ]
