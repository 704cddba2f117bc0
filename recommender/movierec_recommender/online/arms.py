"""Online metrics per arm (track and model version) from exposures and later outcomes (pure)."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from movierec_recommender.demographics import age_bucket, gender_group
from movierec_recommender.online import abtest, feedback, stats
from movierec_recommender.online.evaluate import (
    Predictor,
    _engaged_items,
    last_watch_within,
    online_rmse,
    rated_after,
)

# (model name, model version) -> a rating predictor for that version, or None when unavailable
PredictorFor = Callable[[str, str], Predictor | None]

EXPOSURE_COLUMNS = (
    "time", "user_id", "track", "model_name", "model_version", "items", "status", "latency_ms",
)  # fmt: skip


@dataclass(frozen=True)
class ArmSettings:
    """What the arms are judged on and how many label values the export may carry."""

    window: timedelta = timedelta(hours=2)  # a watch counts if it starts this soon after
    latency_budget_ms: float = 800.0  # the course's success: status 200 within 800 ms
    min_group_size: int = 20  # exposures a demographic group needs to enter fairness
    popular_items: frozenset[str] = frozenset()
    catalogue_size: int = 0
    max_tracks: int = 4
    max_versions_per_track: int = 2
    max_genders: int = 3
    baseline_track: str = "stable"
    ab_alpha: float = 0.05
    ab_power: float = 0.8
    ab_min_effect: float = 0.05  # relative to the baseline's mean engagement


@dataclass
class ArmReport:
    track: str
    model_version: str
    requests: int
    users: int
    success_rate: float
    latency_seconds: dict[str, float]  # quantile ("0.5", "0.95", "0.99") -> seconds
    engagement_rate: float
    engagement_samples: int  # answers old enough to judge engagement on
    completion: float
    online_rmse: float
    rmse_samples: int
    engagement_by_group: dict[str, float] = field(default_factory=dict)  # "gender:F" -> rate
    disparity: dict[str, float] = field(default_factory=dict)  # attribute -> lowest/highest
    # attribute -> lowest over its groups of this arm's engagement / the baseline arm's in the
    # same group (the baseline track's current arm has none)
    group_ratio: dict[str, float] = field(default_factory=dict)
    exposure_gini: float = math.nan
    popular_share: float = math.nan
    coverage: float = math.nan
    self_confirmation: float = math.nan
    self_confirmation_samples: int = 0


@dataclass
class ABReport:
    experiment: str  # "<baseline track>_vs_<other track>"
    arm_a: tuple[str, str]
    arm_b: tuple[str, str]
    comparison: abtest.Comparison


@dataclass
class Snapshot:
    arms: list[ArmReport]
    ab: list[ABReport]
    exposures: int
    dropped_exposures: int  # in arms beyond the label bounds


def exposures_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Normalised exposures: ids, types, unknown track/version as "unknown", an exposure id."""
    exp = rows.reset_index(drop=True).copy()
    exp["exposure_id"] = np.arange(len(exp))
    exp["time"] = pd.to_datetime(exp["time"])
    exp["user_id"] = exp["user_id"].astype(np.int64)
    for column in ("track", "model_name", "model_version"):
        exp[column] = exp[column].fillna("unknown").astype(str).replace("", "unknown")
    exp["status"] = exp["status"].astype(np.int64)
    exp["latency_ms"] = pd.to_numeric(exp["latency_ms"], errors="coerce").astype(float)
    return exp


def bounded_arms(exp: pd.DataFrame, settings: ArmSettings) -> list[tuple[str, str]]:
    """The arms that get labels: busiest tracks, and each track's most recently served versions."""
    tracks = exp["track"].value_counts()
    ordered = sorted(tracks.index, key=lambda t: (-tracks[t], t))[: settings.max_tracks]
    arms = []
    for track in sorted(ordered):
        latest = exp[exp["track"] == track].groupby("model_version")["time"].max()
        versions = sorted(latest.index, key=lambda v: (-latest[v].value, v))
        arms += [(track, v) for v in versions[: settings.max_versions_per_track]]
    return arms


