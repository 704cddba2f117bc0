"""Operator settings from the environment (prefix ``MOVIEREC_OPERATOR_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where Prometheus and MLflow are, how often to look, and what to run by default."""

    model_config = SettingsConfigDict(env_prefix="MOVIEREC_OPERATOR_", extra="ignore")

    prometheus_url: str = "http://prometheus:9090"
    mlflow_tracking_uri: str = "http://mlflow:5000"
    # MLflow URI the recommender pods use (defaults to the operator's own)
    serving_tracking_uri: str | None = None
    image: str = "ghcr.io/movierec/movierec:latest"
    # how often the timer re-reconciles every RecommenderModel (alias polling, analysis due?)
    timer_interval_seconds: float = Field(default=10.0, gt=0)
    # tests: replaces every spec.rollout.interval (seconds) so a rollout takes seconds
    analysis_interval_override: float | None = Field(default=None, gt=0)
    # port for the operator's own /metrics (0: off)
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    kubeconfig: str | None = None  # None: in-cluster config, else the default kubeconfig
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    # let Kopf watch namespaces and CRDs cluster-wide (needs a ClusterRole; off: namespaced Role)
    scan_cluster: bool = False
