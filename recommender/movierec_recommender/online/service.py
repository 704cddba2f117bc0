"""The evaluator as a service: every interval, evaluate the recent window and serve /metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, start_http_server

from movierec_recommender.online.arms import (
    ArmSettings,
    Snapshot,
    evaluate_arms,
    popular_items,
)
from movierec_recommender.online.evaluate import Predictor
from movierec_recommender.online.exporter import SnapshotCollector
from movierec_recommender.online.settings import EvaluatorSettings
from movierec_recommender.online.store import load

log = logging.getLogger(__name__)


class ModelCache:
    """Rating predictors per served version: a local folder, else MLflow ``models:/NAME/VERSION``.

    Bounded (a rollout has two live versions); a version that fails to load is retried only
    after `retry_seconds`, so a missing artifact does not cost a download every round.
    """

    def __init__(
        self,
        folders: dict[str, str],
        tracking_uri: str | None,
        *,
        size: int = 4,
        retry_seconds: float = 600.0,
    ) -> None:
        self.folders = folders
        self.tracking_uri = tracking_uri
        self.size = size
        self.retry_seconds = retry_seconds
        self._models: OrderedDict[tuple[str, str], Predictor] = OrderedDict()
        self._failed: dict[tuple[str, str], float] = {}

    def __call__(self, name: str, version: str) -> Predictor | None:
        key = (name, version)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        if time.monotonic() - self._failed.get(key, -float("inf")) < self.retry_seconds:
            return None
        try:
            predictor = self._load(name, version)
        except Exception as exc:  # a missing artifact costs online RMSE only, not the round
            log.warning("no predictor for %s version %s: %s", name, version, exc)
            self._failed[key] = time.monotonic()
            return None
        if predictor is None:
            self._failed[key] = time.monotonic()
            return None
        self._models[key] = predictor
        while len(self._models) > self.size:
            self._models.popitem(last=False)
        return predictor

    def _load(self, name: str, version: str) -> Predictor | None:
        if version in self.folders:
            from movierec_recommender.models import load_model

            return load_model(Path(self.folders[version])).predict
        if self.tracking_uri and name != "unknown" and version != "unknown":
            from movierec_recommender.registry.download import download_model

            model, _ = download_model(f"models:/{name}/{version}", self.tracking_uri)
            return model.predict
        return None


def evaluate_once(
    engine: sa.Engine,
    settings: EvaluatorSettings,
    predictors: ModelCache,
    now: datetime | None = None,
) -> Snapshot:
    """One round: exposures of the lookback window joined with what their users did after."""
    until = now or datetime.now(UTC).replace(tzinfo=None)
    since = until - timedelta(minutes=settings.lookback_minutes)
    data = load(engine, since, until)
    arm_settings = ArmSettings(
        window=timedelta(minutes=settings.window_minutes),
        latency_budget_ms=settings.latency_budget_ms,
        min_group_size=settings.min_group_size,
        popular_items=popular_items(data.popularity),
        catalogue_size=data.catalogue_size,
        max_tracks=settings.max_tracks,
        max_versions_per_track=settings.max_versions_per_track,
        baseline_track=settings.baseline_track,
        ab_alpha=settings.ab_alpha,
        ab_power=settings.ab_power,
        ab_min_effect=settings.ab_min_effect,
    )
    return evaluate_arms(data.exposures, data.outcomes, predictors, arm_settings, as_of=until)


def run(
    settings: EvaluatorSettings,
    *,
    stop: threading.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> SnapshotCollector:
    """Evaluate every `interval_seconds` until `stop` is set; a failed round is logged and
    counted, and the previous values stay served until a round succeeds."""
    from movierec_ingestor.db import create_engine

    stop = stop or threading.Event()
    registry = registry if registry is not None else CollectorRegistry()
    collector = SnapshotCollector()
    registry.register(collector)
    if settings.port:
        start_http_server(settings.port, addr=settings.host, registry=registry)
        log.info("serving /metrics on %s:%d", settings.host, settings.port)
    engine = create_engine(settings.db_url)
    predictors = ModelCache(settings.models, settings.tracking_uri)
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                snapshot = evaluate_once(engine, settings, predictors)
            except Exception:
                collector.failed()
                log.exception("evaluation round failed; serving the previous values")
            else:
                collector.update(
                    snapshot, finished_at=time.time(), duration=time.monotonic() - started
                )
                log.info(
                    "evaluated %d exposures in %d arms (%.2fs)",
                    snapshot.exposures,
                    len(snapshot.arms),
                    time.monotonic() - started,
                )
            stop.wait(max(0.0, settings.interval_seconds - (time.monotonic() - started)))
    finally:
        engine.dispose()
    return collector
