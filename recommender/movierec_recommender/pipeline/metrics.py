"""The retrain job's success time on the Pushgateway, so `MovierecModelStale` can fire."""

from __future__ import annotations

import logging
import os
import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

log = logging.getLogger(__name__)

PUSHGATEWAY_ENV = "MOVIEREC_PUSHGATEWAY_URL"
JOB = "movierec-retrain"


def record_success(
    name: str, *, gateway: str | None = None, now: float | None = None
) -> bool | None:
    """Push `movierec_retrain_last_success_timestamp_seconds` for model ``name`` to ``gateway``
    (default ``$MOVIEREC_PUSHGATEWAY_URL``). ``None``: no gateway set; ``False``: the push
    failed (logged, not fatal: the model is registered, only the metric is missing).

    Only a successful run pushes: a push replaces the group's metrics, so a failed run that
    pushed would erase the last success the alert measures from."""
    gateway = gateway or os.environ.get(PUSHGATEWAY_ENV) or None
    if gateway is None:
        return None
    registry = CollectorRegistry()
    Gauge(
        "movierec_retrain_last_success_timestamp_seconds",
        "Unix time of the last retrain run that registered a model version",
        registry=registry,
    ).set(time.time() if now is None else now)
    try:
        # the ingestor's mechanism (movierec_ingestor.metrics.IngestMetrics.push); grouped by
        # model so that retrains of two models do not replace each other's time
        push_to_gateway(
            gateway, job=JOB, registry=registry, grouping_key={"model_name": name}, timeout=10
        )
    except OSError as exc:
        log.warning("pushing the retrain metrics to %s failed: %s", gateway, exc)
        return False
    return True
