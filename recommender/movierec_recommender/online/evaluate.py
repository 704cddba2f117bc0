"""Online metrics per track from exposures and the outcomes ingested after them (watches, ratings)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from movierec_recommender.demographics import age_bucket
from movierec_recommender.online import stats
from movierec_recommender.online.exposures import Exposure

Predictor = Callable[[Sequence[str], Sequence[str]], np.ndarray]


@dataclass
class TrackReport:
    track: str
    model_versions: list[str]
    requests: int
    success_rate: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    engagement_rate: float  # mean share of an answer's recommended movies that got watched
    session_engagement_rate: float  # share of answers after which at least one was watched
    users: int
    online_rmse: float
    rmse_samples: int
    engagement_by_group: dict[str, dict[str, float]] = field(default_factory=dict)
    disparity: dict[str, float] = field(default_factory=dict)
    exposure_gini: float = float("nan")
    popular_share: float = float("nan")
    coverage: int = 0


@dataclass
class ABResult:
    experiment: str
    track_a: str
    track_b: str
    request_test: stats.ProportionTest  # answers followed by any watch (z-test)
    user_test: stats.MeanTest  # per-user mean share of recommendations watched (Welch): primary


@dataclass
class OnlineReport:
    tracks: dict[str, TrackReport]
    ab: list[ABResult]
    window_minutes: float

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isnan(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return clean(
            {
                "window_minutes": self.window_minutes,
                "tracks": {k: vars(t) for k, t in self.tracks.items()},
                "ab": [
                    {
                        "experiment": r.experiment,
                        "a": r.track_a,
                        "b": r.track_b,
                        "request_level": vars(r.request_test),
                        "user_level": vars(r.user_test),
                    }
                    for r in self.ab
                ],
            }
        )


def exposures_frame(exposures: Sequence[Exposure]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "exposure_id": np.arange(len(exposures)),
            "time": pd.to_datetime([e.time for e in exposures]),
            "user_id": np.array([e.user_id for e in exposures], dtype=np.int64),
            "track": [e.track for e in exposures],
            "model_version": [e.model_version for e in exposures],
            "items": [list(e.items) for e in exposures],
            "status": np.array([e.status for e in exposures], dtype=np.int64),
            "latency_ms": np.array([e.latency_ms for e in exposures], dtype=float),
        }
    )


def load_outcomes(
    db_url: str, user_ids: np.ndarray, since: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """Watches, ratings after `since` and demographics of the exposed users, from the store."""
    from movierec_ingestor.db import create_engine

    engine = create_engine(
        db_url
    )  # every URL form (`postgresql://` means psycopg2), bounded connect
    ids = sorted({int(u) for u in user_ids})
    frames: dict[str, list[pd.DataFrame]] = {"watches": [], "ratings": [], "users": []}
    queries = {
        "watches": "SELECT user_id, movie_id, time FROM watch_events "
        "WHERE time >= :since AND user_id IN :ids",
        "ratings": "SELECT user_id, movie_id, time, rating FROM rating_events "
        "WHERE time >= :since AND user_id IN :ids",
        "users": "SELECT user_id, age, gender FROM users WHERE user_id IN :ids",
    }
    try:
        with engine.connect() as conn:
            for start in range(0, len(ids), 5000):  # bounded IN lists
                chunk = ids[start : start + 5000]
                for name, sql in queries.items():
                    stmt = sa.text(sql).bindparams(sa.bindparam("ids", expanding=True))
                    params: dict[str, Any] = {"ids": chunk, "since": since.to_pydatetime()}
                    frames[name].append(pd.read_sql(stmt, conn, params=params))
    finally:
        engine.dispose()
    out = {k: pd.concat(v, ignore_index=True) if v else pd.DataFrame() for k, v in frames.items()}
    for name in ("watches", "ratings"):
        if len(out[name]):
            out[name]["time"] = pd.to_datetime(out[name]["time"])
            out[name]["user_id"] = out[name]["user_id"].astype(np.int64)
    return out


def evaluate(
    exposures: Sequence[Exposure],
    db_url: str,
    predictors: dict[str, Predictor] | None = None,
    *,
    window: timedelta = timedelta(hours=2),
    popular_items: set[str] | None = None,
    min_group_size: int = 20,
) -> OnlineReport:
    """Engagement, online RMSE, latency, fairness and exposure concentration per track, and A/B tests."""
    if not exposures:
        raise ValueError("no exposures to evaluate")
    exp = exposures_frame(exposures)
    outcomes = load_outcomes(db_url, exp["user_id"].to_numpy(), exp["time"].min())
    return evaluate_frames(
        exp,
        outcomes,
        predictors or {},
        window=window,
        popular_items=popular_items or set(),
        min_group_size=min_group_size,
    )


def evaluate_frames(
    exp: pd.DataFrame,
    outcomes: dict[str, pd.DataFrame],
    predictors: dict[str, Predictor],
    *,
    window: timedelta,
    popular_items: set[str],
    min_group_size: int,
) -> OnlineReport:
    ok = exp[exp["status"] == 200]
    shown = ok[["exposure_id", "time", "user_id", "track", "items"]].explode("items")
    shown = shown.dropna(subset=["items"]).rename(columns={"items": "movie_id"})
    shown["movie_id"] = shown["movie_id"].astype(str)

    watched = _engaged_items(shown, outcomes["watches"], window)
    per_exposure = ok[["exposure_id", "user_id", "track"]].copy()
    # Engagement is the share of recommended movies watched: "any of 20 watched" saturates
    # quickly for decent models and hides real differences between them.
    hits = watched.groupby("exposure_id").size()
    sizes = shown.groupby("exposure_id").size()
    per_exposure["engaged"] = (
        per_exposure["exposure_id"].map(hits).fillna(0)
        / per_exposure["exposure_id"].map(sizes).fillna(0).clip(lower=1)
    ).astype(float)
    per_exposure["any_watched"] = per_exposure["exposure_id"].isin(watched["exposure_id"])
    per_exposure = _with_groups(per_exposure, outcomes["users"])
    rated = rated_after(shown, outcomes["ratings"])

    tracks: dict[str, TrackReport] = {}
    for track, rows in exp.groupby("track", sort=True):
        t_ok = per_exposure[per_exposure["track"] == track]
        t_shown = shown[shown["track"] == track]
        lat = rows["latency_ms"].to_numpy()
        rmse, n_rmse = online_rmse(rated[rated["track"] == track], predictors.get(str(track)))
        counts = t_shown["movie_id"].value_counts().to_numpy()
        by_group = {
            attr: _group_rates(t_ok, attr, min_group_size) for attr in ("age_group", "gender")
        }
        tracks[str(track)] = TrackReport(
            track=str(track),
            model_versions=sorted(rows["model_version"].unique().tolist()),
            requests=len(rows),
            success_rate=float((rows["status"] == 200).mean()),
            latency_p50_ms=stats.percentile(lat, 50),
            latency_p95_ms=stats.percentile(lat, 95),
            latency_p99_ms=stats.percentile(lat, 99),
            engagement_rate=float(t_ok["engaged"].mean()) if len(t_ok) else float("nan"),
            session_engagement_rate=(
                float(t_ok["any_watched"].mean()) if len(t_ok) else float("nan")
            ),
            users=int(rows["user_id"].nunique()),
            online_rmse=rmse,
            rmse_samples=n_rmse,
            engagement_by_group=by_group,
            disparity={a: stats.disparity_ratio(g) for a, g in by_group.items()},
            exposure_gini=stats.gini(counts),
            popular_share=(
                float(t_shown["movie_id"].isin(popular_items).mean())
                if popular_items and len(t_shown)
                else float("nan")
            ),
            coverage=int(t_shown["movie_id"].nunique()),
        )

    ab = [_ab_test(per_exposure, a, b) for a, b in combinations(sorted(tracks), 2)]
    return OnlineReport(tracks=tracks, ab=ab, window_minutes=window.total_seconds() / 60)


def _engaged_items(shown: pd.DataFrame, watches: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """Shown items the user started watching within `window` after the exposure, with the
    first such watch line's `watch_time` and `minute`.

    An as-of join: each shown row meets at most one watch line (the first at or after it), so
    memory stays the size of `shown`. A plain merge on (user, movie) paired every exposure of a
    movie with every minute the user ever watched of it, and ran a pod out of memory.
    """
    if watches.empty or shown.empty:
        return shown.iloc[0:0]
    return _as_of(shown, watches, "forward", shown["time"], window).drop_duplicates(
        ["exposure_id", "movie_id"]
    )


def last_watch_within(
    shown: pd.DataFrame, watches: pd.DataFrame, window: timedelta
) -> pd.DataFrame:
    """Per shown row, the last watch line of that (user, movie) inside [exposure, exposure +
    window]: how far the view that started in the window got (rows without one are left out)."""
    if watches.empty or shown.empty:
        return shown.iloc[0:0].assign(watch_time=pd.Series(dtype="datetime64[ns]"), minute=0)
    return _as_of(shown, watches, "backward", shown["time"] + window, window)


def _as_of(
    shown: pd.DataFrame,
    watches: pd.DataFrame,
    direction: str,
    at: pd.Series,
    window: timedelta,
) -> pd.DataFrame:
    """`shown` rows joined with the nearest watch line of the same (user, movie) looking
    `direction` from `at`, kept when that line lies inside [time, time + window]."""
    columns = ["user_id", "movie_id", "time", *(["minute"] if "minute" in watches else [])]
    w = watches[columns].rename(columns={"time": "watch_time"})
    w = w.assign(watch_time=pd.to_datetime(w["watch_time"]).astype("datetime64[ns]"))
    w = w.sort_values("watch_time")
    left = shown.assign(_at=pd.to_datetime(at).astype("datetime64[ns]")).sort_values("_at")
    merged = pd.merge_asof(
        left, w, left_on="_at", right_on="watch_time", by=["user_id", "movie_id"],
        direction=direction,  # type: ignore[arg-type]
    )  # fmt: skip
    inside = (merged["watch_time"] >= merged["time"]) & (
        merged["watch_time"] <= merged["time"] + window
    )
    return merged[inside.fillna(False)].drop(columns=["_at"])


def rated_after(
    shown: pd.DataFrame, ratings: pd.DataFrame, by: Sequence[str] = ("track",)
) -> pd.DataFrame:
    """Shown (user, movie) pairs, per `by` column, with a rating given after the exposure: online
    RMSE's ground truth (the first rating after the first exposure)."""
    keys = [*by, "user_id", "movie_id"]
    if ratings.empty or shown.empty:
        return pd.DataFrame(columns=[*keys, "rating"])
    r = ratings.rename(columns={"time": "rating_time"})
    # after any exposure = after the first one: one row per pair keeps the join small
    first = shown.groupby(keys, as_index=False)["time"].min()
    merged = first.merge(r, on=["user_id", "movie_id"], how="inner")
    merged = merged[merged["rating_time"] > merged["time"]]
    return merged.sort_values("rating_time").drop_duplicates(keys)


