"""Settings of the recommender service (env prefix MOVIEREC_RECOMMENDER_), built by the entry point."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from movierec_recommender.web.settings import default_tmp_dir


class ServingSettings(BaseSettings):
    """Everything the recommender service needs; `movierec serve` fills it from its flags."""

    model_config = SettingsConfigDict(env_prefix="MOVIEREC_RECOMMENDER_", extra="ignore")

    model: str = Field(
        default="",
        description="model folder, models:/NAME/VERSION or models:/NAME@ALIAS (followed)",
    )
    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI")
    model_version: str | None = Field(
        default=None, description="version label for a model folder (default: the folder name)"
    )
    track: str = Field(default="stable", description="track this deployment serves (X-Track)")
    server_name: str = Field(default="movierec", description="server name in the course log line")
    n: int = Field(default=20, ge=1, le=100, description="ids per answer")

    poll_interval_seconds: float = Field(default=30.0, gt=0, description="alias poll interval")
    startup_wait_seconds: float = Field(
        default=30.0,
        ge=0,
        description="a worker waits this long for the first load before accepting",
    )
    failed_retry_seconds: float = Field(
        default=60.0, ge=0, description="wait before retrying a version that failed to load"
    )
    load_retry_seconds: float = Field(
        default=5.0, gt=0, description="retry delay after a failed load"
    )

    budget_ms: float = Field(default=800.0, gt=0, description="hard answer budget per request")
    compute_budget_ms: float = Field(
        default=250.0, gt=0, description="model time per request before the popularity fallback"
    )
    compute_threads: int = Field(default=2, ge=1, le=16, description="model threads per worker")
    compute_queue_max: int = Field(
        default=8, ge=1, description="pending model calls per worker past which requests fall back"
    )
    precompute: bool = Field(
        default=True, description="precompute every known user's answer per model version"
    )
    answers_cache_dir: str | None = Field(
        default_factory=lambda: str(Path(default_tmp_dir()) / "movierec-answers"),
        description="folder where workers share precomputed answers (None: per worker)",
    )
    cache_size: int = Field(
        default=20_000, ge=0, description="per-worker LRU of computed answers (0 = off)"
    )

    users_csv: str | None = Field(default=None, description="users.csv for demographic fallback")
    db_url: str | None = Field(default=None, description="database with a users table (fallback)")
    users_refresh_seconds: float = Field(default=300.0, gt=0)
    segment_sample_users: int = Field(default=40, ge=1, le=1000)

    kafka_bootstrap: str | None = Field(default=None, description="Kafka for provenance events")
    provenance_topic: str = "recommendations"
    provenance_log_topic: str | None = Field(
        default=None, description="also send the course log line to this topic (e.g. movielog)"
    )
    provenance_buffer: int = Field(default=10_000, ge=1)
