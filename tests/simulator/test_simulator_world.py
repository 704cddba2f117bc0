"""The world: deterministic, well-formed metadata, demographic tastes, and learnable ratings."""

from __future__ import annotations

import numpy as np
import pytest
from movierec_ingestor.events import SLUG_RE
from movierec_simulator.ratings import generate_ratings
from movierec_simulator.vocab import GENRE_INDEX, GENRES
from movierec_simulator.world import World

from tests.simulator.knn import item_knn_rmse, precision_at_10, split


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(1500, 600, seed=3)


def test_same_seed_same_world_and_other_seed_differs() -> None:
    a, b, c = World.generate(300, 200, 7), World.generate(300, 200, 7), World.generate(300, 200, 8)
    assert a.movie_ids == b.movie_ids and a.titles == b.titles
    assert np.array_equal(a.true_rating_rows(np.arange(300)), b.true_rating_rows(np.arange(300)))
    assert a.occupations == b.occupations and np.array_equal(a.ages, b.ages)
    assert a.movie_ids != c.movie_ids


def test_movie_ids_are_unique_slugs_and_metadata_is_plausible(world: World) -> None:
    assert len(set(world.movie_ids)) == world.n_movies
    assert all(SLUG_RE.match(m) for m in world.movie_ids)
    no_year = world.years == 0
    assert 0 < no_year.sum() < 0.1 * world.n_movies
    with_year = [m for m, y in zip(world.movie_ids, world.years, strict=True) if y]
    assert all(m.rsplit("+", 1)[1].isdigit() for m in with_year)
    per_movie = world.genres.sum(axis=1)
    assert per_movie.min() == 1 and per_movie.max() == 3
    assert world.genres.any(axis=0).sum() == len(GENRES)
    assert world.runtimes.min() >= 80 and world.runtimes.max() <= 180
    # Heavy tail: the 10% most popular movies hold much more than 10% of the popularity.
    pop = np.sort(world.popularity)[::-1]
    assert pop[: world.n_movies // 10].sum() > 0.4 * pop.sum()


def test_records_match_the_metadata_contract(world: World) -> None:
    movie = world.movie_record(0)
    assert set(movie) == {"movie_id", "title", "year", "genres", "runtime", "popularity"}
    assert movie["movie_id"] == world.movie_ids[0] and movie["genres"]
    user = world.user_record(0)
    assert set(user) == {"user_id", "age", "occupation", "gender"}
    assert world.user_index(user["user_id"]) == 0
    assert world.user_index(0) is None and world.user_index(10**9) is None
    assert world.movie_index("no+such+movie") is None


def test_tastes_lean_with_age_and_gender(world: World) -> None:
    aff = world.genre_affinity
    old, young = world.ages >= 50, world.ages <= 25
    war = GENRE_INDEX["War"]
    assert aff[old, war].mean() - aff[young, war].mean() > 0.2
    female = np.array([g == "F" for g in world.genders])
    romance = GENRE_INDEX["Romance"]
    assert aff[female, romance].mean() - aff[~female, romance].mean() > 0.2
    # Occupations respect age: students are young, retirees are not.
    students = np.array([o == "college/grad student" for o in world.occupations])
    retired = np.array([o == "retired" for o in world.occupations])
    assert students.any() and world.ages[students].max() <= 35
    assert not retired.any() or world.ages[retired].min() >= 55


def test_true_rating_is_consistent_elementwise_and_by_rows(world: World) -> None:
    users = np.array([0, 5, 9])
    rows = world.true_rating_rows(users)
    assert np.allclose(world.true_rating(users[:, None], np.arange(world.n_movies)[None, :]), rows)
    assert float(world.true_rating(5, 17)) == pytest.approx(rows[1, 17])


def test_generated_ratings_are_learnable(world: World) -> None:
    """kNN beats the global mean on RMSE, and personal ranking beats most-popular clearly."""
    ratings = generate_ratings(world, 60_000, seed=1)
    assert len(ratings) == 60_000
    pairs = ratings.user_idx * world.n_movies + ratings.movie_idx
    assert np.unique(pairs).size == len(ratings)
    assert set(np.unique(ratings.rating).tolist()) <= {1, 2, 3, 4, 5}
    true = world.true_rating(ratings.user_idx, ratings.movie_idx)
    assert np.corrcoef(true, ratings.rating)[0, 1] > 0.6
    assert 3.2 < ratings.rating.mean() < 4.0  # MovieLens-like level, not all fives

    shape = (world.n_users, world.n_movies)
    stars = ratings.rating.astype(float)
    test = split(len(ratings), 0.2, seed=0)
    base, knn = item_knn_rmse(ratings.user_idx, ratings.movie_idx, stars, test=test, shape=shape)
    assert knn < 0.93 * base
    pop, personal = precision_at_10(ratings.user_idx, ratings.movie_idx, test, shape)
    assert personal > 1.2 * pop


def test_ratings_are_deterministic_and_chronological_per_user(world: World) -> None:
    a, b = generate_ratings(world, 5000, seed=4), generate_ratings(world, 5000, seed=4)
    assert np.array_equal(a.movie_idx, b.movie_idx) and np.array_equal(a.timestamp, b.timestamp)
    same_user = a.user_idx[1:] == a.user_idx[:-1]
    assert (np.diff(a.timestamp)[same_user] >= 0).all()
