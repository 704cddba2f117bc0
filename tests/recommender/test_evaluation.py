"""Known answers for the offline metrics and the split."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from movierec_recommender.data import RatingsData
from movierec_recommender.evaluation import ranking_metrics, rating_metrics, time_split


def test_rating_metrics_known_answer() -> None:
    m = rating_metrics([1, 2, 3, 4], [2, 2, 3, 2])
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 0 + 4) / 4))
    assert m["mae"] == pytest.approx(3 / 4)


def test_time_split_holds_out_the_latest_ratings() -> None:
    d = RatingsData.from_arrays(list("abcde"), list("vwxyz"), [1, 2, 3, 4, 5], [50, 10, 40, 20, 30])
    train, test = time_split(d, 0.4)
    assert sorted(test.timestamps) == [40, 50]  # type: ignore[arg-type]
    assert sorted(train.timestamps) == [10, 20, 30]  # type: ignore[arg-type]


def test_random_split_without_timestamps_is_seeded() -> None:
    d = RatingsData.from_arrays([str(i) for i in range(100)], ["m"] * 100, np.ones(100))
    a = time_split(d, 0.25, seed=3)[1].user_ids
    b = time_split(d, 0.25, seed=3)[1].user_ids
    assert len(a) == 25 and list(a) == list(b)
    assert list(a) != list(time_split(d, 0.25, seed=4)[1].user_ids)


class FixedLists:
    """Recommends fixed lists, to check the ranking metrics by hand."""

    def __init__(self, lists: dict[str, list[str]]) -> None:
        self.lists = lists

    def recommend_batch(self, users: Any, n: int = 10, exclude_seen: bool = True) -> Any:
        rows = [(self.lists.get(str(u), []) + [""] * n)[:n] for u in users]
        return np.array(rows), np.zeros((len(rows), n))


def test_ranking_metrics_known_answer() -> None:
    train = RatingsData.from_arrays(["u", "v"], ["a", "b"], [3, 3])  # catalogue: a, b (+ test's)
    test = RatingsData.from_arrays(
        ["u", "u", "u", "v", "w"], ["x", "y", "z", "x", "y"], [5, 4, 2, 3, 1]
    )
    # relevant (>= 4): u -> {x, y}; v and w have none, so only u is evaluated
    model = FixedLists({"u": ["y", "a", "x"]})  # a: the training catalogue's most rated 5%
    m = ranking_metrics(model, train, test, k=10)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert m["precision@10"] == pytest.approx(2 / 10)
    assert m["recall@10"] == pytest.approx(1.0)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)
    assert m["coverage"] == pytest.approx(3 / 2)  # distinct recommended / training catalogue
    assert m["popular_share"] == pytest.approx(1 / 3)  # 1 of 3 filled slots
    assert set(m) == {"precision@10", "recall@10", "ndcg@10", "coverage", "popular_share"}


def test_ranking_metrics_with_no_relevant_ratings() -> None:
    d = RatingsData.from_arrays(["u"], ["a"], [1])
    m = ranking_metrics(FixedLists({}), d, d)
    assert m == {
        "precision@10": 0.0,
        "recall@10": 0.0,
        "ndcg@10": 0.0,
        "coverage": 0.0,
        "popular_share": 0.0,
    }


def test_split_of_two_ratings_keeps_one_on_each_side() -> None:
    d = RatingsData.from_arrays(["a", "b"], ["x", "x"], [1, 2], [1, 2])
    train, test = time_split(d, 0.2)
    assert len(train) == 1 and len(test) == 1 and test.ratings[0] == 2
