"""Prometheus export of a gate report: values, bounded `movie` labels, stale series dropped."""

from __future__ import annotations

from movierec_ingestor.quality.metrics import QualityCollector, collector_for
from prometheus_client import CollectorRegistry


def _report(suspects: dict[str, int], passed: bool = True) -> dict:
    users = [{"user_id": i, "target": movie} for movie, n in suspects.items() for i in range(n)]
    return {
        "passed": passed,
        "drift": [
            {"feature": "rating", "test": "psi", "effect": 0.3},
            {"feature": "watch_minutes", "test": "ks", "effect": None},  # untestable: no series
        ],
        "poisoning": {"suspect_users": users},
    }


def test_values_and_bounded_movie_labels() -> None:
    registry = CollectorRegistry()
    collector = QualityCollector(top_movies=3)
    registry.register(collector)
    collector.update(_report({f"m{i}": i + 1 for i in range(10)}, passed=False))
    assert registry.get_sample_value("movierec_quality_gate_passed") == 0.0
    assert (
        registry.get_sample_value("movierec_drift_score", {"feature": "rating", "test": "psi"})
        == 0.3
    )
    assert (
        registry.get_sample_value(
            "movierec_drift_score", {"feature": "watch_minutes", "test": "ks"}
        )
        is None
    )
    labelled = {
        s.labels["movie"]: s.value
        for metric in registry.collect()
        if metric.name == "movierec_poisoning_suspects"
        for s in metric.samples
    }
    assert labelled == {"m9": 10, "m8": 9, "m7": 8, "_other": sum(range(1, 8))}


def test_a_new_report_replaces_old_series() -> None:
    registry = CollectorRegistry()
    collector = collector_for(registry, 10)
    assert collector_for(registry, 10) is collector  # registering twice would raise
    assert collector_for() is collector_for(None, 10)  # the process registry, once
    collector.update(_report({"target+2001": 5}))
    assert registry.get_sample_value("movierec_poisoning_suspects", {"movie": "target+2001"}) == 5
    collector.update(_report({}))
    assert (
        registry.get_sample_value("movierec_poisoning_suspects", {"movie": "target+2001"}) is None
    )
    assert registry.get_sample_value("movierec_quality_gate_passed") == 1.0
