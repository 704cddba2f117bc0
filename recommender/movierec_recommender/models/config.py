"""Model hyper-parameters as pydantic models (logged to MLflow as params); defaults from docs/models.md."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class KNNConfig(BaseModel):
    """Neighbourhood model on baseline residuals (Koren 2010 §2.2; Surprise's KNNBaseline family).

    Defaults come from the tuning run recorded in docs/models.md (MovieLens 100K, time split).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    neighbors: int = Field(40, ge=1, description="neighbours kept per user (user-user) or item")
    min_support: int = Field(2, ge=1, description="co-raters needed before a similarity counts")
    shrinkage: float = Field(50.0, ge=0, description="similarity *= n / (n + shrinkage)")
    min_similarity: float = Field(0.0, ge=0, description="only neighbours above this similarity")
    damping: float = Field(0.5, ge=0, description="neighbour residual / (sum |sim| + damping)")
    baseline_epochs: int = Field(5, ge=0, description="ALS sweeps for the user and item biases")
    reg_user: float = Field(15.0, ge=0, description="user-bias regularisation")
    reg_item: float = Field(10.0, ge=0, description="item-bias regularisation")
    ranking: Literal["rating", "evidence"] = Field(
        "evidence",
        description=(
            "top-N score: 'rating' = predicted rating; 'evidence' = similarity-weighted "
            "evidence from the user's ratings (support-aware, better NDCG)"
        ),
    )
    max_candidates: int | None = Field(
        None,
        ge=1,
        description="cap the pool of candidate neighbours (most active first); bounds "
        "user-user fit time at scale",
    )
    max_context_ratings: int | None = Field(
        None,
        ge=1,
        description="in similarity computation only, use at most this many ratings per context "
        "row (users for item-item), chosen deterministically; bounds cost on heavy raters",
    )
    chunk_nnz: int = Field(
        20_000_000, ge=1000, description="similarity entries computed per chunk (memory bound)"
    )
