"""The training pipeline's settings: one pydantic model, built by `train` or `retrain` and logged
with every run."""

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
    coverage_tolerance: float = Field(
        default=0.05,
        ge=0,
        description="challenger catalogue coverage may be at most this much below the champion's",
    )
    popular_share_tolerance: float = Field(
        default=0.05,
        ge=0,
        description="challenger popularity share may be at most this much above the champion's",
    )


class PipelineConfig(BaseModel):
    """Everything one pipeline run needs. `movierec retrain` = every step; `movierec train` = the
    same pipeline with `gate` and `promote` off, one algorithm, `out` and `refit_full` set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db_url: str | None = None
    ratings_csv: str | None = Field(default=None, description="a CSV file instead of the store")
    include_quarantined: bool = Field(default=False, description="with db_url: train on them")
    name: str | None = Field(
        default=None, min_length=1, description="MLflow registered model name (None: no MLflow)"
    )
    gate: bool = Field(default=True, description="run the data-quality gate first (needs db_url)")
    promote: bool = Field(
        default=True, description="alias `challenger`, compare with `champion`, maybe promote"
    )
    out: str | None = Field(default=None, description="also save the chosen model here")
    refit_full: bool = Field(
        default=False,
        description="save/register a refit on all the data (metrics stay the holdout's); off: "
        "the artifact is exactly the evaluated model",
    )
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
    def _check(self) -> PipelineConfig:
        if (self.db_url is None) == (self.ratings_csv is None):
            raise ValueError("give exactly one data source: a database URL or a ratings CSV")
        if self.gate and self.db_url is None:
            raise ValueError("the quality gate needs the database (db_url)")
        if self.promote and not self.name:
            raise ValueError("promotion needs a registered model name")
        if self.force_promote and not (self.reason and self.reason.strip()):
            raise ValueError("--force-promote needs --reason saying why")
        unknown = [a for a in (*self.algorithms, *self.model_configs) if a not in ALGORITHMS]
        if unknown or not self.algorithms:
            raise ValueError(f"algorithms must be among {list(ALGORITHMS)}, got {unknown or '[]'}")
        return self


RetrainConfig = PipelineConfig  # `movierec retrain`'s name for it: every step on
