"""Ingestor settings from the environment (prefix MOVIEREC_INGESTOR_); the CLI overrides them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from movierec_ingestor.batch import TimePolicy

DEFAULT_DB_URL = "sqlite:///var/movierec.db"


class IngestorSettings(BaseSettings):
    """How the ingest job reads, stores and reports; every field has a safe default."""

    model_config = SettingsConfigDict(env_prefix="MOVIEREC_INGESTOR_", extra="ignore")

    db_url: str = DEFAULT_DB_URL
    group: str = "movierec-ingestor"
    batch_size: int = Field(default=20_000, ge=1, le=1_000_000)
    # How long one read waits for new lines before returning a (possibly empty) batch.
    poll_timeout_s: float = Field(default=1.0, gt=0, le=60)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)
    # Batches committing at once on PostgreSQL, each on its own connection: a Kafka read is
    # split by partition into this many lanes (SQLite, with one writer at a time, uses 1).
    writers: int = Field(default=2, ge=1, le=8)
    # CronJob mode: how long to keep retrying a dead database before failing the run.
    db_retry_s: float = Field(default=60.0, ge=0)
    metadata: str | None = None
    metadata_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Lookups per batch against the metadata API: ingestion must not wait on a slow service.
    metadata_max_lookups: int = Field(default=50, ge=0, le=10_000)
    pushgateway_url: str | None = None
    pushgateway_job: str = "movierec-ingest"
    # Continuous mode serves /metrics here when set (0 = off); CronJobs push instead.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_addr: str = "127.0.0.1"

    # Plausible event times: not before the service's epoch, not ahead of the server's clock by
    # more than the skew. Others go to dead letters (time_before_epoch / time_in_future).
    epoch: datetime = datetime(1995, 1, 1)
    max_future_skew_s: float = Field(default=300.0, ge=0, le=30 * 86400)

    def time_policy(self) -> TimePolicy:
        """The plausibility window every batch applies."""
        return TimePolicy(epoch=self.epoch, max_skew=timedelta(seconds=self.max_future_skew_s))

    def kafka_client_config(self) -> dict[str, Any]:
        """TLS / SASL settings for the Kafka consumers (MOVIEREC_KAFKA_* variables), as
        librdkafka properties."""
        from movierec_ingestor.kafka_config import KafkaSecurity

        return KafkaSecurity().librdkafka_config()
