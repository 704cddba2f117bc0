"""Request metrics shared by both services, correct under several gunicorn workers."""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from movierec_recommender.web.contract import openapi

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.5,
)  # fmt: skip
REQUEST_LABELS = ("component", "track", "model_version", "status")
MAX_CACHED_CHILDREN = 1024


def metrics_response(registry: CollectorRegistry) -> Response:
    """The /metrics answer: every worker's values merged in multiprocess mode, else this process."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=folder)  # type: ignore[no-untyped-call]
        data = generate_latest(merged)
    else:
        data = generate_latest(registry)
    return Response(data, content_type=CONTENT_TYPE_LATEST)


def openapi_response(title: str) -> Response:
    """The published OpenAPI document."""
    return Response(json.dumps(openapi(title)), content_type="application/json")


class ChildCache:
    """Child metrics by label values, looked up once (`get(*labels)` returns the child):
    `labels()` validates and locks on every call, and the label sets seen are few."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def get(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self.metric.labels(*labels)
            if len(self._children) < MAX_CACHED_CHILDREN:  # bounded under version churn
                self._children[labels] = child
        return child


class RequestMetrics:
    """Request counter and latency histogram (`movierec_requests_total`, `..._latency_seconds`)."""

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
        self.shed = Counter(
            "movierec_load_shed_total",
            "Requests refused with 503 because they could not be answered within budget",
            ("reason",),
            registry=registry,
        )
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    def observe(
        self, component: str, track: str, version: str, status: int, seconds: float
    ) -> None:
        key = (component, track, version, status)
        pair = self._children.get(key)
        if pair is None:
            labels = (component, track, version, str(status))
            pair = (self.requests.labels(*labels), self.latency.labels(*labels))
            if len(self._children) < MAX_CACHED_CHILDREN:
                self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)
