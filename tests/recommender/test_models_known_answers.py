"""Known answers: biases, similarities and predictions computed by hand on the toy set."""

from __future__ import annotations

import math

import numpy as np
import pytest
from movierec_recommender.models import KNNConfig, build_model
from movierec_recommender.models.baseline import fit_biases
from movierec_recommender.models.similarity import topk_cosine, topk_dense

from tests.recommender.test_models_fixtures import toy_data

# no biases, no shrinkage: similarities are plain cosines of the residuals r - 3
PLAIN = KNNConfig(
    baseline_epochs=0, shrinkage=0, min_support=1, damping=0, neighbors=5, ranking="evidence"
)


def test_baseline_one_als_sweep_by_hand() -> None:
    d = toy_data()
    mu, bu, bi = fit_biases(
        d.user_codes, d.movie_codes, d.ratings, 4, 3, epochs=1, reg_user=1.0, reg_item=1.0
    )
    assert mu == 3.0
    # b_i = sum(r - mu) / (1 + n_i): x (2+1-2)/4, y (1+2-2)/4, z (-2+0+0)/4
    np.testing.assert_allclose(bi, [0.25, 0.25, -0.5])
    # b_u = sum(r - mu - b_i) / (1 + n_u): a 2.5/3, b 1/4, c -1.75/3, d -1.75/3
    np.testing.assert_allclose(bu, [5 / 6, 1 / 4, -7 / 12, -7 / 12])


def test_item_item_similarities_by_hand() -> None:
    m = build_model("item-item", PLAIN).fit(toy_data())
    # |x| = |y| = 3, x.y = 2*1 + 1*2 = 4 -> 4/9; x.z = -2/6, y.z = -4/6 are negative: dropped
    np.testing.assert_allclose(m.S.toarray(), [[0, 4 / 9, 0], [4 / 9, 0, 0], [0, 0, 0]], rtol=1e-6)


def test_user_user_similarities_by_hand() -> None:
    m = build_model("user-user", PLAIN).fit(toy_data())
    s_ab = 4 / (3 * math.sqrt(5))  # a.b = 2*1 + 1*2 over |a| = sqrt 5, |b| = 3; the rest <= 0
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = s_ab
    np.testing.assert_allclose(m.S.toarray(), expected, rtol=1e-6)


def test_item_item_predictions_by_hand() -> None:
    m = build_model("item-item", PLAIN.model_copy(update={"damping": 0.5})).fit(toy_data())
    pred = m.predict(["c", "a", "d", "a", "nobody", "c"], ["y", "z", "x", "unseen", "x", "x"])
    # (c, y): y's neighbour x, c rated x with residual -2: 3 + (4/9 * -2) / (4/9 + 0.5) = 35/17
    # (a, z): z has no neighbours -> baseline 3; (d, x): like (c, y) -> 35/17
    # unknown movie / unknown user -> the known baseline terms (here mu = 3); a rated pair is
    # predicted like any other pair from its neighbours: (c, x) -> x's neighbour y, unrated by c -> 3
    np.testing.assert_allclose(pred, [35 / 17, 3, 35 / 17, 3, 3, 3])


def test_user_user_predictions_by_hand() -> None:
    m = build_model("user-user", PLAIN.model_copy(update={"damping": 0.5})).fit(toy_data())
    s = 4 / (3 * math.sqrt(5))
    pred = m.predict(["a", "b", "c"], ["z", "z", "y"])
    # (a, z): a's neighbour b rated z with residual -2; (b, z): b's neighbour a did not rate z;
    # (c, y): c has no neighbours
    np.testing.assert_allclose(pred, [3 - 2 * s / (s + 0.5), 3, 3], rtol=1e-6)


def test_shrinkage_and_min_support() -> None:
    # x and y share 2 raters: shrinkage 1 scales 4/9 by 2/(2+1); min_support 3 drops the pair
    shrunk = build_model("item-item", PLAIN.model_copy(update={"shrinkage": 1.0})).fit(toy_data())
    assert shrunk.S[0, 1] == pytest.approx(8 / 27)
    pruned = build_model("item-item", PLAIN.model_copy(update={"min_support": 3})).fit(toy_data())
    assert pruned.S.nnz == 0


def test_predictions_are_clipped_to_the_rating_scale() -> None:
    m = build_model("item-item", PLAIN).fit(toy_data())  # damping 0: 3 + (-2) = 1, at the floor
    assert m.predict(["c"], ["y"])[0] == pytest.approx(1.0)
    assert m.predict(["c"], ["y"]).min() >= m.rating_min


