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
    blend: bool | None = Field(
        None,
        description="rating predictor: blend this model's neighbourhood term with the other "
        "algorithm's and the baseline, weights fitted on a validation split of the training "
        "data; None = on for item-item, off for user-user",
    )
    blend_max_ratings: int = Field(
        5_000_000,
        ge=0,
        description="the blend fits a second neighbourhood (and both twice): skipped above this "
        "many ratings, where it would double the fit time",
    )
    ranking: Literal["topn", "evidence", "rating"] = Field(
        "topn",
        description=(
            "top-N score: 'topn' = the ranking scorer (item-item: EASE weights, or a cosine "
            "graph on large catalogues; user-user: cosine neighbourhoods on the rating "
            "matrix); 'evidence' = similarity mass of the rating neighbours; 'rating' = "
            "predicted rating"
        ),
    )
    rerank_weight: float = Field(
        0.25,
        ge=0,
        description="ranking scorer: the top `rerank_candidates` are re-ranked by score / the "
        "user's best score + this x the predicted rating (scaled to -1..1); 0 = off",
    )
    rerank_candidates: int = Field(100, ge=1, description="candidates re-ranked per user")
    rank_neighbors: int = Field(
        100, ge=1, description="ranking scorer: neighbours kept per user / movie (cosine graph)"
    )
    rank_power: float = Field(
        3.0, gt=0, description="ranking scorer: cosine similarities raised to this power"
    )
    rank_popularity: float = Field(
        0.1, ge=0, description="ranking scorer: scores divided by (ratings of the movie)^this"
    )
    ease_l2: float = Field(
        12.0,
        gt=0,
        description="item-item ranking: EASE ridge penalty, as a multiple of the mean diagonal "
        "of the Gram matrix (so it carries over between data sizes)",
    )
    ease_neighbors: int = Field(
        400, ge=1, description="item-item ranking: EASE weights kept per movie (largest |w|)"
    )
    ease_max_items: int = Field(
        5000,
        ge=0,
        description="item-item ranking uses EASE up to this many movies (a dense n x n "
        "inverse), the cosine graph above",
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