def online_rmse(rated: pd.DataFrame, predictor: Predictor | None) -> tuple[float, int]:
    """RMSE of a model version's predicted ratings for `rated_after` pairs, and their number."""
    if predictor is None or rated.empty:
        return float("nan"), 0
    preds = predictor(rated["user_id"].astype(str).tolist(), rated["movie_id"].tolist())
    return stats.rmse(rated["rating"].to_numpy(dtype=float), preds), len(rated)


def _with_groups(per_exposure: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    if users.empty:
        per_exposure["age_group"] = "unknown"
        per_exposure["gender"] = "unknown"
        return per_exposure
    u = users.drop_duplicates("user_id").copy()
    u["user_id"] = u["user_id"].astype(np.int64)
    ages = pd.to_numeric(u["age"], errors="coerce")
    u["age_group"] = [age_bucket(a) or "unknown" for a in ages.to_numpy(dtype=float)]
    u["gender"] = u["gender"].fillna("unknown").astype(str)
    out = per_exposure.merge(u[["user_id", "age_group", "gender"]], on="user_id", how="left")
    return out.fillna({"age_group": "unknown", "gender": "unknown"})


def _group_rates(rows: pd.DataFrame, attr: str, min_size: int) -> dict[str, float]:
    g = rows.groupby(attr)["engaged"].agg(["mean", "size"])
    g = g[(g["size"] >= min_size) & (g.index != "unknown") & (g.index != "nan")]
    return {str(k): float(v) for k, v in g["mean"].items()}


def _ab_test(per_exposure: pd.DataFrame, a: str, b: str) -> ABResult:
    ea = per_exposure[per_exposure["track"] == a]
    eb = per_exposure[per_exposure["track"] == b]
    req = stats.two_proportion_ztest(
        int(ea["any_watched"].sum()),
        max(len(ea), 1),
        int(eb["any_watched"].sum()),
        max(len(eb), 1),
    )
    ua = ea.groupby("user_id")["engaged"].mean().to_numpy()
    ub = eb.groupby("user_id")["engaged"].mean().to_numpy()
    return ABResult(f"{a}_vs_{b}", a, b, req, stats.welch_ttest(ua, ub))