def evaluate_arms(
    exp: pd.DataFrame,
    outcomes: dict[str, pd.DataFrame],
    predictor_for: PredictorFor,
    settings: ArmSettings,
    as_of: datetime | None = None,
) -> Snapshot:
    """Every online metric per arm, and the A/B comparison of each track with the baseline.

    With `as_of`, engagement, completion, fairness and the A/B test use only answers at least one
    engagement window old: a younger answer has not had its whole window yet, and counting it
    would make a fresh canary (all of its answers young) look less engaging than stable.
    """
    arms = bounded_arms(exp, settings)
    keep = pd.Series(list(zip(exp["track"], exp["model_version"], strict=True))).isin(arms)
    dropped = int((~keep).sum())
    exp = exp[keep.to_numpy()]
    ok = exp[exp["status"] == 200]
    shown = ok[["exposure_id", "time", "user_id", "track", "model_version", "items"]].explode(
        "items"
    )
    shown = shown.dropna(subset=["items"]).rename(columns={"items": "movie_id"})
    shown["movie_id"] = shown["movie_id"].astype(str)

    watches = outcomes.get("watches", pd.DataFrame())
    hits = _engaged_items(shown, watches, settings.window)
    mature = ok if as_of is None else ok[ok["time"] <= as_of - settings.window]
    per_exposure = mature[["exposure_id", "user_id", "track", "model_version"]].copy()
    n_hits = hits.groupby("exposure_id").size()
    n_shown = shown.groupby("exposure_id").size()
    per_exposure["engaged"] = (
        per_exposure["exposure_id"].map(n_hits).fillna(0)
        / per_exposure["exposure_id"].map(n_shown).fillna(0).clip(lower=1)
    ).astype(float)
    per_exposure = with_groups(per_exposure, outcomes.get("users", pd.DataFrame()), settings)
    completion = _completion(
        shown, watches, outcomes.get("movies", pd.DataFrame()), settings.window
    )
    ratings = outcomes.get("ratings", pd.DataFrame())

    reports = []
    for track, version in arms:
        rows = exp[(exp["track"] == track) & (exp["model_version"] == version)]
        arm_ok = per_exposure[
            (per_exposure["track"] == track) & (per_exposure["model_version"] == version)
        ]
        arm_shown = shown[(shown["track"] == track) & (shown["model_version"] == version)]
        latency = rows["latency_ms"].to_numpy(dtype=float)
        success = (rows["status"] == 200) & (rows["latency_ms"] <= settings.latency_budget_ms)
        names = rows["model_name"].value_counts()
        rmse, n_rmse = online_rmse(
            rated_after(arm_shown, ratings, by=()), predictor_for(str(names.index[0]), version)
        )
        by_group = {
            attr: group_rates(arm_ok, attr, settings.min_group_size)
            for attr in ("age_group", "gender")
        }
        arm_users = rows["user_id"].unique()
        confirm, n_confirm = (
            feedback.self_confirmation(arm_shown, ratings[ratings["user_id"].isin(arm_users)])
            if not ratings.empty
            else (math.nan, 0)
        )
        arm_completion = completion[completion["exposure_id"].isin(arm_ok["exposure_id"])][
            "completion"
        ]
        reports.append(
            ArmReport(
                track=track,
                model_version=version,
                requests=len(rows),
                users=len(arm_users),
                success_rate=float(success.mean()) if len(rows) else math.nan,
                latency_seconds={
                    q: stats.percentile(latency, float(q) * 100) / 1000
                    for q in ("0.5", "0.95", "0.99")
                },
                engagement_rate=float(arm_ok["engaged"].mean()) if len(arm_ok) else math.nan,
                engagement_samples=len(arm_ok),
                completion=float(arm_completion.mean()) if len(arm_completion) else math.nan,
                online_rmse=rmse,
                rmse_samples=n_rmse,
                engagement_by_group={
                    f"{attr}:{g}": rate
                    for attr, groups in by_group.items()
                    for g, rate in groups.items()
                },
                disparity={attr: stats.disparity_ratio(g) for attr, g in by_group.items()},
                exposure_gini=feedback.exposure_gini(arm_shown["movie_id"]),
                popular_share=feedback.popular_share(arm_shown["movie_id"], settings.popular_items),
                coverage=feedback.catalogue_coverage(
                    arm_shown["movie_id"], settings.catalogue_size
                ),
                self_confirmation=confirm,
                self_confirmation_samples=n_confirm,
            )
        )
    _add_group_ratios(reports, settings.baseline_track)
    return Snapshot(reports, ab_tests(per_exposure, arms, settings), len(exp) + dropped, dropped)


