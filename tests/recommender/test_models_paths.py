"""The fast paths for small catalogues give the same answers as the bounded-memory ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from movierec_recommender.models import build_model, knn
from movierec_recommender.models.similarity import topk_cosine

from tests.recommender.test_models_fixtures import latent_data


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"shrinkage": 10.0, "min_support": 2},
        {"shrinkage": 5.0, "min_support": 3, "candidates": np.arange(0, 300, 3)},
    ],
)
def test_dense_and_sparse_similarity_products_agree(options: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    X = sp.random(300, 200, density=0.1, random_state=1, format="csr", dtype=np.float32)
    X.data = rng.normal(size=X.nnz).astype(np.float32)
    # 300 x 200 cells fit one block: dense right-hand operand (and the symmetric product when
    # every row is a candidate); 5,000 cells do not: sparse x sparse products in chunks
    fast = topk_cosine(X, 10, chunk_nnz=10_000_000, **options)
    bounded = topk_cosine(X, 10, chunk_nnz=5_000, **options)
    assert fast.nnz == bounded.nnz > 0
    np.testing.assert_array_equal(fast.indices, bounded.indices)
    np.testing.assert_allclose(fast.data, bounded.data, rtol=1e-5)


@pytest.mark.parametrize("algo", ["item-item", "user-user"])
def test_dense_and_sparse_predict_agree(algo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = latent_data()
    users = np.r_[data.user_ids[::7], ["ghost"]]
    movies = np.r_[data.movie_ids[::-7], [data.movie_ids[0]]]
    rng = np.random.default_rng(1)
    users, movies = users[rng.permutation(len(users))], movies[rng.permutation(len(movies))]
    fast = build_model(algo).fit(data).predict(users, movies)
    monkeypatch.setattr(knn, "_DENSE_PREDICT_CELLS", 0)
    bounded = build_model(algo).fit(data).predict(users, movies)
    np.testing.assert_allclose(fast, bounded, rtol=1e-5)
    assert not np.isnan(fast).any()
