"""The retraining job's settings: one pydantic model, built by the CLI and logged with every run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

ALGORITHMS = ("user-user", "item-item")


class PromotionRule(BaseModel):
    """When a challenger replaces the champion (see docs/training-pipeline.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rmse_gain: float = Field(
        default=0.001,
        ge=0,
        description="challenger RMSE must be at least this much below the champion's",
    )
    ndcg_tolerance: float = Field(
        default=0.0,
        ge=0,
        description="challenger NDCG@10 may be at most this much below the champion's",
    )
    fairness_tolerance: float = Field(
        default=0.0, ge=0, description="challenger fairness ratio may be at most this much below"
    )


class RetrainConfig(BaseModel):
    """Everything one `movierec retrain` run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db_url: str
    name: str = Field(min_length=1, description="MLflow registered model name")
    tracking_uri: str | None = None
    experiment: str = "movierec"
    force_gate: bool = Field(default=False, description="train even when the quality gate fails")
    force_promote: bool = False
    reason: str | None = Field(
        default=None, description="why a promotion is forced (required with it)"
    )
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="latest share of ratings held out"
    )
    k: int = Field(default=10, ge=1, description="cut-off of the ranking metrics")
    min_group_users: int = Field(
        default=5,
        ge=1,
        description="demographic groups with fewer test users are left out of fairness",
    )
    algorithms: tuple[str, ...] = ALGORITHMS
    model_configs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-algorithm overrides of the model config"
    )
    promotion: PromotionRule = PromotionRule()

    @model_validator(mode="after")
    def _check(self) -> RetrainConfig:
        if self.force_promote and not (self.reason and self.reason.strip()):
            raise ValueError("--force-promote needs --reason saying why")
        unknown = [a for a in (*self.algorithms, *self.model_configs) if a not in ALGORITHMS]
        if unknown or not self.algorithms:
            raise ValueError(f"algorithms must be among {list(ALGORITHMS)}, got {unknown or '[]'}")
        return self
