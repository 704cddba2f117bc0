"""Schema, range and hygiene checks of the newest window: invalid rows, duplicates, nulls, dead letters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from movierec_ingestor.events import SLUG_RE
from movierec_ingestor.quality.settings import CheckThresholds

Severity = Literal["ok", "warn", "fail", "skipped"]
MAX_USER_ID = 2**62


@dataclass
class TableSummary:
    """Counts of problems in one table's newest window; the gate decides on their rates."""

    table: str
    rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)  # required columns only
    out_of_range: int = 0  # rating outside 1..5, negative minute
    bad_ids: int = 0  # user id not a non-negative int, movie id not a slug
    future: int = 0
    too_old: int = 0  # counted over the whole table: such rows never fall into a window
    duplicates: int = 0  # rows repeating the content of another row with a new time

    @property
    def schema_errors(self) -> int:
        return (
            sum(self.nulls.values()) + self.out_of_range + self.bad_ids + self.future + self.too_old
        )


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict with the numbers behind it."""

    name: str
    table: str
    count: int
    total: int
    rate: float
    severity: Severity
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def invalid_movie_ids(movie_ids: ArrayLike) -> int:
    """Movie ids that are not slugs; each distinct value is matched once."""
    values, counts = np.unique(np.asarray(movie_ids, dtype=object).astype(str), return_counts=True)
    bad = np.fromiter(
        (len(v) == 0 or len(v) > 200 or SLUG_RE.match(v) is None for v in values),
        dtype=bool,
        count=values.size,
    )
    return int(counts[bad].sum())


def invalid_user_ids(user_ids: ArrayLike) -> int:
    """User ids outside 0..2^62."""
    ids = np.asarray(user_ids, dtype=np.float64)
    return int(np.count_nonzero(~np.isfinite(ids) | (ids < 0) | (ids > MAX_USER_ID)))


def time_violations(times: ArrayLike, now: float, th: CheckThresholds) -> tuple[int, int]:
    """(future, too_old) counts for epoch-second times against `now`."""
    t = np.asarray(times, dtype=np.float64)
    future = int(np.count_nonzero(t > now + th.future_skew_seconds))
    floor = (th.oldest_time - datetime(1970, 1, 1)).total_seconds()
    too_old = int(np.count_nonzero(t < floor))
    return future, too_old


def duplicate_rows(*columns: ArrayLike) -> int:
    """Rows whose combination of `columns` already appeared in an earlier row."""
    cols = [np.asarray(c) for c in columns]
    if not cols or cols[0].size == 0:
        return 0
    codes = np.stack([np.unique(c, return_inverse=True)[1].ravel() for c in cols], axis=1)
    return int(codes.shape[0] - np.unique(codes, axis=0).shape[0])


def summarize_ratings(
    user_ids: ArrayLike,
    movie_ids: ArrayLike,
    *,
    ratings: NDArray[np.float64],
    times: NDArray[np.float64],
    now: float,
    th: CheckThresholds,
) -> TableSummary:
    """Problems among the window's rating events; NaN marks a NULL in numeric columns."""
    users = np.asarray(user_ids, dtype=np.float64)
    movies = np.asarray(movie_ids, dtype=object)
    ratings = np.asarray(ratings, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    movie_null = np.fromiter((m is None for m in movies), dtype=bool, count=movies.size)
    nulls = {
        "user_id": int(np.isnan(users).sum()),
        "movie_id": int(movie_null.sum()),
        "rating": int(np.isnan(ratings).sum()),
        "time": int(np.isnan(times).sum()),
    }
    r = ratings[~np.isnan(ratings)]
    out_of_range = int(np.count_nonzero((r < 1) | (r > 5) | (r != np.round(r))))
    future, too_old = time_violations(times[~np.isnan(times)], now, th)
    movie_text = movies[~movie_null].astype(str)
    return TableSummary(
        table="rating_events",
        rows=int(users.size),
        nulls=nulls,
        out_of_range=out_of_range,
        bad_ids=invalid_user_ids(users[~np.isnan(users)]) + invalid_movie_ids(movie_text),
        future=future,
        too_old=too_old,
        duplicates=duplicate_rows(
            np.nan_to_num(users, nan=-1), movies.astype(str), np.nan_to_num(ratings, nan=-1)
        ),
    )


def _rate(count: int, total: int) -> float:
    return count / total if total else 0.0


def evaluate(
    summaries: list[TableSummary],
    dead_letters: int,
    valid_events: int,
    th: CheckThresholds,
) -> list[CheckResult]:
    """Verdicts for schema errors and duplicates per table and the window's dead-letter rate."""
    results: list[CheckResult] = []
    for s in summaries:
        errors = s.schema_errors
        rate = _rate(errors, s.rows)
        parts = [f"{k}={v}" for k, v in s.nulls.items() if v]
        parts += [
            f"{k}={v}"
            for k, v in (
                ("out_of_range", s.out_of_range),
                ("bad_ids", s.bad_ids),
                ("future", s.future),
                ("too_old", s.too_old),
            )
            if v
        ]
        severity: Severity = (
            "fail" if errors and rate > th.max_schema_error_rate else ("warn" if errors else "ok")
        )
        results.append(
            CheckResult("schema", s.table, errors, s.rows, rate, severity, ", ".join(parts))
        )
        dup_rate = _rate(s.duplicates, s.rows)
        results.append(
            CheckResult(
                "duplicates",
                s.table,
                s.duplicates,
                s.rows,
                dup_rate,
                _band(dup_rate, th.duplicate_warn, th.duplicate_fail),
            )
        )
    total = dead_letters + valid_events
    dl_rate = _rate(dead_letters, total)
    results.append(
        CheckResult(
            "dead_letters",
            "dead_letters",
            dead_letters,
            total,
            dl_rate,
            _band(dl_rate, th.dead_letter_warn, th.dead_letter_fail),
        )
    )
    return results


def null_rates(
    table: str, nulls: dict[str, int], rows: int, th: CheckThresholds
) -> list[CheckResult]:
    """Null rates of optional columns (metadata): reported, warned on, never blocking."""
    return [
        CheckResult(
            f"nulls:{col}",
            table,
            n,
            rows,
            _rate(n, rows),
            "warn" if _rate(n, rows) > th.null_warn else "ok",
        )
        for col, n in nulls.items()
    ]


def _band(rate: float, warn: float, fail: float) -> Severity:
    if rate > fail:
        return "fail"
    return "warn" if rate > warn else "ok"
