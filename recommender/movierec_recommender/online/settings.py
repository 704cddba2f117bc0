"""Settings of the online evaluator service (env prefix MOVIEREC_EVALUATOR_, CLI flags override)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EvaluatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOVIEREC_EVALUATOR_")

    db_url: str = Field(description="store holding exposures and outcomes")
    interval_seconds: float = Field(default=60.0, gt=0, description="seconds between rounds")
    port: int = Field(default=9108, ge=0, le=65535, description="/metrics port (0: none)")
    host: str = "0.0.0.0"
    lookback_minutes: float = Field(
        default=360.0, gt=0, description="exposures served this long ago or later are evaluated"
    )
    window_minutes: float = Field(
        default=30.0, gt=0, description="a watch counts as engagement this soon after an answer"
    )
    latency_budget_ms: float = 800.0
    min_group_size: int = Field(default=20, ge=1)
    baseline_track: str = "stable"
    ab_alpha: float = Field(default=0.05, gt=0, lt=1)
    ab_power: float = Field(default=0.8, gt=0, lt=1)
    ab_min_effect: float = Field(default=0.05, gt=0, description="relative to the baseline")
    tracking_uri: str | None = Field(
        default=None, description="MLflow, to load each served version for online RMSE"
    )
    models: dict[str, str] = Field(
        default_factory=dict, description="model version -> local model folder (online RMSE)"
    )
    max_tracks: int = Field(default=4, ge=1)
    max_versions_per_track: int = Field(default=2, ge=1)
