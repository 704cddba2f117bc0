"""The demo's online evaluation: the in-cluster evaluator's round on the stored exposures, and the
store and /metrics numbers behind the report's dashboard views."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from movierec_recommender.online.service import ModelCache, evaluate_once
from movierec_recommender.online.settings import EvaluatorSettings

# Longer than the in-cluster default (30 min): the simulated users' clock runs ahead of the
# services' (think time and viewing are simulated, the serving is real), up to about an hour.
WINDOW = timedelta(hours=3)


class LocalModels(ModelCache):
    """The evaluator's model cache with the demo's local predictors per model name (the served
    versions of both tracks are all "1", so a version alone does not name a model here)."""

    def __init__(self, by_name: dict[str, Callable[..., Any]]) -> None:
        super().__init__({}, None)
        self.by_name = by_name

    def _load(self, name: str, version: str) -> Any:
        return self.by_name.get(name)


def predictors(models: Path, names: dict[str, str], baseline: str) -> LocalModels:
    """Rating predictors of the trained models (name -> folder), and the baseline's global mean."""
    from movierec_recommender.models import load_model

    loaded = {name: load_model(models / algo) for name, algo in names.items()}
    by_name: dict[str, Callable[..., Any]] = {n: m.predict for n, m in loaded.items()}
    # the most-popular list predicts no rating: the global mean stands for it
    mean = float(next(iter(loaded.values())).mu)
    by_name[baseline] = lambda users, movies: np.full(len(users), mean)
    return LocalModels(by_name)


def evaluate(
    db_url: str, models: LocalModels, baseline: str, live_start: datetime, live_end: datetime
) -> dict[str, Any]:
    """One evaluator round (`online.service.evaluate_once`) as of one engagement window after the
    live phase, over every answer it served; per track and A/B rows as plain dicts."""
    from movierec_ingestor.db import create_engine

    until = live_end + WINDOW  # every answer has had its whole window: all of them count
    lookback = (until - live_start + timedelta(minutes=5)).total_seconds() / 60
    settings = EvaluatorSettings(
        db_url=db_url,
        port=0,
        lookback_minutes=lookback,
        window_minutes=WINDOW.total_seconds() / 60,
        baseline_track=baseline,
    )
    engine = create_engine(db_url)
    try:
        snap = evaluate_once(engine, settings, models, now=until)
    finally:
        engine.dispose()
    tracks = {arm.track: _arm(arm) for arm in snap.arms}
    ab = [_ab(r) for r in snap.ab]
    return _clean(
        {
            "window_minutes": settings.window_minutes,
            "exposures": snap.exposures,
            "tracks": tracks,
            "ab": ab,
        }
    )


def _arm(arm: Any) -> dict[str, Any]:
    nested: dict[str, dict[str, float]] = {}
    for key, rate in arm.engagement_by_group.items():
        attr, group = key.split(":", 1)
        nested.setdefault(attr, {})[group] = rate
    return {
        "track": arm.track,
        "model_version": arm.model_version,
        "requests": arm.requests,
        "users": arm.users,
        "success_rate": arm.success_rate,
        **{f"latency_p{int(float(q) * 100)}_ms": s * 1000 for q, s in arm.latency_seconds.items()},
        "engagement_rate": arm.engagement_rate,
        "engagement_samples": arm.engagement_samples,
        "completion": arm.completion,
        "online_rmse": arm.online_rmse,
        "rmse_samples": arm.rmse_samples,
        "engagement_by_group": nested,
        "disparity": arm.disparity,
        "exposure_gini": arm.exposure_gini,
        "popular_share": arm.popular_share,
        "coverage": arm.coverage,
        "self_confirmation": arm.self_confirmation,
        "self_confirmation_samples": arm.self_confirmation_samples,
    }


def _ab(r: Any) -> dict[str, Any]:
    c = r.comparison
    return {
        "experiment": r.experiment,
        "a": r.arm_a[0],
        "b": r.arm_b[0],
        "users_a": c.n_a,
        "users_b": c.n_b,
        "mean_a": c.mean_a,
        "mean_b": c.mean_b,
        "effect": c.effect,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "p_value": c.p_value,
        "users_needed": c.n_needed,
        "verdict": str(c.verdict),
    }


def _clean(v: Any) -> Any:
    """JSON has no NaN or infinity: null instead."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def store_views(db_url: str, since: datetime) -> dict[str, Any]:
    """What the data and service views read from the store: dead letters by reason, and the
    stored exposures (provenance) per track and second with their latencies."""
    from movierec_ingestor.db import create_engine

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            dead = conn.execute(
                sa.text("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason ORDER BY 2 DESC")
            ).all()
            rows = conn.execute(
                sa.text(
                    "SELECT time, track, latency_ms FROM recommendations "
                    "WHERE source = 'provenance' AND time >= :since"
                ),
                {"since": since},
            ).all()
    finally:
        engine.dispose()
    traffic: dict[str, dict[str, int]] = {}
    latency: dict[str, list[float]] = {}
    for when, track, ms in rows:
        moment = when if isinstance(when, datetime) else datetime.fromisoformat(str(when))
        offset = int((moment - since).total_seconds())
        bucket = traffic.setdefault(str(track), {})
        bucket[str(offset)] = bucket.get(str(offset), 0) + 1
        latency.setdefault(str(track), []).append(float(ms))
    return {
        "dead_letters": {str(r): int(n) for r, n in dead},
        "traffic_per_s": traffic,
        "served_latency_ms": latency,
    }


def scrape(urls: dict[str, str]) -> dict[str, dict[str, float]]:
    """Requests by status, shed and fallback counts from each service's /metrics (Prometheus text):
    the counters the service dashboard's error and shedding panels sum."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    for name, url in urls.items():
        counts: dict[str, float] = {}
        try:
            text = requests.get(f"{url}/metrics", timeout=5).text
        except requests.RequestException:
            continue
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "movierec_requests_total":
                    key = f"status {s.labels.get('status', '?')}"
                elif s.name in ("movierec_load_shed_total", "movierec_fallbacks_total"):
                    key = f"{s.name.removeprefix('movierec_').removesuffix('_total')}"
                    key += f" {s.labels.get('reason', '')}".rstrip()
                else:
                    continue
                counts[key] = counts.get(key, 0.0) + float(s.value)
        out[name] = counts
    return out
