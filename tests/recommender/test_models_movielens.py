"""On real ratings (MovieLens 100K, fetched from PyPI, cached): both models beat the baselines."""

from __future__ import annotations

import numpy as np
import pytest
from movierec_recommender.data import RatingsData
from movierec_recommender.evaluation import ranking_metrics, rating_metrics, time_split
from movierec_recommender.models import MostPopular, build_model


@pytest.fixture(scope="module")
def movielens() -> RatingsData:
    from benchmarks.datasets import movielens_100k

    return RatingsData.from_csv(movielens_100k())


def test_movielens_100k_is_the_real_data_set(movielens: RatingsData) -> None:
    assert (len(movielens), movielens.n_users, movielens.n_movies) == (100_000, 943, 1682)


@pytest.mark.parametrize("split", ["time", "random"])
@pytest.mark.parametrize("algo", ["user-user", "item-item"])
def test_beats_global_mean_and_most_popular(movielens: RatingsData, algo: str, split: str) -> None:
    data = movielens
    if split == "random":
        data = RatingsData(
            data.user_vocab, data.user_codes, data.movie_vocab, data.movie_codes, data.ratings
        )
    train, test = time_split(data, 0.2, seed=0)
    model = build_model(algo).fit(train)
    rmse = rating_metrics(test.ratings, model.predict(test.user_ids, test.movie_ids))["rmse"]
    global_mean = rating_metrics(test.ratings, np.full(len(test), train.ratings.mean()))["rmse"]
    assert rmse < global_mean - 0.08, (rmse, global_mean)
    if split == "random":  # known users: personalised lists must clearly beat the popular list
        ours = ranking_metrics(model, train, test)["ndcg@10"]
        popular = ranking_metrics(MostPopular().fit(train), train, test)["ndcg@10"]
        assert ours > 1.3 * popular, (ours, popular)
        assert rmse < 0.935


def test_ranking_scorer_beats_plain_cosine_knn(movielens: RatingsData) -> None:
    """Issue 13's protocol on one seed: both algorithms' top-10 beat plain cosine kNN's."""
    from benchmarks.baselines import CosineKNN

    data = RatingsData(
        movielens.user_vocab,
        movielens.user_codes,
        movielens.movie_vocab,
        movielens.movie_codes,
        movielens.ratings,
    )
    train, test = time_split(data, 0.2, seed=0)
    plain = max(
        ranking_metrics(CosineKNN(kind, 40).fit(train), train, test)["ndcg@10"]
        for kind in ("item", "user")
    )
    ours = {
        a: ranking_metrics(build_model(a).fit(train), train, test)
        for a in ("item-item", "user-user")
    }
    assert min(m["ndcg@10"] for m in ours.values()) > plain + 0.02, (ours, plain)
    assert ours["item-item"]["ndcg@10"] > 0.37
    assert min(m["coverage"] for m in ours.values()) > 0.1  # not a popularity collapse


def test_the_blend_sharpens_item_item_ratings(movielens: RatingsData) -> None:
    """Blending both neighbourhoods (weights from a validation split of train) beats item-item
    alone on the held-out ratings."""
    data = RatingsData(
        movielens.user_vocab,
        movielens.user_codes,
        movielens.movie_vocab,
        movielens.movie_codes,
        movielens.ratings,
    )
    train, test = time_split(data, 0.2, seed=0)
    rmse = {}
    for blend in (True, False):
        model = build_model("item-item", {"blend": blend, "ease_max_items": 0}).fit(train)
        pred = model.predict(test.user_ids, test.movie_ids)
        rmse[blend] = rating_metrics(test.ratings, pred)["rmse"]
    assert rmse[True] < 0.906 and rmse[True] < rmse[False] - 0.005, rmse
