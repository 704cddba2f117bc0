"""Vectorised choice sampling: which movies users pick, from popularity × taste, without repeats."""

from __future__ import annotations

import numpy as np

from movierec_simulator.vocab import GENRES
from movierec_simulator.world import World

# Choice model: P(pick movie m) ∝ popularity^POPULARITY_WEIGHT · exp(TASTE_WEIGHT · appeal), where
# appeal = movie bias + personal taste. Both matter: popularity-only ranking is a fair baseline,
# and personal ranking must beat it clearly.
POPULARITY_WEIGHT = 0.7
TASTE_WEIGHT = 4.0
# How much of the latent-factor taste users see before watching. Genre taste is visible in the
# metadata; the latent fit is mostly discovered by watching, which keeps disappointments (low
# ratings) in the data at any catalogue size instead of users picking only sure hits.
LATENT_VISIBILITY = 0.5


class ChoiceModel:
    """Pick weights of users for every movie, for blocks of users at a time.

    weight(u, m) = popularity_m^POPULARITY_WEIGHT · exp(TASTE_WEIGHT · (bias_m + taste(u, m))),
    computed as exp(one matrix product): the movie-side terms ride along as an extra column, so
    a block costs one float32 GEMM, one in-place exp and (for sampling) one cumulative sum.
    """

    def __init__(
        self,
        world: World,
        genre_boost: np.ndarray | None = None,
        popularity_weight: float | None = None,
        taste_weight: float | None = None,
    ) -> None:
        popularity_weight = POPULARITY_WEIGHT if popularity_weight is None else popularity_weight
        taste_weight = TASTE_WEIGHT if taste_weight is None else taste_weight
        users, movies = world.taste_vectors(np.arange(world.n_users))
        column = popularity_weight * np.log(world.popularity) + taste_weight * world.movie_bias
        if genre_boost is not None:
            column = column + taste_weight * (world.genres @ genre_boost)
        # Shift so the movie term is <= 0: exp stays far from float32 overflow.
        column = column - column.max()
        self._movies = np.hstack([movies, column[:, None]]).astype(np.float32)
        ones = np.ones((world.n_users, 1))
        seen = np.ones(users.shape[1])
        seen[len(GENRES) :] = LATENT_VISIBILITY
        self._users = np.hstack([taste_weight * seen * users, ones]).astype(np.float32)

    def weights(self, user_idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Unnormalised weights, float32 (len(user_idx), n_movies); `out` is reused if given."""
        n = len(user_idx)
        buf = None if out is None else out[:n]
        logits = np.matmul(self._users[user_idx], self._movies.T, out=buf)
        return np.exp(logits, out=logits)


def choice_weights(
    world: World, user_idx: np.ndarray, genre_boost: np.ndarray | None = None
) -> np.ndarray:
    """Pick weights of the given users for every movie (one-off; use ChoiceModel for blocks)."""
    return ChoiceModel(world, genre_boost).weights(user_idx)


def sample_without_replacement(
    weights: np.ndarray, k: np.ndarray, rng: np.random.Generator, cdf_out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw k[r] distinct columns from each row r with probability ∝ weights[r], in draw order.

    Returns (rows, cols) flat arrays grouped by row. One cumulative sum per block (into
    `cdf_out` when given); each row then draws by binary search and rejects repeats.
    """
    n_cols = weights.shape[1]
    k = np.minimum(np.asarray(k, dtype=np.int64), n_cols)
    cdf = np.cumsum(
        weights, axis=1, dtype=np.float64, out=None if cdf_out is None else cdf_out[: len(weights)]
    )
    rows_out: list[np.ndarray] = []
    cols_out: list[np.ndarray] = []
    for r in np.flatnonzero(k > 0).tolist():
        want, row = int(k[r]), cdf[r]
        total = float(row[-1])
        if total <= 0.0:
            continue
        picked = np.zeros(0, dtype=np.int64)
        draws = 2 * want + 8
        # Rejecting repeats while drawing from the unchanged CDF is exact sampling without
        # replacement; once the picks hold most of the mass, rejections get costly: re-normalise.
        while picked.size < want and float(weights[r, picked].sum()) < 0.8 * total:
            cols = np.searchsorted(row, rng.random(draws) * total, side="right")
            picked = _first_unique(np.concatenate([picked, np.minimum(cols, n_cols - 1)]))
            draws = 2 * (want - picked.size) + 8
        picked = picked[:want]
        if picked.size < want:
            picked = _top_up(weights[r], picked, want, rng)
        rows_out.append(np.full(picked.size, r, dtype=np.int64))
        cols_out.append(picked)
    if not rows_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows_out), np.concatenate(cols_out).astype(np.int64)


def _first_unique(values: np.ndarray) -> np.ndarray:
    """Distinct values in order of first appearance."""
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


def _top_up(
    weights: np.ndarray, picked: np.ndarray, want: int, rng: np.random.Generator
) -> np.ndarray:
    """Continue drawing for one row with its picks masked out until it has `want` (or runs dry)."""
    w = np.array(weights, dtype=np.float64)
    w[picked] = 0.0
    want = min(want, picked.size + int(np.count_nonzero(w)))
    parts = [picked]
    have = picked.size
    while have < want:
        cdf = np.cumsum(w)
        need = want - have
        cols = np.searchsorted(cdf, rng.random(need + need // 2 + 4) * cdf[-1], side="right")
        cols = _first_unique(np.minimum(cols, w.size - 1))
        cols = cols[w[cols] > 0][:need]
        w[cols] = 0.0
        parts.append(cols)
        have += cols.size
    return np.concatenate(parts)


def split_counts(total: int, weights: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Split `total` into per-row counts ∝ weights, each at most `cap` (overflow goes elsewhere)."""
    p = np.asarray(weights, dtype=np.float64)
    counts = np.zeros(p.size, dtype=np.int64)
    remaining = int(min(total, cap * p.size))
    while remaining > 0:
        open_rows = counts < cap
        q = np.where(open_rows, p, 0.0)
        counts += rng.multinomial(remaining, q / q.sum())
        over = np.maximum(counts - cap, 0)
        counts -= over
        remaining = int(over.sum())
    return counts
