"""Fast path for scale: explicit ratings as arrays (MovieLens-sized) and the ratings CSV writer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from movierec_simulator.sampling import ChoiceModel, sample_without_replacement, split_counts
from movierec_simulator.world import World, sample_ratings

log = logging.getLogger(__name__)

CSV_HEADER = "user_id,movie_id,rating,timestamp\n"
DEFAULT_START = datetime(2015, 1, 1)
DEFAULT_SPAN_DAYS = 3650
# At most this share of the catalogue per user, so heavy users stay plausible.
MAX_SHARE_PER_USER = 0.5
# Cells in one (users × movies) block of choice weights: bounds memory (~8 bytes each, a few copies).
BLOCK_CELLS = 2_000_000


@dataclass(frozen=True, eq=False)
class Ratings:
    """Ratings as parallel arrays; indexes refer to the world, timestamps are epoch seconds."""

    user_idx: np.ndarray  # int64
    movie_idx: np.ndarray  # int64
    rating: np.ndarray  # int8, 1..5
    timestamp: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.rating)


def generate_ratings(
    world: World,
    n_ratings: int,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    span_days: float = DEFAULT_SPAN_DAYS,
) -> Ratings:
    """`n_ratings` ratings (fewer only if the catalogue is exhausted): users by activity pick movies
    by popularity × taste without repeats and rate them from their true affinity plus noise."""
    if n_ratings < 0:
        raise ValueError(f"n_ratings must be >= 0, got {n_ratings}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A71]))
    cap = max(1, int(world.n_movies * MAX_SHARE_PER_USER))
    counts = split_counts(n_ratings, world.activity, cap, rng)
    model = ChoiceModel(world)
    block = _block_size(world)
    # Reused buffers: fresh multi-megabyte arrays per block cost as much in page faults as maths.
    weights = np.empty((block, world.n_movies), dtype=np.float32)
    cdf = np.empty((block, world.n_movies), dtype=np.float64)
    parts = []
    for lo in range(0, world.n_users, block):
        users = np.arange(lo, min(lo + block, world.n_users))
        parts.append(_block(world, model, users, counts[users], rng, weights=weights, cdf=cdf))
    user_idx = np.concatenate([p[0] for p in parts])
    movie_idx = np.concatenate([p[1] for p in parts])
    rating = np.concatenate([p[2] for p in parts])
    timestamp = _timestamps(user_idx, world.n_users, start, span_days, rng)
    return Ratings(user_idx, movie_idx, rating, timestamp)


def _block_size(world: World) -> int:
    return max(1, min(world.n_users, BLOCK_CELLS // world.n_movies))


def _block(
    world: World,
    model: ChoiceModel,
    users: np.ndarray,
    k: np.ndarray,
    rng: np.random.Generator,
    *,
    weights: np.ndarray,
    cdf: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    active = users[k > 0]
    if active.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.int8)
    w = model.weights(active, out=weights)
    rows, cols = sample_without_replacement(w, k[k > 0], rng, cdf_out=cdf)
    u = active[rows]
    return u, cols, sample_ratings(world.true_rating(u, cols), rng)


def _timestamps(
    user_idx: np.ndarray, n_users: int, start: datetime, span_days: float, rng: np.random.Generator
) -> np.ndarray:
    """Each user is active in one window of the span; their ratings fall inside it, in order."""
    t0 = int(start.replace(tzinfo=UTC).timestamp())
    span = int(span_days * 86400)
    length = np.minimum(rng.lognormal(np.log(20 * 86400), 1.5, size=n_users), span)
    first = rng.random(n_users) * (span - length)
    offset = first[user_idx] + rng.random(user_idx.size) * length[user_idx]
    ts = t0 + offset.astype(np.int64)
    # Sort each user's times among that user's rows, so row order is chronological per user.
    out = np.empty_like(ts)
    out[np.argsort(user_idx, kind="stable")] = ts[np.lexsort((ts, user_idx))]
    return out


def write_ratings_csv(
    path: Path | str, world: World, ratings: Ratings, chunk: int = 500_000
) -> int:
    """Write `user_id,movie_id,rating,timestamp` rows (ids as the stream shows them); returns rows."""
    movie_ids = np.asarray(world.movie_ids, dtype=object)
    stars = np.array(["0", "1", "2", "3", "4", "5"], dtype=object)
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        out.write(CSV_HEADER)
        for lo in range(0, len(ratings), chunk):
            hi = lo + chunk
            users = world.user_ids[ratings.user_idx[lo:hi]].astype(str).tolist()
            movies = movie_ids[ratings.movie_idx[lo:hi]].tolist()
            rates = stars[ratings.rating[lo:hi]].tolist()
            times = ratings.timestamp[lo:hi].astype(str).tolist()
            out.write("\n".join(map(",".join, zip(users, movies, rates, times, strict=True))))
            out.write("\n")
    log.info("wrote %d ratings to %s", len(ratings), path)
    return len(ratings)
