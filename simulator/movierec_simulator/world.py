"""The synthetic world: movies, users and their hidden tastes, as a pure seeded function of its sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from movierec_ingestor.events import slugify

from movierec_simulator.vocab import (
    ADJECTIVES,
    AGE_TASTE,
    GENDER_TASTE,
    GENRE_WEIGHTS,
    GENRES,
    NAMES,
    NOUNS,
    OCCUPATIONS,
    ROMAN,
)

N_FACTORS = 8
GLOBAL_MEAN = 2.8
RATING_NOISE = 0.6
MISSING_YEAR_SHARE = 0.03
FIRST_USER_ID = 1
# Scales of the affinity terms (standard deviations on the 1-5 scale). Chosen so that biases and
# taste each explain a visible share of the rating variance, as in MovieLens: a bias-only model
# beats the global mean, and taste-aware models beat the bias-only one.
USER_BIAS_SD = 0.3
MOVIE_BIAS_SD = 0.35
MOVIE_BIAS_FROM_POPULARITY = 0.15
GENRE_TASTE_SD = 0.45
FACTOR_SD = 0.35  # per entry; the dot product of two k=8 vectors then has sd ~0.35
# Users fall into taste communities (archetypes) plus individual variation: the neighbourhood
# structure that makes collaborative filtering work on real data.
N_ARCHETYPES = 8
INDIVIDUAL_SHARE = 0.35  # share of a user's taste that is their own, not their community's


@dataclass(frozen=True, eq=False)
class World:
    """Movies and users with the hidden tastes that drive every simulated choice and rating.

    Indexes (`user_idx`, `movie_idx`) are positions in these arrays; ids are what the stream shows.
    """

    seed: int
    movie_ids: tuple[str, ...]
    titles: tuple[str, ...]
    years: np.ndarray  # int32, 0 = unknown
    genres: np.ndarray  # bool (n_movies, len(GENRES))
    runtimes: np.ndarray  # int32 minutes
    popularity: np.ndarray  # float64, heavy-tailed, > 0
    movie_bias: np.ndarray  # float64
    movie_factors: np.ndarray  # float64 (n_movies, N_FACTORS)
    user_ids: np.ndarray  # int64
    ages: np.ndarray  # int32
    genders: tuple[str, ...]
    occupations: tuple[str, ...]
    user_bias: np.ndarray
    genre_affinity: np.ndarray  # (n_users, len(GENRES))
    user_factors: np.ndarray  # (n_users, N_FACTORS)
    activity: np.ndarray  # relative activity level, heavy-tailed, mean ~1
    global_mean: float = GLOBAL_MEAN
    _movie_lookup: dict[str, int] = field(default_factory=dict, repr=False)
    # Taste = user_vecs @ movie_vecs.T: genre affinities and latent factors side by side.
    _user_vecs: np.ndarray = field(init=False, repr=False)
    _movie_vecs: np.ndarray = field(init=False, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_movies(self) -> int:
        return len(self.movie_ids)

    @classmethod
    def generate(cls, n_users: int, n_movies: int, seed: int = 0) -> World:
        """A deterministic world: same sizes and seed give identical ids, metadata and tastes."""
        if n_users < 1 or n_movies < 1:
            raise ValueError(
                f"a world needs at least one user and one movie, got {n_users}, {n_movies}"
            )
        root = np.random.SeedSequence([seed, n_users, n_movies])
        movie_rng, user_rng = (np.random.default_rng(s) for s in root.spawn(2))
        movies = _generate_movies(n_movies, movie_rng)
        users = _generate_users(n_users, user_rng)
        return cls(seed=seed, **movies, **users)

    def __post_init__(self) -> None:
        self._movie_lookup.update({m: i for i, m in enumerate(self.movie_ids)})
        g = self.genres.astype(np.float64)
        genre_features = g / np.sqrt(g.sum(axis=1, keepdims=True))
        object.__setattr__(self, "_user_vecs", np.hstack([self.genre_affinity, self.user_factors]))
        object.__setattr__(self, "_movie_vecs", np.hstack([genre_features, self.movie_factors]))

    # --- lookups -------------------------------------------------------------------------------

    def movie_index(self, movie_id: str) -> int | None:
        return self._movie_lookup.get(movie_id)

    def user_index(self, user_id: int) -> int | None:
        idx = int(user_id) - FIRST_USER_ID
        return idx if 0 <= idx < self.n_users else None

    def movie_genres(self, movie_idx: int) -> list[str]:
        return [GENRES[g] for g in np.flatnonzero(self.genres[movie_idx])]

    def movie_record(self, movie_idx: int) -> dict[str, Any]:
        """Public metadata of a movie (what the metadata API and `movies.csv` expose)."""
        year = int(self.years[movie_idx])
        return {
            "movie_id": self.movie_ids[movie_idx],
            "title": self.titles[movie_idx],
            "year": year or None,
            "genres": self.movie_genres(movie_idx),
            "runtime": int(self.runtimes[movie_idx]),
            "popularity": round(float(self.popularity[movie_idx]), 3),
        }

    def user_record(self, user_idx: int) -> dict[str, Any]:
        """Public metadata of a user (what the metadata API and `users.csv` expose)."""
        return {
            "user_id": int(self.user_ids[user_idx]),
            "age": int(self.ages[user_idx]),
            "occupation": self.occupations[user_idx],
            "gender": self.genders[user_idx],
        }

    # --- the hidden truth ------------------------------------------------------------------------

    def taste(self, user_idx: np.ndarray | int, movie_idx: np.ndarray | int) -> np.ndarray:
        """The personal part of the affinity (genre taste + latent factors), broadcast elementwise."""
        u, m = np.broadcast_arrays(np.asarray(user_idx), np.asarray(movie_idx))
        return np.einsum("...d,...d->...", self._user_vecs[u], self._movie_vecs[m])

    def true_rating(self, user_idx: np.ndarray | int, movie_idx: np.ndarray | int) -> np.ndarray:
        """Expected rating before noise: global mean + user bias + movie bias + taste · features."""
        u = np.asarray(user_idx)
        m = np.asarray(movie_idx)
        return self.global_mean + self.user_bias[u] + self.movie_bias[m] + self.taste(u, m)

    def taste_vectors(self, user_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(user vectors, movie vectors) whose dot products are the tastes: for blocked kernels."""
        return self._user_vecs[user_idx], self._movie_vecs

    def taste_rows(self, user_idx: np.ndarray) -> np.ndarray:
        """Taste of each given user for every movie: shape (len(user_idx), n_movies)."""
        return self._user_vecs[user_idx] @ self._movie_vecs.T

    def true_rating_rows(self, user_idx: np.ndarray) -> np.ndarray:
        """True rating of each given user for every movie: shape (len(user_idx), n_movies)."""
        return (
            self.global_mean
            + self.user_bias[user_idx, None]
            + self.movie_bias[None, :]
            + self.taste_rows(user_idx)
        )


