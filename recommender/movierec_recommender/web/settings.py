"""Settings of the HTTP edge (env prefix MOVIEREC_EDGE_): the gunicorn process and its limits."""

from __future__ import annotations

import os

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_tmp_dir() -> str:
    """$TMPDIR or /tmp: the one writable place in a pod with a read-only root (never the CWD)."""
    return os.environ.get("TMPDIR") or "/tmp"


class EdgeSettings(BaseSettings):
    """One settings object for both services' HTTP edge, built by the gunicorn config and worker."""

    model_config = SettingsConfigDict(env_prefix="MOVIEREC_EDGE_", extra="ignore")

    bind: str = Field(
        default="0.0.0.0:8082",
        validation_alias=AliasChoices("MOVIEREC_EDGE_BIND", "MOVIEREC_BIND"),
        description="host:port to listen on",
    )
    workers: int = Field(
        default=2, ge=1, validation_alias=AliasChoices("MOVIEREC_EDGE_WORKERS", "MOVIEREC_WORKERS")
    )
    threads: int = Field(
        default=4, ge=1, validation_alias=AliasChoices("MOVIEREC_EDGE_THREADS", "MOVIEREC_THREADS")
    )
    tmp_dir: str = Field(
        default_factory=default_tmp_dir,
        description="worker heartbeat files and the Prometheus multiprocess folder live here",
    )

    # Slow and hostile clients: a connection costs a socket and a timer until its request is
    # complete; only then does it take a thread.
    header_timeout_s: float = Field(default=5.0, gt=0, description="time to send the headers")
    body_timeout_s: float = Field(default=5.0, gt=0, description="time to send the body after")
    write_timeout_s: float = Field(default=5.0, gt=0, description="time for a client to read")
    keepalive_s: float = Field(default=5.0, ge=0, description="idle keep-alive limit")
    max_connections: int = Field(
        default=1000, ge=1, description="connections per worker; more are refused with a fast 503"
    )
    max_head_bytes: int = Field(default=8192, ge=1024, description="request line + headers")
    max_body_bytes: int = Field(default=4096, ge=0, description="request body")

    # Admission: refuse (503) what cannot be answered within budget instead of queueing it.
    shed_wait_ms: float = Field(
        default=250.0, gt=0, description="expected or measured queue wait past which to shed"
    )
    max_pending: int = Field(
        default=256, ge=1, description="requests queued or running, per worker"
    )

    # Lifecycle: on SIGTERM readiness goes false, then the listener closes, then in-flight
    # requests finish and the app flushes (provenance) within a bound.
    drain_s: float = Field(default=2.0, ge=0, description="serve on, not ready, before closing")
    exit_flush_s: float = Field(default=3.0, ge=0, description="time the app gets to flush on exit")
    switch_interval_s: float = Field(default=0.001, gt=0, description="GIL switch interval")
