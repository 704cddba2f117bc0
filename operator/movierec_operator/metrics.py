"""The operator's own Prometheus metrics (ARCHITECTURE.md section 8: rollout_*)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from movierec_operator.constants import Phase


class RolloutMetrics:
    """``movierec_rollout_canary_weight{model}`` and ``movierec_rollout_phase{model,phase}``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.weight = Gauge(
            "movierec_rollout_canary_weight",
            "Percent of users the canary serves",
            ["model"],
            registry=self.registry,
        )
        self.phase = Gauge(
            "movierec_rollout_phase",
            "1 for the rollout phase a RecommenderModel is in",
            ["model", "phase"],
            registry=self.registry,
        )

    def observe(self, model: str, phase: Phase | None, weight: int) -> None:
        self.weight.labels(model).set(weight)
        for p in Phase:
            self.phase.labels(model, str(p)).set(1 if p == phase else 0)
