"""Rating-poisoning detection: per-movie shifts against history and young-account extreme bursts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from movierec_ingestor.quality import stats
from movierec_ingestor.quality.settings import PoisoningThresholds

EXTREMES = (1, 5)


@dataclass(frozen=True)
class WindowRatings:
    """The newest window's rating events (one row per event)."""

    user_ids: NDArray[np.int64]
    movie_ids: NDArray[np.str_]
    ratings: NDArray[np.int64]
    times: NDArray[np.float64]  # epoch seconds


@dataclass(frozen=True)
class History:
    """What came before the window: per-movie rating histograms and per-user first sight."""

    movie_ids: NDArray[np.str_]
    rating_counts: NDArray[np.float64]  # (movies, 5), ratings 1..5 before the window
    user_ids: NDArray[np.int64]
    first_seen: NDArray[np.float64]  # epoch seconds of the user's first event of any kind
    total_ratings: NDArray[np.int64]  # the user's rated movies, all time
    span_hours: float = 0.0  # how far the rating history reaches back before the window


@dataclass
class PoisoningResult:
    """Suspect movies and users with their evidence, and the (user, movie) pairs to quarantine."""

    movies: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[tuple[int, str, str]] = field(default_factory=list)  # (user, movie, reason)
    movies_tested: int = 0
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "movies_tested": self.movies_tested,
            "suspect_movies": self.movies,
            "suspect_users": self.users,
            "quarantined_pairs": len(self.pairs),
            "truncated": self.truncated,
        }


def latest_pairs(w: WindowRatings) -> WindowRatings:
    """One row per (user, movie): the latest rating in the window, as `ratings` keeps it."""
    order = np.argsort(w.times, kind="stable")[::-1]
    keys = np.char.add(np.char.add(w.user_ids[order].astype(str), "\x00"), w.movie_ids[order])
    _, first = np.unique(keys, return_index=True)
    keep = np.sort(order[first])
    return WindowRatings(w.user_ids[keep], w.movie_ids[keep], w.ratings[keep], w.times[keep])


def detect(
    window: WindowRatings,
    history: History,
    window_start: float,
    th: PoisoningThresholds,
) -> PoisoningResult:
    """Find movies whose window ratings look pushed or nuked, and the young accounts behind them."""
    w = latest_pairs(window)
    result = PoisoningResult()
    if w.user_ids.size == 0:
        return result
    movies, movie_idx = np.unique(w.movie_ids, return_inverse=True)
    movie_idx = movie_idx.ravel()
    valid = np.isin(w.ratings, np.arange(1, 6))
    recent = np.zeros((movies.size, 5))
    np.add.at(recent, (movie_idx[valid], w.ratings[valid] - 1), 1.0)

    past = _align(movies, history)
    young = _young_accounts(w.user_ids, history, window_start, th)
    flags: dict[int, dict[str, Any]] = {}
    _shift_signal(recent, past, th=th, flags=flags, result=result)
    window_hours = max(float(w.times.max() - window_start) / 3600.0, th.burst_minutes / 60.0)
    # Rate per hour of each rating value per movie before the window.
    hourly = past / history.span_hours if history.span_hours > 0 else np.zeros_like(past)
    _burst_signal(
        w,
        movie_idx,
        young=young,
        hourly=hourly,
        window_hours=window_hours,
        th=th,
        flags=flags,
    )

    ranked = sorted(flags.items(), key=lambda kv: kv[1]["p_value"])
    result.movies = [{"movie_id": str(movies[m]), **ev} for m, ev in ranked[: th.max_movies]]
    _collect_users(
        w,
        movie_idx=movie_idx,
        movies=movies,
        young=young,
        history=history,
        flagged=dict(ranked[: th.max_movies]),
        th=th,
        result=result,
    )
    result.truncated = result.truncated or len(ranked) > th.max_movies
    return result


def _young_accounts(
    user_ids: NDArray[np.int64], history: History, window_start: float, th: PoisoningThresholds
) -> NDArray[np.bool_]:
    """Per window row: first seen recently and few ratings overall (unknown users are new)."""
    order = np.argsort(history.user_ids)
    sorted_ids = history.user_ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, user_ids), 0, max(sorted_ids.size - 1, 0))
    known = sorted_ids.size > 0
    found = (sorted_ids[pos] == user_ids) if known else np.zeros(user_ids.size, dtype=bool)
    first = np.where(found, history.first_seen[order][pos] if known else 0.0, np.inf)
    total = np.where(found, history.total_ratings[order][pos] if known else 0, 0)
    recent_first = first >= window_start - th.young_hours * 3600.0
    return np.asarray(recent_first & (total <= th.max_user_ratings), dtype=bool)


