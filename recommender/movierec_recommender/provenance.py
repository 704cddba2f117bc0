"""Provenance of every answer: JSON events to Kafka (topic `recommendations`) off the request path.

The request thread only appends to a bounded in-memory buffer; a background thread owns the Kafka
producer. When Kafka is slow or down the buffer fills and further events are dropped and counted
(`movierec_provenance_dropped_total{reason}`): an answer never waits for, or fails because of, Kafka.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

_STOP = object()


def build_event(
    *,
    user_id: int,
    track: str,
    model_name: str,
    model_version: str,
    ids: Sequence[str],
    scores: Sequence[float],
    latency_ms: float,
    status: int,
    fallback: str | None = None,
    when: datetime | None = None,
    request_id: str | None = None,
    method: str = "GET",
) -> dict[str, Any]:
    """One provenance event: enough to trace which model produced which ranked list for whom.

    `request_id` (a fresh one when not given) makes the event idempotent in the store; the
    ingestor keeps `GET` answers only (a HEAD or a shed 503 showed nobody anything).
    """
    moment = when or datetime.now(UTC).replace(tzinfo=None)
    return {
        "request_id": request_id or uuid.uuid4().hex,
        "method": method,
        "time": moment.isoformat(timespec="microseconds"),
        "user_id": user_id,
        "track": track,
        "model_name": model_name,
        "model_version": model_version,
        "items": [{"movie_id": m, "score": float(s)} for m, s in zip(ids, scores, strict=False)],
        "latency_ms": round(latency_ms, 3),
        "status": status,
        "fallback": fallback,
    }


def course_log_line(event: dict[str, Any], server: str) -> str:
    """The course's recommendation-request line for the event (ingested from topic `movielog`)."""
    time_text = event["time"]
    head = (
        f"{time_text},{event['user_id']},recommendation request {server}, status {event['status']}"
    )
    if event["status"] == 200:
        ids = ", ".join(item["movie_id"] for item in event["items"])
        body = f"result: {ids}"
    else:
        body = "result: error"
    return f"{head}, {body}, {round(event['latency_ms'])} ms"


class ProvenanceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "movierec_provenance_sent_total",
            "Provenance events acknowledged by Kafka",
            registry=registry,
        )
        self.dropped = Counter(
            "movierec_provenance_dropped_total",
            "Provenance events lost (buffer full, Kafka unreachable or send failed), by reason",
            ("reason",),
            registry=registry,
        )


class ProvenanceSink:
    """Bounded buffer plus a sender thread; `emit` never blocks. Disabled without a bootstrap."""

    def __init__(
        self,
        bootstrap: str | None,
        topic: str,
        registry: CollectorRegistry,
        *,
        buffer_size: int = 10_000,
        log_topic: str | None = None,
        server_name: str = "movierec",
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.log_topic = log_topic
        self.server_name = server_name
        self.metrics = ProvenanceMetrics(registry)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=buffer_size)
        self._producer_config = {
            # Short timeouts: a lost event is counted, never retried for minutes into memory.
            "max_block_ms": 2000,
            "bootstrap_timeout_ms": 2000,
            "request_timeout_ms": 5000,
            "delivery_timeout_ms": 10_000,
            "linger_ms": 20,
            "reconnect_backoff_max_ms": 2000,
            **(producer_config or {}),
        }
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # kafka-python 3 has no memory cap: unacknowledged events are capped here instead
        self._max_outstanding = buffer_size
        self._outstanding = 0

    @property
    def enabled(self) -> bool:
        return bool(self.bootstrap)

    def emit(self, event: dict[str, Any]) -> None:
        """Queue an event for Kafka; drop and count it when the buffer is full."""
        if not self.bootstrap:
            return
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.metrics.dropped.labels("buffer_full").inc()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="provenance-sender", daemon=True
                )
                self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed within `timeout` and stop the sender thread."""
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _make_producer(self) -> Any:
        from kafka import KafkaProducer
        from movierec_ingestor.kafka_config import KafkaSecurity

        # TLS / SASL from MOVIEREC_KAFKA_* (the same settings every client reads); explicit
        # producer_config wins.
        config = {**KafkaSecurity().client_config(), **self._producer_config}
        return KafkaProducer(
            bootstrap_servers=self.bootstrap.split(","),  # type: ignore[union-attr]
            **config,
        )

    def _run(self) -> None:
        producer = None
        backoff = 0.5
        while True:
            item = self._queue.get()
            if item is _STOP:
                if producer is not None:
                    producer.flush(timeout=3)
                    producer.close(timeout=3)
                return
            if producer is None:
                try:
                    producer = self._make_producer()
                    backoff = 0.5
                except Exception as exc:  # broker unreachable at start: drop, retry later
                    self.metrics.dropped.labels("unreachable").inc()
                    log.warning("provenance: Kafka %s unreachable: %s", self.bootstrap, exc)
                    self._drain_dropping(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
            self._send(producer, item)  # type: ignore[arg-type]

    def _drain_dropping(self, seconds: float, reason: str = "unreachable") -> None:
        """While Kafka is unreachable, wait `seconds` and count what piles up as dropped."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                return
            if item is _STOP:
                self._queue.put(item)
                return
            self.metrics.dropped.labels(reason).inc()

    def _send(self, producer: Any, event: dict[str, Any]) -> None:
        key = str(event.get("user_id", "")).encode()
        if self._outstanding >= self._max_outstanding:
            self.metrics.dropped.labels("buffer_full").inc()
            return
        try:
            value = json.dumps(event, separators=(",", ":")).encode()
            future = producer.send(self.topic, value=value, key=key)
            with self._lock:
                self._outstanding += 1
            future.add_callback(self._delivered)
            future.add_errback(self._failed)
            if self.log_topic:
                line = course_log_line(event, self.server_name)
                producer.send(self.log_topic, value=line.encode(), key=key)
        except Exception as exc:  # metadata timeout while the broker is down
            self.metrics.dropped.labels("send_failed").inc()
            log.debug("provenance send failed: %s", exc)
            # each further send would block as long: drop what piles up for a while instead
            self._drain_dropping(1.0, "send_failed")

    def _delivered(self, _metadata: Any) -> None:
        with self._lock:
            self._outstanding -= 1
        self.metrics.sent.inc()

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._outstanding -= 1
        self.metrics.dropped.labels("send_failed").inc()
        log.debug("provenance delivery failed: %s", exc)