def test_evidence_ranking_by_hand() -> None:
    m = build_model("item-item", PLAIN).fit(toy_data())
    ids, scores = m.recommend("c", n=5)
    # c rated x and z; y is the only unseen movie, with evidence sim(y, x) = 4/9
    assert ids == ["y"]
    assert scores[0] == pytest.approx(4 / 9, abs=1e-5)


def test_topn_item_item_is_ease_on_the_rating_matrix() -> None:
    # X (users a-d x movies x, y, z) holds the raw ratings; EASE: P = (X^T X + lam I)^-1,
    # B_ij = -P_ij / P_jj, diag 0; lam = ease_l2 * mean(diag X^T X) = 0.5 * 77 / 3
    X = np.array([[5, 4, 0], [4, 5, 1], [1, 0, 3], [0, 1, 3]], dtype=float)
    G = X.T @ X
    P = np.linalg.inv(G + 0.5 * np.trace(G) / 3 * np.eye(3))
    B = P / -np.diag(P)
    np.fill_diagonal(B, 0)
    cfg = PLAIN.model_copy(
        update={"ranking": "topn", "ease_l2": 0.5, "rank_popularity": 0.0, "rerank_weight": 0.0}
    )
    m = build_model("item-item", cfg).fit(toy_data())
    ids, scores = m.recommend("c", n=5)
    assert ids == ["y"]  # c rated x and z
    assert scores[0] == pytest.approx((X[2] @ B)[1], abs=1e-6)
    # popularity damping divides by (ratings of the movie) ** rank_popularity; y has 3
    damped = build_model("item-item", cfg.model_copy(update={"rank_popularity": 0.5}))
    assert damped.fit(toy_data()).recommend("c", 1)[1][0] == pytest.approx(
        (X[2] @ B)[1] / math.sqrt(3), abs=1e-6
    )


def test_topn_user_user_sums_powered_cosines_of_rating_vectors() -> None:
    # rating vectors a (5,4,0), b (4,5,1), c (1,0,3), d (0,1,3): c's nearest is d, cos = 9/10;
    # with one neighbour and power 2, c's score for y = 0.81 * d's rating of y (1)
    cfg = PLAIN.model_copy(
        update={
            "ranking": "topn",
            "rank_neighbors": 1,
            "rank_power": 2.0,
            "rank_popularity": 0,
            "rerank_weight": 0.0,
        }
    )
    m = build_model("user-user", cfg).fit(toy_data())
    assert m.R[2].indices.tolist() == [3]
    ids, scores = m.recommend("c", n=5)
    assert ids == ["y"] and scores[0] == pytest.approx(0.81, abs=1e-6)


def test_topk_dense_keeps_the_largest_finite_entries_per_row() -> None:
    inf = np.inf
    D = np.array([[0.1, 0.5, 0.4, 0.2], [-inf, -inf, 0.3, -inf]], dtype=np.float32)
    top = topk_dense(D, 2)
    np.testing.assert_allclose(top.toarray(), [[0, 0.5, 0.4, 0], [0, 0, 0.3, 0]], rtol=1e-6)
    assert top.has_sorted_indices


def test_candidates_restrict_the_neighbour_pool() -> None:
    import scipy.sparse as sp

    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1]], dtype=np.float32))
    full = topk_cosine(X, k=2).toarray()
    only_two = topk_cosine(X, k=2, candidates=np.array([2])).toarray()
    assert full[0, 1] == pytest.approx(1.0)
    assert only_two[:, :2].sum() == 0 and only_two[0, 2] == pytest.approx(0.5)


def test_rerank_adds_the_scaled_predicted_rating_to_the_normalised_score() -> None:
    from tests.recommender.test_models_fixtures import latent_data

    data = latent_data()
    plain = build_model("item-item", {"rerank_weight": 0.0}).fit(data)
    model = build_model("item-item", {"rerank_weight": 0.5, "rerank_candidates": 10}).fit(data)
    user = data.user_ids[0]
    candidates, raw = plain.recommend(user, n=10)
    ids, scores = model.recommend(user, n=10)
    assert set(ids) == set(candidates)  # the same 10 candidates, re-ordered
    pred = model.predict([user] * 10, candidates)
    lo, hi = model.rating_min, model.rating_max
    expected = raw / np.abs(raw).max() + 0.5 * (pred - (lo + hi) / 2) / ((hi - lo) / 2)
    order = np.argsort(-expected, kind="stable")
    assert ids == [candidates[k] for k in order]
    np.testing.assert_allclose(scores, expected[order], rtol=1e-5)
