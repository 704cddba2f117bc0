"""Prometheus metrics of the ingest job, on a registry of its own (served or pushed)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger(__name__)

_BATCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class IngestMetrics:
    """The ingestor's metrics (names are a public contract: docs/architecture.md section 8)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.events = Counter(
            "movierec_ingest_events_total",
            "Valid events read, by type (duplicates included)",
            ["type"],
            registry=self.registry,
        )
        self.stored = Counter(
            "movierec_ingest_stored_total",
            "Events new to the store, by type",
            ["type"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "movierec_ingest_duplicates_total",
            "Valid events already in the store (replays, repeated lines)",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "movierec_ingest_dead_letters_total",
            "Lines that failed validation, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "movierec_ingest_lag_seconds",
            "Age of the newest event of the last committed batch (now minus its event time)",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "movierec_ingest_batch_seconds",
            "Time to validate and commit one batch",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "movierec_ingest_consumer_lag_messages",
            "Messages (bytes for a file) not yet read, by partition",
            ["partition"],
            registry=self.registry,
        )
        self.store_errors = Counter(
            "movierec_ingest_store_errors_total",
            "Batch writes that failed because the database was unavailable (then retried)",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "movierec_ingest_last_success_timestamp_seconds",
            "Unix time of the last committed batch",
            registry=self.registry,
        )

    def record_batch(
        self,
        *,
        read_by_type: Mapping[str, int],
        stored_by_type: Mapping[str, int],
        duplicates: int,
        dead_by_reason: Mapping[str, int],
        newest_time: datetime | None,
        seconds: float,
        lag: Mapping[int, int],
    ) -> None:
        """Account one committed batch."""
        for kind, n in read_by_type.items():
            if n:
                self.events.labels(type=kind).inc(n)
        for kind, n in stored_by_type.items():
            if n:
                self.stored.labels(type=kind).inc(n)
        if duplicates:
            self.duplicates.inc(duplicates)
        for reason, n in dead_by_reason.items():
            self.dead_letters.labels(reason=reason).inc(n)
        now = datetime.now(UTC).replace(tzinfo=None)
        if newest_time is not None:
            self.lag_seconds.set(max(0.0, (now - newest_time).total_seconds()))
        self.batch_seconds.observe(seconds)
        for partition, n in lag.items():
            self.consumer_lag.labels(partition=str(partition)).set(n)
        self.last_success.set_to_current_time()

    def serve(self, port: int, addr: str) -> None:
        """Expose /metrics on a background thread (continuous mode)."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=addr, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", addr, port)

    def push(self, gateway: str, job: str, grouping: Mapping[str, str] | None = None) -> bool:
        """Push once to a Pushgateway (CronJob mode); a failed push is logged, not fatal."""
        from prometheus_client import push_to_gateway

        try:
            push_to_gateway(
                gateway,
                job=job,
                registry=self.registry,
                grouping_key=dict(grouping or {}),
                timeout=10,
            )
        except OSError as exc:
            log.warning("pushing metrics to %s failed: %s", gateway, exc)
            return False
        return True