def group_ratios(arm: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Per attribute, the worst-off group's engagement relative to the baseline's in that group.

    Keys are ``"attribute:group"`` as in `ArmReport.engagement_by_group`; a group counts when
    both arms have it (each with enough exposures) and the baseline's rate is above zero. Unlike
    the disparity ratio (lowest over highest group within one arm), this does not mistake how
    groups differ anyway (one group simply watches more) for what the new model does to them.
    """
    worst: dict[str, float] = {}
    for key, rate in arm.items():
        base = baseline.get(key)
        if base is None or not base > 0 or math.isnan(rate):
            continue
        attr = key.split(":", 1)[0]
        worst[attr] = min(worst.get(attr, math.inf), rate / base)
    return worst


def _add_group_ratios(reports: list[ArmReport], baseline_track: str) -> None:
    """Fill `group_ratio` of every arm outside the baseline track (in place)."""
    base = next((r for r in reports if r.track == baseline_track), None)  # most recent first
    if base is None:
        return
    for report in reports:
        if report.track != baseline_track:
            report.group_ratio = group_ratios(report.engagement_by_group, base.engagement_by_group)


def ab_tests(
    per_exposure: pd.DataFrame, arms: Sequence[tuple[str, str]], settings: ArmSettings
) -> list[ABReport]:
    """Each other track's current arm against the baseline track's, on per-user engagement.

    The user is the randomisation unit (the router assigns users, not requests), so each user
    contributes one value per arm: the mean share of their recommendations they watched.
    """
    current: dict[str, tuple[str, str]] = {}
    for track, version in arms:  # bounded_arms lists each track's most recent version first
        current.setdefault(track, (track, version))
    if len(current) < 2:
        return []
    base = settings.baseline_track if settings.baseline_track in current else min(current)

    def per_user(arm: tuple[str, str]) -> np.ndarray:
        rows = per_exposure[
            (per_exposure["track"] == arm[0]) & (per_exposure["model_version"] == arm[1])
        ]
        return rows.groupby("user_id")["engaged"].mean().to_numpy()

    out = []
    for track in sorted(current):
        if track == base:
            continue
        comparison = abtest.compare(
            per_user(current[base]),
            per_user(current[track]),
            alpha=settings.ab_alpha,
            power=settings.ab_power,
            min_effect=settings.ab_min_effect,
        )
        out.append(ABReport(f"{base}_vs_{track}", current[base], current[track], comparison))
    return out


def with_groups(
    per_exposure: pd.DataFrame, users: pd.DataFrame, settings: ArmSettings
) -> pd.DataFrame:
    """Adds age band and gender (the `max_genders` most common; others "unknown")."""
    out = per_exposure.copy()
    if users.empty:
        out["age_group"] = "unknown"
        out["gender"] = "unknown"
        return out
    u = users.drop_duplicates("user_id").copy()
    u["user_id"] = u["user_id"].astype(np.int64)
    ages = pd.to_numeric(u["age"], errors="coerce").to_numpy(dtype=float)
    u["age_group"] = [age_bucket(a) or "unknown" for a in ages]
    u["gender"] = [gender_group(g) or "unknown" for g in u["gender"].tolist()]
    common = u.loc[u["gender"] != "unknown", "gender"].value_counts().index[: settings.max_genders]
    u.loc[~u["gender"].isin(common), "gender"] = "unknown"
    out = out.merge(u[["user_id", "age_group", "gender"]], on="user_id", how="left")
    return out.fillna({"age_group": "unknown", "gender": "unknown"})


def group_rates(rows: pd.DataFrame, attr: str, min_size: int) -> dict[str, float]:
    """Mean engagement per known group with at least `min_size` exposures."""
    g = rows.groupby(attr)["engaged"].agg(["mean", "size"])
    g = g[(g["size"] >= min_size) & (g.index != "unknown")]
    return {str(k): float(v) for k, v in g["mean"].items()}


def _completion(
    shown: pd.DataFrame, watches: pd.DataFrame, movies: pd.DataFrame, window: timedelta
) -> pd.DataFrame:
    """Per watched recommended movie: the share of its runtime watched within the window."""
    empty = pd.DataFrame({"exposure_id": [], "completion": []})
    if watches.empty or shown.empty or movies.empty or "minute" not in watches:
        return empty
    runtime = movies.set_index("movie_id")["runtime"].dropna()
    runtime = runtime[runtime > 0]
    last = last_watch_within(shown, watches, window)
    if last.empty:
        return empty
    # minutes run on after the window's end: the whole view counts once it started inside it
    top = last.groupby(["exposure_id", "movie_id"], as_index=False)["minute"].max()
    top = top[top["movie_id"].isin(runtime.index)]
    top["completion"] = ((top["minute"] + 1) / top["movie_id"].map(runtime)).clip(upper=1.0)
    return top[["exposure_id", "completion"]]


def popular_items(counts: pd.Series, share: float = 0.05) -> frozenset[str]:
    """The top `share` of movies by count (at least one): "most popular" for feedback signals."""
    if counts.empty:
        return frozenset()
    n = max(1, round(len(counts) * share))
    return frozenset(str(m) for m in counts.sort_values(ascending=False).index[:n])


def catalogue(movies: pd.DataFrame, extra: Collection[str] = ()) -> int:
    """Catalogue size: movies known to the store, or those seen in the outcomes."""
    return max(len(movies), len(set(extra)))
