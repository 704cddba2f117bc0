"""Operator settings from the environment (prefix ``MOVIEREC_OPERATOR_``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from movierec_operator import constants


class Settings(BaseSettings):
    """Where Prometheus and MLflow are, how often to look, and what to run by default."""

    model_config = SettingsConfigDict(env_prefix="MOVIEREC_OPERATOR_", extra="ignore")

    prometheus_url: str = "http://prometheus:9090"
    mlflow_tracking_uri: str = "http://mlflow:5000"
    # MLflow URI the recommender pods use (defaults to the operator's own)
    serving_tracking_uri: str | None = None
    # Kafka the recommender pods send provenance events to (HOST:PORT[,...]); None: they send none,
    # and the online evaluator sees no exposures of the tracks this operator runs
    serving_kafka_bootstrap: str | None = None
    serving_provenance_topic: str = "recommendations"
    image: str = constants.DEFAULT_IMAGE
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    # Who may create a RecommenderModel may choose its pods' image: only these. Comma-separated;
    # "ghcr.io/org/" (trailing slash) allows every repository under it, "ghcr.io/org/app" that
    # repository with any tag or digest. Empty: the repository of `image` only.
    allowed_image_prefixes: Annotated[tuple[str, ...], NoDecode] = ()
    # how often the timer re-reconciles every RecommenderModel (alias polling, analysis due?)
    timer_interval_seconds: float = Field(default=10.0, gt=0)
    # tests: replaces every spec.rollout.interval (seconds) so a rollout takes seconds
    analysis_interval_override: float | None = Field(default=None, gt=0)
    # a Deployment not available this long fails the object (stable) or the canary (rollback)
    deployment_deadline_seconds: float = Field(default=600.0, gt=0)
    # off only to test the rollout logic on a control plane whose pods cannot run
    require_available_deployments: bool = True
    # port for the operator's own /metrics (0: off)
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    kubeconfig: str | None = None  # None: in-cluster config, else the default kubeconfig
    # the namespace(s) watched, comma-separated (the chart sets the release namespace);
    # None: every namespace
    namespace: str | None = None
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    # MLflow and Prometheus calls: each attempt times out, a few quick retries, then the
    # reconciliation is retried later (kopf.TemporaryError) with the reason in status
    outbound_timeout_seconds: float = Field(default=5.0, gt=0)
    outbound_retries: int = Field(default=2, ge=0, le=10)
    # let Kopf watch namespaces and CRDs cluster-wide (needs a ClusterRole; off: namespaced Role)
    scan_cluster: bool = False

    @field_validator("allowed_image_prefixes", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value
