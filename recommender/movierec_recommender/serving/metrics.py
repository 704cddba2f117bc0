"""Prometheus metrics of the recommender service (request metrics: `web.metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from movierec_recommender.web.metrics import ChildCache, RequestMetrics


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
        self.fallback_reason = ChildCache(self.fallbacks)
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