def _align(movies: NDArray[np.str_], history: History) -> NDArray[np.float64]:
    """History rating counts (movies, 5) in the order of `movies`; zeros for unseen movies."""
    past = np.zeros((movies.size, 5))
    if history.movie_ids.size:
        order = np.argsort(history.movie_ids)
        sorted_ids = history.movie_ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, movies), 0, sorted_ids.size - 1)
        found = sorted_ids[pos] == movies
        past[found] = history.rating_counts[order][pos[found]]
    return past


def _shift_signal(
    recent: NDArray[np.float64],
    past: NDArray[np.float64],
    *,
    th: PoisoningThresholds,
    flags: dict[int, dict[str, Any]],
    result: PoisoningResult,
) -> None:
    """Chi-squared of each movie's window ratings against its own history, with enough support."""
    n_past, n_recent = past.sum(axis=1), recent.sum(axis=1)
    eligible = np.flatnonzero((n_past >= th.min_history) & (n_recent >= th.min_recent))
    result.movies_tested = int(eligible.size)
    if eligible.size == 0:
        return
    stat, p_value, v = stats.chi2_rows(np.stack([past[eligible], recent[eligible]], axis=1))
    alpha = th.alpha / eligible.size
    values = np.arange(1, 6)
    for j in np.flatnonzero((p_value < alpha) & (v >= th.min_cramers_v)):
        m = int(eligible[j])
        share_past = past[m] / n_past[m]
        share_recent = recent[m] / n_recent[m]
        gain = share_recent - share_past
        value = 5 if gain[4] >= gain[0] else 1
        if gain[value - 1] < th.min_extreme_gain:
            continue
        flags[m] = {
            "signal": "shift",
            "value": value,
            "p_value": float(p_value[j]),
            "chi2": float(stat[j]),
            "cramers_v": float(v[j]),
            "n_history": int(n_past[m]),
            "n_recent": int(n_recent[m]),
            "mean_history": float(share_past @ values),
            "mean_recent": float(share_recent @ values),
        }


