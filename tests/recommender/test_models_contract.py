"""The contract every recommender passes (docs/CONTRACTS-internal.md, Models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from movierec_recommender.evaluation import rating_metrics, time_split
from movierec_recommender.models import ALGOS, Recommender, build_model, load_model
from pydantic import BaseModel

from tests.recommender.test_models_fixtures import latent_data

ALGO_NAMES = sorted(ALGOS)


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return latent_data()


@pytest.fixture(scope="module", params=ALGO_NAMES)
def fitted(request, data):  # type: ignore[no-untyped-def]
    return build_model(request.param).fit(data)


def test_fit_returns_the_model_and_satisfies_the_protocol(data) -> None:  # type: ignore[no-untyped-def]
    for algo in ALGO_NAMES:
        model = build_model(algo)
        assert model.fit(data) is model
        assert isinstance(model, Recommender)
        assert model.algo == algo
        assert isinstance(model.config, BaseModel)
        assert model.nbytes > 0


def test_predict_covers_every_pair_without_nan(fitted, data) -> None:  # type: ignore[no-untyped-def]
    users = np.r_[data.user_ids[:50], ["ghost", "ghost", data.user_ids[0]]]
    movies = np.r_[data.movie_ids[:50], [data.movie_ids[0], "nowhere", "nowhere"]]
    pred = fitted.predict(users, movies)
    assert pred.shape == (53,)
    assert np.all(np.isfinite(pred))
    assert pred.min() >= 1.0 and pred.max() <= 5.0
    # fallbacks: unknown user -> mu + b_i, unknown movie -> mu + b_u, both unknown -> mu
    i0 = int(np.searchsorted(fitted.items, data.movie_ids[0]))
    u0 = int(np.searchsorted(fitted.users, data.user_ids[0]))
    assert pred[50] == pytest.approx(np.clip(fitted.mu + fitted.b_item[i0], 1, 5))
    assert pred[52] == pytest.approx(np.clip(fitted.mu + fitted.b_user[u0], 1, 5))
    assert fitted.predict(["ghost"], ["nowhere"])[0] == pytest.approx(fitted.mu)
    assert fitted.predict([], []).shape == (0,)


def test_recommend_excludes_seen_and_falls_back_for_unknown_users(fitted, data) -> None:  # type: ignore[no-untyped-def]
    user = data.user_ids[0]
    seen = set(data.movie_ids[data.user_ids == user])
    ids, scores = fitted.recommend(user, n=20)
    assert len(ids) == 20 and len(set(ids)) == 20
    assert not seen & set(ids)
    assert np.all(np.diff(scores) <= 0) and np.all(np.isfinite(scores))
    with_seen, _ = fitted.recommend(user, n=len(fitted.items), exclude_seen=False)
    assert set(with_seen) == set(fitted.items)
    assert fitted.known_user(user) and not fitted.known_user("ghost")
    ghost_ids, ghost_scores = fitted.recommend("ghost", n=7)
    assert ghost_ids == fitted.popular(7) and np.all(np.isfinite(ghost_scores))


def test_recommend_batch_matches_single_calls(fitted, data) -> None:  # type: ignore[no-untyped-def]
    users = [data.user_ids[0], "ghost", data.user_ids[5]]
    ids, scores = fitted.recommend_batch(users, n=10)
    assert ids.shape == scores.shape == (3, 10)
    for row, user in enumerate(users):
        assert list(ids[row]) == fitted.recommend(user, n=10)[0]


def test_a_user_who_saw_everything_gets_no_seen_movie() -> None:
    from movierec_recommender.data import RatingsData

    d = RatingsData.from_arrays(["a", "a", "b"], ["x", "y", "x"], [5, 3, 4])
    for algo in ALGO_NAMES:
        ids, scores = build_model(algo).fit(d).recommend("a", n=5)
        assert ids == [] and len(scores) == 0


def test_save_load_round_trip(fitted, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fitted.save(tmp_path / "m")
    assert (tmp_path / "m" / "meta.json").is_file()
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(fitted) and loaded.config == fitted.config
    users, movies = data.user_ids[:200], data.movie_ids[:200]
    np.testing.assert_array_equal(loaded.predict(users, movies), fitted.predict(users, movies))
    assert loaded.recommend(data.user_ids[3], 15)[0] == fitted.recommend(data.user_ids[3], 15)[0]
    assert loaded.popular(5) == fitted.popular(5)
    assert loaded.nbytes == fitted.nbytes
    for npy in (tmp_path / "m").glob("*.npy"):  # plain arrays: loadable without pickle
        assert np.load(npy, allow_pickle=False, mmap_mode="r").dtype != object
    assert isinstance(loaded.Z.data.base, np.memmap)  # memory-mapped, not read into memory


def test_fit_is_deterministic(data) -> None:  # type: ignore[no-untyped-def]
    for algo in ALGO_NAMES:
        a, b = build_model(algo).fit(data), build_model(algo).fit(data)
        assert (a.S != b.S).nnz == 0
        users = data.user_ids[:30]
        np.testing.assert_array_equal(a.recommend_batch(users)[0], b.recommend_batch(users)[0])


def test_duplicate_pairs_keep_the_latest_rating() -> None:
    from movierec_recommender.data import RatingsData

    d = RatingsData.from_arrays(["a", "a", "b"], ["x", "x", "x"], [1, 5, 3], [20, 10, 5])
    model = build_model("item-item").fit(d)
    assert model.Z.nnz == 2  # (a, x) once: the rating at t=20 (1 star)
    assert model.rating_min == 1.0


def test_both_algorithms_beat_the_global_mean_on_held_out_data(data) -> None:  # type: ignore[no-untyped-def]
    train, test = time_split(data, 0.2)
    baseline = rating_metrics(test.ratings, np.full(len(test), train.ratings.mean()))["rmse"]
    for algo in ALGO_NAMES:
        model = build_model(algo).fit(train)
        rmse = rating_metrics(test.ratings, model.predict(test.user_ids, test.movie_ids))["rmse"]
        assert rmse < 0.9 * baseline, (algo, rmse, baseline)


def test_build_model_rejects_unknown_algos_and_configs() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValueError, match="unknown algo"):
        build_model("svd")
    with pytest.raises(ValidationError):
        build_model("item-item", {"neighbours": 3})
