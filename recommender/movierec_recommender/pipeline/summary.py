"""The JSON line each training command prints, as typed models its readers (the demo) parse."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Metrics = dict[
    str, float
]  # "rmse", "mae", "ndcg@10", "precision@10", ... (docs/training-pipeline.md)


class TrainSummary(BaseModel):
    """`movierec train`: one algorithm fitted, evaluated on the holdout, saved (and registered)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algo: str
    out: str
    n_ratings: int
    train_ratings: int
    test_ratings: int
    metrics: Metrics = Field(description="holdout metrics plus fit_seconds and model_bytes")
    registered: str | None = None
    version: str | None = None
    run_id: str | None = None
    lineage: dict[str, Any] = Field(default_factory=dict)


class RetrainSummary(BaseModel):
    """`movierec retrain`: both algorithms, the better one registered, the promotion decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    algo: str
    decision: str
    promoted: bool
    reason: str
    champion_before: str | None
    champion_after: str | None
    challenger_metrics: Metrics
    champion_metrics: Metrics | None
    runs: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, Metrics] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    quality_gate: str = "passed"

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class StoppedSummary(BaseModel):
    """`movierec retrain` when the quality gate refused the data (exit 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None
    decision: str = "stopped"
    reason: str
    quality_report_id: int | None = None
