"""Shared test data for the model tests: a hand-computable toy set and a small latent-factor world."""

from __future__ import annotations

import numpy as np
from movierec_recommender.data import RatingsData

# mu = 27 / 9 = 3, so with no biases the residuals are r - 3:
#        x    y    z
#   a    5    4    .        a:  2   1   .
#   b    4    5    1        b:  1   2  -2
#   c    1    .    3        c: -2   .   0
#   d    .    1    3        d:  .  -2   0
TOY = [
    ("a", "x", 5), ("a", "y", 4),
    ("b", "x", 4), ("b", "y", 5), ("b", "z", 1),
    ("c", "x", 1), ("c", "z", 3),
    ("d", "y", 1), ("d", "z", 3),
]  # fmt: skip


def toy_data() -> RatingsData:
    users, movies, ratings = zip(*TOY, strict=True)
    return RatingsData.from_arrays(users, movies, ratings)


def latent_data(
    n_users: int = 120, n_items: int = 80, density: float = 0.25, seed: int = 0
) -> RatingsData:
    """Ratings from user/item biases plus a 3-factor taste model, 1..5 stars, with timestamps."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    p = rng.normal(0, 0.8, (n_users, 3))
    q = rng.normal(0, 0.8, (n_items, 3))
    bu = rng.normal(0, 0.4, n_users)
    bi = rng.normal(0, 0.5, n_items)
    r = 3.4 + bu[u] + bi[i] + (p[u] * q[i]).sum(1) + rng.normal(0, 0.5, len(u))
    r = np.clip(np.rint(r), 1, 5)
    ts = rng.integers(1_000_000_000, 1_100_000_000, len(u))
    return RatingsData.from_arrays(
        np.char.add("u", u.astype(str)), np.char.add("m", i.astype(str)), r, ts
    )