def sample_ratings(
    affinity: np.ndarray, rng: np.random.Generator, noise: float = RATING_NOISE, shift: float = 0.0
) -> np.ndarray:
    """Observed star ratings: round(clip(affinity + shift + noise, 1, 5)) as int8."""
    noisy = affinity + shift + rng.normal(0.0, noise, size=np.shape(affinity))
    return np.rint(np.clip(noisy, 1.0, 5.0)).astype(np.int8)


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _generate_movies(n: int, rng: np.random.Generator) -> dict[str, Any]:
    n_genres = len(GENRES)
    # 1-3 genres each: Gumbel top-3 over weighted genres gives distinct genres per movie.
    keys = np.log(GENRE_WEIGHTS)[None, :] + rng.gumbel(size=(n, n_genres))
    order = np.argsort(-keys, axis=1)[:, :3]
    counts = rng.choice([1, 2, 3], size=n, p=[0.45, 0.35, 0.2])
    genres = np.zeros((n, n_genres), dtype=bool)
    for slot in range(3):
        rows = np.flatnonzero(counts > slot)
        genres[rows, order[rows, slot]] = True

    # Zipf-like popularity over a random ranking, with some multiplicative noise.
    rank = rng.permutation(n)
    popularity = 250.0 * (rank + 1.0) ** -0.9 * rng.lognormal(0.0, 0.25, size=n)
    popularity = np.maximum(popularity, 0.001)

    years = np.clip(2025 - np.floor(rng.exponential(16.0, size=n)), 1920, 2025).astype(np.int32)
    years[rng.random(n) < MISSING_YEAR_SHARE] = 0

    runtime = rng.normal(108.0, 18.0, size=n)
    g = {name: i for i, name in enumerate(GENRES)}
    runtime += 15.0 * (genres[:, g["Drama"]] | genres[:, g["War"]])
    runtime -= 15.0 * (genres[:, g["Animation"]] | genres[:, g["Children"]])
    runtimes = np.clip(np.rint(runtime), 80, 180).astype(np.int32)

    # Popular movies are a little better on average (quality draws audiences), but far from fully.
    bias = MOVIE_BIAS_FROM_POPULARITY * _zscore(np.log(popularity)) + rng.normal(
        0.0, MOVIE_BIAS_SD, size=n
    )
    factors = rng.normal(0.0, FACTOR_SD, size=(n, N_FACTORS))
    titles, ids = _titles(n, years, rng)
    return {
        "movie_ids": ids,
        "titles": titles,
        "years": years,
        "genres": genres,
        "runtimes": runtimes,
        "popularity": popularity,
        "movie_bias": bias,
        "movie_factors": factors,
    }


