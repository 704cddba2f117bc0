"""Prometheus metrics of the serving path, correct under several gunicorn workers (multiprocess)."""

from __future__ import annotations

import os
from typing import Any

from flask import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.5,
)  # fmt: skip
REQUEST_LABELS = ("component", "track", "model_version", "status")
MAX_CACHED_CHILDREN = 1024


def multiprocess_dir() -> str | None:
    """The multiprocess folder when running under several workers (set before the app starts)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def metrics_response(registry: CollectorRegistry) -> Response:
    """The /metrics answer: every worker's values merged in multiprocess mode, else this process."""
    folder = multiprocess_dir()
    if folder:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=folder)
        data = generate_latest(merged)
    else:
        data = generate_latest(registry)
    return Response(data, content_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Request counter and latency histogram shared by the recommender and the router."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "movierec_requests_total",
            "Answered requests by component, track, model version and HTTP status",
            REQUEST_LABELS,
            registry=registry,
        )
        self.latency = Histogram(
            "movierec_request_latency_seconds",
            "Time to answer, by component, track, model version and HTTP status",
            REQUEST_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        # `labels()` validates and locks on every call; the label sets seen are few (tracks x
        # versions x statuses), so their child metrics are looked up once and kept here.
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    def observe(
        self, component: str, track: str, version: str, status: int, seconds: float
    ) -> None:
        key = (component, track, version, status)
        pair = self._children.get(key)
        if pair is None:
            labels = (component, track, version, str(status))
            pair = (self.requests.labels(*labels), self.latency.labels(*labels))
            if len(self._children) < MAX_CACHED_CHILDREN:  # bounded under version churn
                self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)


class ChildCache:
    """Child metrics by label values, looked up once (`get(*labels)` returns the child)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def get(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self.metric.labels(*labels)
            if len(self._children) < MAX_CACHED_CHILDREN:
                self._children[labels] = child
        return child


class ServingMetrics(RequestMetrics):
    """Everything the recommender service exports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.fallbacks = Counter(
            "movierec_fallbacks_total",
            "Answers that used a fallback list instead of the model's own, by reason",
            ("reason",),
            registry=registry,
        )
        self.shed = Counter(
            "movierec_load_shed_total",
            "Requests refused with 503 because they could not be answered within budget",
            ("reason",),
            registry=registry,
        )
        self.fallback_reason = ChildCache(self.fallbacks)
        self.shed_reason = ChildCache(self.shed)
        self.model_info = Gauge(
            "movierec_model_info",
            "1 for the model version this service answers with",
            ("model_version", "algo"),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "movierec_model_reloads_total",
            "Model loads and hot swaps by result (success, failure)",
            ("result",),
            registry=registry,
        )
        self.precomputed = Gauge(
            "movierec_precomputed_users",
            "Known users whose answer is precomputed for the model version being served",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.model_ready = Gauge(
            "movierec_model_ready",
            "1 when a model is loaded and serving",
            registry=registry,
            multiprocess_mode="livemin",
        )


def openapi_response(title: str) -> Response:
    """The published OpenAPI document (shared by recommender and router)."""
    import json

    from movierec_recommender.serving.http import openapi

    return Response(json.dumps(openapi(title)), content_type="application/json")
