"""Prometheus export of the latest gate report: drift scores, poisoning suspects, the verdict."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class QualityCollector(Collector):
    """Serves the values of the last report given to `update`; replacing them drops stale labels.

    Only the top `top_movies` suspect movies get a `movie` label, so a large attack (or a bug)
    cannot explode the series count; the rest are summed under `movie="_other"`.
    """

    def __init__(self, top_movies: int = 10) -> None:
        self._top = top_movies
        self._lock = threading.Lock()
        self._report: dict[str, Any] | None = None

    def update(self, report: dict[str, Any]) -> None:
        with self._lock:
            self._report = report

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            report = self._report
        drift = GaugeMetricFamily(
            "movierec_drift_score",
            "Effect size of the newest window's drift (PSI, Cramér's V, KS D) per feature and test",
            labels=["feature", "test"],
        )
        suspects = GaugeMetricFamily(
            "movierec_poisoning_suspects",
            "Suspect accounts per target movie in the newest window (top movies, rest as _other)",
            labels=["movie"],
        )
        passed = GaugeMetricFamily(
            "movierec_quality_gate_passed", "1 if the last data-quality gate let training proceed"
        )
        if report is not None:
            for d in report.get("drift", []):
                if d.get("effect") is not None:
                    drift.add_metric([d["feature"], d["test"]], float(d["effect"]))
            per_movie: dict[str, int] = {}
            for u in report.get("poisoning", {}).get("suspect_users", []):
                per_movie[u["target"]] = per_movie.get(u["target"], 0) + 1
            ranked = sorted(per_movie.items(), key=lambda kv: (-kv[1], kv[0]))
            for movie, n in ranked[: self._top]:
                suspects.add_metric([movie], float(n))
            rest = sum(n for _, n in ranked[self._top :])
            if rest:
                suspects.add_metric(["_other"], float(rest))
            passed.add_metric([], 1.0 if report.get("passed") else 0.0)
        yield drift
        yield suspects
        yield passed


def collector_for(
    registry: CollectorRegistry | None = None, top_movies: int = 10
) -> QualityCollector:
    """The one collector of a registry (default: the process registry); registering twice
    would raise a duplicate-series error."""
    return _collector(registry if registry is not None else REGISTRY, top_movies)


@functools.cache
def _collector(registry: CollectorRegistry, top_movies: int) -> QualityCollector:
    collector = QualityCollector(top_movies)
    registry.register(collector)
    return collector
