"""How a simulated user reacts to a movie: how far they watch it and whether they rate it (pure)."""

from __future__ import annotations

import numpy as np

# Watch depth: a logistic curve of the true rating. Around WATCH_MIDPOINT stars half the movie is
# watched; a movie the user would give 4.5 stars is mostly watched to the end, a 2-star one is
# abandoned after a few minutes. The noise keeps it a tendency, not a rule.
WATCH_MIDPOINT = 3.3
WATCH_SLOPE = 2.2
WATCH_NOISE = 0.8
# Rating propensity grows with how much was watched: people rate what they finished.
RATE_BASE = 0.3
RATE_PER_WATCHED = 0.5
# Attention per list position: the 5th item gets 0.32 of the top item's, the 10th 0.08. Position
# bias in ranked lists is steep (eye tracking and click logs); with a slower decay (0.9 before)
# a user nearly always found something in 20 items, so a random list earned 85% of a good one's
# plays and online engagement could not tell a broken model from a good one.
ATTENTION_DECAY = 0.75


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def watch_fraction(true_rating: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Share of the movie watched (0..1] for each true rating."""
    z = WATCH_SLOPE * (np.asarray(true_rating) - WATCH_MIDPOINT)
    return _sigmoid(z + rng.normal(0.0, WATCH_NOISE, size=np.shape(true_rating)))


def watched_minutes(fraction: np.ndarray, runtime: np.ndarray) -> np.ndarray:
    """Whole minutes streamed, at least one and at most the runtime."""
    return np.clip(np.ceil(fraction * runtime), 1, runtime).astype(np.int64)


def rate_probability(fraction: np.ndarray) -> np.ndarray:
    """Probability of rating a movie after watching `fraction` of it."""
    return RATE_BASE + RATE_PER_WATCHED * np.asarray(fraction)


def accept_probability(true_rating: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Probability of picking a recommended movie: appeal times attention for the list position.

    Attention decays down the list (people look at the top of a list first); appeal follows the
    user's true rating, so a list of movies the user likes earns clearly more plays.
    """
    appeal = _sigmoid(2.0 * (np.asarray(true_rating) - 3.9))
    attention = ATTENTION_DECAY ** np.asarray(position)
    return 0.6 * appeal * attention