def _titles(
    n: int, years: np.ndarray, rng: np.random.Generator
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Titles from word lists and their unique slug ids; clashes become sequels ("... 2")."""
    pattern = rng.integers(0, 8, size=n)
    a1, a2 = rng.integers(0, len(ADJECTIVES), size=(2, n))
    n1, n2 = rng.integers(0, len(NOUNS), size=(2, n))
    who = rng.integers(0, len(NAMES), size=n)
    roman = rng.integers(0, len(ROMAN), size=n)
    number = rng.integers(2, 100, size=n)
    titles: list[str] = []
    ids: list[str] = []
    seen: set[str] = set()
    for i in range(n):
        adj, adj2 = ADJECTIVES[a1[i]].title(), ADJECTIVES[a2[i]].title()
        noun, noun2 = NOUNS[n1[i]].title(), NOUNS[n2[i]].title()
        title = (
            f"The {adj} {noun}",
            f"{noun} of the {noun2}",
            f"{NAMES[who[i]]}'s {noun}",
            f"{noun}: {adj2} {noun2}",
            f"{adj} {noun} {ROMAN[roman[i]]}",
            f"The {noun} and the {noun2}",
            f"{number[i]} {adj} {noun}s",
            f"{adj} {noun}",
        )[pattern[i]]
        year = int(years[i]) or None
        slug, base, sequel = slugify(title, year), title, 2
        while slug in seen:
            title = f"{base} {sequel}"
            slug, sequel = slugify(title, year), sequel + 1
        seen.add(slug)
        titles.append(title)
        ids.append(slug)
    return tuple(titles), tuple(ids)


def _generate_users(n: int, rng: np.random.Generator) -> dict[str, Any]:
    ages = np.clip(np.rint(rng.gamma(4.0, 6.0, size=n) + 12), 13, 85).astype(np.int32)
    female = rng.random(n) < 0.42
    genders = tuple("F" if f else "M" for f in female)
    occupations = _occupations(ages, rng)

    age_z = np.clip((ages - 35.0) / 15.0, -1.5, 2.0)
    gender_sign = np.where(female, 1.0, -0.5)
    community = rng.choice(N_ARCHETYPES, size=n, p=_community_shares())
    own, shared = np.sqrt(INDIVIDUAL_SHARE), np.sqrt(1.0 - INDIVIDUAL_SHARE)
    archetype_genres = rng.normal(0.0, GENRE_TASTE_SD, size=(N_ARCHETYPES, len(GENRES)))
    archetype_factors = rng.normal(0.0, FACTOR_SD, size=(N_ARCHETYPES, N_FACTORS))
    genre_affinity = (
        age_z[:, None] * AGE_TASTE[None, :]
        + gender_sign[:, None] * GENDER_TASTE[None, :]
        + shared * archetype_genres[community]
        + own * rng.normal(0.0, GENRE_TASTE_SD, size=(n, len(GENRES)))
    )
    factors = shared * archetype_factors[community] + own * rng.normal(
        0.0, FACTOR_SD, size=(n, N_FACTORS)
    )
    # Older users rate a little more generously: something for fairness analyses to find.
    user_bias = 0.08 * age_z + rng.normal(0.0, USER_BIAS_SD, size=n)
    # A few heavy users and a long tail of occasional ones, as in every ratings log.
    activity = rng.lognormal(0.0, 0.9, size=n)
    return {
        "activity": activity / activity.mean(),
        "user_ids": np.arange(FIRST_USER_ID, FIRST_USER_ID + n, dtype=np.int64),
        "ages": ages,
        "genders": genders,
        "occupations": occupations,
        "user_bias": user_bias,
        "genre_affinity": genre_affinity,
        "user_factors": factors,
    }


def _community_shares() -> np.ndarray:
    shares = 1.0 / np.arange(1, N_ARCHETYPES + 1) ** 0.5
    return shares / shares.sum()


def _occupations(ages: np.ndarray, rng: np.random.Generator) -> tuple[str, ...]:
    names = [o[0] for o in OCCUPATIONS]
    weights = np.array([o[1] for o in OCCUPATIONS])
    low = np.array([o[2] for o in OCCUPATIONS])
    high = np.array([o[3] for o in OCCUPATIONS])
    allowed = (ages[:, None] >= low[None, :]) & (ages[:, None] <= high[None, :])
    keys = np.where(allowed, np.log(weights)[None, :] + rng.gumbel(size=allowed.shape), -np.inf)
    return tuple(names[j] for j in np.argmax(keys, axis=1))