class _Timeline:
    """Rows keyed by (movie, time) in one sorted float array, for interval counts per movie."""

    def __init__(self, movie_idx: NDArray[np.int64], times: NDArray[np.float64], scale: float):
        self.scale = scale
        self.keys = np.sort(movie_idx * scale + times)

    def key(self, movie_idx: NDArray[np.int64], times: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(movie_idx * self.scale + times, dtype=np.float64)

    def count(
        self, movie_idx: NDArray[np.int64], start: NDArray[np.float64], width: float
    ) -> NDArray[np.int64]:
        """Rows of each movie in [start, start + width)."""
        lo = np.searchsorted(self.keys, self.key(movie_idx, start), side="left")
        hi = np.searchsorted(self.keys, self.key(movie_idx, start + width), side="left")
        return np.asarray(hi - lo, dtype=np.int64)


def _densest(
    movie_idx: NDArray[np.int64], times: NDArray[np.float64], width: float, scale: float, n: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per movie: the most rows in any [t, t + width) that starts at one of its rows, and t."""
    best, start = np.zeros(n), np.zeros(n)
    if movie_idx.size == 0:
        return best, start
    line = _Timeline(movie_idx, times, scale)
    count = line.count(movie_idx, times, width)
    order = np.lexsort((-count, movie_idx))  # per movie, the largest count first
    first = order[np.unique(movie_idx[order], return_index=True)[1]]
    best[movie_idx[first]] = count[first]
    start[movie_idx[first]] = times[first]
    return best, start


def _burst_signal(
    w: WindowRatings,
    movie_idx: NDArray[np.int64],
    *,
    young: NDArray[np.bool_],
    hourly: NDArray[np.float64],
    window_hours: float,
    th: PoisoningThresholds,
    flags: dict[int, dict[str, Any]],
) -> None:
    """Movies where young accounts gave one extreme value in a short burst, far beyond its past.

    For each movie and value the densest `burst_minutes` interval of young accounts giving that
    value is compared with the movie's own past rate of it (at least `min_expected`, so a movie
    without history is not judged against zero): a Poisson excess, corrected for scanning the
    window (× window / burst) and for the movies tested (Bonferroni). A coordinated attack is a
    volume anomaly of one value on one movie in little time, agreed on by the young accounts
    present; an organic new cohort spreads its ratings over the window and over values.
    """
    n_movies = hourly.shape[0]
    width = th.burst_minutes * 60.0
    offset = float(w.times.min())
    times = w.times - offset
    scale = float(times.max()) + 2 * width + 1.0
    everyone = _Timeline(movie_idx, times, scale)
    youngsters = _Timeline(movie_idx[young], times[young], scale)
    movies = np.arange(n_movies)
    scans = max(window_hours * 60.0 / th.burst_minutes, 1.0)
    alpha = th.alpha / max(2 * n_movies, 1)
    for value in EXTREMES:
        hit = young & (w.ratings == value)
        hits, start = _densest(movie_idx[hit], times[hit], width, scale, n_movies)
        in_burst = everyone.count(movies, start, width)
        young_in_burst = youngsters.count(movies, start, width)
        candidates = np.flatnonzero(
            (hits >= th.min_burst_accounts)
            & (hits >= th.min_burst_share * in_burst)
            & (hits >= th.min_young_agreement * young_in_burst)
        )
        if candidates.size == 0:
            continue
        lam = np.maximum(hourly[candidates, value - 1] * width / 3600.0, th.min_expected)
        p = np.minimum(stats.poisson_excess(hits[candidates], lam) * scans, 1.0)
        for m_raw, p_m, lam_m in zip(candidates, p, lam, strict=True):
            if p_m >= alpha:
                continue
            m = int(m_raw)
            evidence = {
                "signal": "young_burst",
                "value": value,
                "p_value": float(p_m),
                "young_accounts": int(hits[m]),
                "young_raters": int(young_in_burst[m]),
                "n_burst": int(in_burst[m]),
                "expected": float(lam_m),
                "burst_start": float(start[m] + offset),
                "burst_minutes": th.burst_minutes,
            }
            if m in flags:
                evidence = {**flags[m], **evidence, "signal": "shift+young_burst"}
                evidence["p_value"] = min(float(p_m), flags[m]["p_value"])
            flags[m] = evidence


def _collect_users(
    w: WindowRatings,
    *,
    movie_idx: NDArray[np.int64],
    movies: NDArray[np.str_],
    young: NDArray[np.bool_],
    history: History,
    flagged: dict[int, dict[str, Any]],
    th: PoisoningThresholds,
    result: PoisoningResult,
) -> None:
    """Young accounts that gave a flagged movie its suspicious value (within the burst, if that
    is the evidence), and only their ratings of that session: the target rating and those
    within `session_minutes` of it (the camouflage a fake account makes on its way in). An
    honest newcomer caught rating the target during an attack keeps every rating made at
    another time."""
    if not flagged:
        return
    target_value = np.zeros(movies.size, dtype=np.int64)
    lo, hi = np.full(movies.size, -np.inf), np.full(movies.size, np.inf)
    for m, ev in flagged.items():
        target_value[m] = ev["value"]
        if ev["signal"] == "young_burst":  # a shift is evidence about the whole window
            # the densest interval and one on either side: an attack is rarely cut to fit it
            burst = ev["burst_minutes"] * 60.0
            lo[m] = ev["burst_start"] - burst
            hi[m] = ev["burst_start"] + 2 * burst
    in_time = (w.times >= lo[movie_idx]) & (w.times < hi[movie_idx])
    on_target = (
        young & in_time & (target_value[movie_idx] > 0) & (w.ratings == target_value[movie_idx])
    )
    suspects, target_rows = np.unique(w.user_ids[on_target], return_index=True)
    target_row = np.flatnonzero(on_target)[target_rows]
    if suspects.size > th.max_users:
        result.truncated = True
        suspects, target_row = suspects[: th.max_users], target_row[: th.max_users]
    first_seen = dict(zip(history.user_ids.tolist(), history.first_seen.tolist(), strict=True))
    session = th.session_minutes * 60.0
    per_user: dict[int, list[int]] = {}
    for row in np.flatnonzero(np.isin(w.user_ids, suspects)).tolist():
        per_user.setdefault(int(w.user_ids[row]), []).append(row)
    for user, t_row in zip(suspects.tolist(), target_row.tolist(), strict=True):
        m = int(movie_idx[t_row])
        target = str(movies[m])
        ev = flagged[m]
        t0 = float(w.times[t_row])
        rows = [r for r in per_user[user] if abs(float(w.times[r]) - t0) <= session]
        user_ratings = w.ratings[per_user[user]]
        result.users.append(
            {
                "user_id": user,
                "target": target,
                "value": int(ev["value"]),
                "first_seen": first_seen.get(user),
                "window_ratings": len(per_user[user]),
                "session_ratings": len(rows),
                "extreme_share": float(np.isin(user_ratings, EXTREMES).mean()),
            }
        )
        evidence = f"{ev['signal']} p={ev['p_value']:.2g}, account first seen " + (
            "in the window" if first_seen.get(user) is None else f"at {first_seen[user]:.0f}"
        )
        for r in rows:
            movie = str(w.movie_ids[r])
            if movie == target:
                reason = f"shilling target {target}: rated {ev['value']} ({evidence})"
            else:
                reason = f"shilling session ({target}): rated within {th.session_minutes:g} min"
            result.pairs.append((user, movie, reason))
