"""Feedback-loop signals: how concentrated exposure is and how much the recommender feeds itself."""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
import pandas as pd

from movierec_recommender.online import stats


def exposure_gini(shown_movies: pd.Series) -> float:
    """Gini of how often each shown movie was shown (0 even, near 1 a few movies get it all)."""
    return stats.gini(shown_movies.value_counts().to_numpy())


def popular_share(shown_movies: pd.Series, popular: Collection[str]) -> float:
    """Share of shown slots that went to the most popular movies of the catalogue."""
    if not popular or shown_movies.empty:
        return math.nan
    return float(shown_movies.isin(list(popular)).mean())


def catalogue_coverage(shown_movies: pd.Series, catalogue_size: int) -> float:
    """Share of the catalogue shown at least once."""
    if catalogue_size <= 0:
        return math.nan
    return min(1.0, shown_movies.nunique() / catalogue_size)


def self_confirmation(shown: pd.DataFrame, ratings: pd.DataFrame) -> tuple[float, int]:
    """Share of ratings on a movie recommended to that user before the rating, and the ratings.

    ``shown``: user_id, movie_id, time (one row per shown slot); ``ratings``: user_id, movie_id,
    time for the new ratings of the users in ``shown``. A share rising over time means the model
    increasingly learns from its own recommendations (a feedback loop).
    """
    if ratings.empty:
        return math.nan, 0
    first = shown.groupby(["user_id", "movie_id"])["time"].min().rename("first_shown")
    merged = ratings.merge(first.reset_index(), on=["user_id", "movie_id"], how="left")
    confirmed = merged["first_shown"].notna() & (merged["first_shown"] < merged["time"])
    return float(np.mean(confirmed)), len(ratings)
