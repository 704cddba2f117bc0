"""User-user and item-item kNN on baseline residuals, vectorised over scipy.sparse.

Prediction (Koren 2010, eq. 3, with Surprise's positive-similarity rule and a damping term):
    r_ui = b_ui + sum_{j in N(i) ∩ R(u)} s_ij (r_uj - b_uj) / (sum |s_ij| + damping)
for item-item, where N(i) is i's top-k neighbour list fitted once, and symmetrically for user-user
(N(u) ∩ raters of i). b_ui = mu + b_u + b_i is the ALS baseline; the result is clipped to the
training rating scale. Unknown ids fall back to the baseline terms that are known, then to mu.

With `blend` (item-item's default), the neighbourhood term is replaced by a linear blend of
this model's and the other algorithm's neighbourhood terms at three dampings plus a constant,
its weights fitted by ridge regression on a validation split carved from the training data.

Top-N lists (`recommend`, `recommend_batch`) use a separate ranking scorer by default
(`ranking="topn"`, models/ranking.py): EASE weights (item-item) or cosine neighbourhoods
(user-user) on the raw rating matrix, fitted beside the rating predictor.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from movierec_recommender.data import RatingsData
from movierec_recommender.models.base import SingleFromBatch
from movierec_recommender.models.baseline import fit_biases
from movierec_recommender.models.config import KNNConfig
from movierec_recommender.models.ranking import cosine_graph, ease_graph
from movierec_recommender.models.similarity import cap_row_entries, topk_cosine
from movierec_recommender.models.tuning import validation_split
from movierec_recommender.vocabulary import Vocabulary

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2 adds the rating matrix values and the ranking graph
_LOOKUP_BATCH = 2_000_000  # neighbour look-ups per vectorised step in predict
# predict gathers from a dense copy of the residuals (float32 residual + rated flag, 8 bytes a
# cell) when users x items is at most this: MovieLens 100K has 1.6M cells; larger models gather
# sparse rows instead
_DENSE_PREDICT_CELLS = 4_000_000
_SCORE_CELLS = 8_000_000  # dense (users x items) score cells per step in recommend
# the blend's features: each neighbourhood's sum s*z / (sum |s| + d) at these dampings (a linear
# mix of them adapts the shrinkage towards the baseline to the evidence), plus a constant
BLEND_DAMPINGS = (0.1, 0.5, 2.0)
BLEND_RIDGE = 1.0  # on the weights; the validation split has ~1/5 of the ratings
BLEND_VALIDATION = 0.2
BLEND_MIN_RATINGS = 1000  # below this a validation split says nothing: no blend


class KNNRecommender(SingleFromBatch):
    """Shared machinery; subclasses say which axis holds the neighbours (`_item_based`)."""

    algo: ClassVar[str] = ""
    _item_based: ClassVar[bool] = True

    def __init__(self, config: KNNConfig | None = None) -> None:
        self._config = config or KNNConfig()
        self.user_vocab = Vocabulary()  # row index of Z <-> user id
        self.item_vocab = Vocabulary()  # column index of Z <-> movie id
        self.mu = 0.0
        self.rating_min, self.rating_max = 1.0, 5.0
        self.b_user = np.empty(0, dtype=np.float32)
        self.b_item = np.empty(0, dtype=np.float32)
        self.item_counts = np.empty(0, dtype=np.int64)
        self.Z = sp.csr_matrix((0, 0), dtype=np.float32)  # users x items residuals r - b_ui
        self.S = sp.csr_matrix((0, 0), dtype=np.float32)  # neighbours, k per row
        self.X = sp.csr_matrix((0, 0), dtype=np.float32)  # users x items ratings (Z's layout)
        self.R = sp.csr_matrix((0, 0), dtype=np.float32)  # ranking graph (models/ranking.py)
        self.P = sp.csr_matrix((0, 0), dtype=np.float32)  # the other algorithm's neighbours
        self.blend_w = np.empty(0, dtype=np.float64)  # blend weights; empty = no blend
        self._cache: dict[str, Any] = {}

    # ---- public API ---------------------------------------------------------------------------
    @property
    def config(self) -> KNNConfig:
        return self._config

    @property
    def users(self) -> np.ndarray:
        """The user ids, sorted (the vocabulary's array: saved, validated, memory-mapped)."""
        return self.user_vocab.ids

    @property
    def items(self) -> np.ndarray:
        """The movie ids, sorted."""
        return self.item_vocab.ids

    def fit(self, data: RatingsData) -> KNNRecommender:
        """Rating predictor (baseline, residuals, neighbours), ranking graph, then the blend."""
        self._fit_core(data)
        n_partner = self.Z.shape[1] if not self._item_based else self.Z.shape[0]
        self.P = sp.csr_matrix((n_partner, n_partner), dtype=np.float32)
        self.blend_w = np.empty(0, dtype=np.float64)
        if self._blend_enabled(len(data)):
            self._fit_blend(data)
        return self

    def _blend_enabled(self, n_ratings: int) -> bool:
        on = self._config.blend if self._config.blend is not None else self._item_based
        return on and BLEND_MIN_RATINGS <= n_ratings <= self._config.blend_max_ratings

    def _fit_blend(self, data: RatingsData) -> None:
        """Blend weights by ridge regression on a validation split of `data`, then the partner's
        neighbours on all of `data`."""
        fit, val = validation_split(data, BLEND_VALIDATION, seed=0)
        own = type(self)(self._config)._fit_core(fit, ranking=False)
        partner = self._partner_cls()(self._config)._fit_core(fit, ranking=False)
        u, i = own.user_vocab.index(val.user_ids), own.item_vocab.index(val.movie_ids)
        both = (u >= 0) & (i >= 0)
        u, i = u[both], i[both]
        F = own._blend_features(partner, u, i)
        y = val.ratings[both] - (own.mu + own.b_user[u] + own.b_item[i])
        self.blend_w = np.linalg.solve(
            F.T @ F + BLEND_RIDGE * np.eye(F.shape[1]), F.T @ y.astype(np.float64)
        )
        self.P = self._partner_cls()(self._config)._fit_core(data, ranking=False).S
        self._cache = {}
        log.info("%s blend weights %s (%d validation ratings)", self.algo, self.blend_w, len(y))

    def _partner_cls(self) -> type[KNNRecommender]:
        return UserUserKNN if self._item_based else ItemItemKNN

    def _partner(self) -> KNNRecommender:
        """The other algorithm's neighbourhood on this model's residuals (for the blend)."""
        if "partner" not in self._cache:
            partner = self._partner_cls()(self._config)
            partner.Z, partner.S = self.Z, self.P
            self._cache["partner"] = partner
        partner_model: KNNRecommender = self._cache["partner"]
        return partner_model

    def _blend_features(self, partner: KNNRecommender, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        cols = []
        for model in (self, partner):
            num, den = model._pair_sums(u, i)
            cols += [num / (den + d) for d in BLEND_DAMPINGS]
        cols.append(np.ones(len(u)))
        return np.column_stack(cols)

    def _fit_core(self, data: RatingsData, ranking: bool = True) -> KNNRecommender:
        if len(data) == 0:
            raise ValueError("cannot fit on an empty data set")
        cfg = self._config
        users, u = data.user_vocab.compact(data.user_codes)
        items, i = data.movie_vocab.compact(data.movie_codes)
        u, i, r = _latest_per_pair(u, i, data.ratings, data.timestamps, len(items))
        n_users, n_items = len(users), len(items)
        mu, b_user, b_item = fit_biases(
            u,
            i,
            r,
            n_users,
            n_items,
            epochs=cfg.baseline_epochs,
            reg_user=cfg.reg_user,
            reg_item=cfg.reg_item,
        )
        z = (r - mu - b_user[u] - b_item[i]).astype(np.float32)
        # (u, i) arrive sorted by u * n_items + i, so this is a canonical CSR (sorted indices)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(u, minlength=n_users), out=indptr[1:])
        Z = sp.csr_matrix((z, i.astype(np.int32), indptr), shape=(n_users, n_items))
        X = self._entity_rows(Z)
        counts = np.diff(X.indptr)
        candidates = None
        if cfg.max_candidates is not None and cfg.max_candidates < X.shape[0]:
            candidates = np.sort(np.argsort(-counts, kind="stable")[: cfg.max_candidates])
        S = topk_cosine(
            X,
            k=cfg.neighbors,
            shrinkage=cfg.shrinkage,
            min_support=cfg.min_support,
            min_similarity=cfg.min_similarity,
            candidates=candidates,
            chunk_nnz=cfg.chunk_nnz,
        )
        self.user_vocab, self.item_vocab = users, items
        self.mu = mu
        self.rating_min, self.rating_max = float(r.min()), float(r.max())
        self.b_user, self.b_item = b_user.astype(np.float32), b_item.astype(np.float32)
        self.item_counts = np.bincount(i, minlength=n_items).astype(np.int64)
        self.Z, self.S = Z, S
        # the raw ratings share Z's sparsity structure: only their values are stored
        self.X = _csr(r.astype(np.float32), Z.indices, Z.indptr, Z.shape)
        if ranking:
            self.R = self._fit_ranking(self.X, candidates)
        self._cache = {}
        log.info(
            "fitted %s: %d users, %d items, %d ratings, %d neighbour links",
            self.algo,
            n_users,
            n_items,
            len(r),
            S.nnz,
        )
        return self

    def _entity_rows(self, M: sp.csr_matrix) -> sp.csr_matrix:
        """M (users x items) with one row per entity that gets neighbours, contexts capped."""
        cap = self._config.max_context_ratings
        if cap is not None:
            C = M if self._item_based else M.T.tocsr()  # rows = contexts of an entity pair
            return cap_row_entries(C, cap).T.tocsr()
        return M.T.tocsr() if self._item_based else M

    def _fit_ranking(self, X: sp.csr_matrix, candidates: np.ndarray | None) -> sp.csr_matrix:
        """The ranking graph: EASE weights for small catalogues (item-item), else cosine."""
        cfg = self._config
        if self._item_based and X.shape[1] <= cfg.ease_max_items:
            return ease_graph(X, cfg.ease_l2, cfg.ease_neighbors)
        return cosine_graph(
            self._entity_rows(X),
            cfg.rank_neighbors,
            cfg.rank_power,
            candidates=candidates,
            chunk_nnz=cfg.chunk_nnz,
        )

    def known_user(self, user_id: str) -> bool:
        return user_id in self.user_vocab

    def popular(self, n: int) -> list[str]:
        return [str(x) for x in self.item_vocab.id(self._popular_order()[:n])]

    def predict(self, user_ids: Any, movie_ids: Any) -> np.ndarray:
        """Predicted rating per (user, movie) pair, in input order; never NaN."""
        u = self.user_vocab.index(user_ids)
        i = self.item_vocab.index(movie_ids)
        if len(u) != len(i):
            raise ValueError(f"{len(u)} user ids but {len(i)} movie ids")
        return self._predict_idx(u, i)

    def _predict_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Predicted ratings for index pairs (-1 = unknown)."""
        pred = np.full(len(u), self.mu, dtype=np.float64)
        ku, ki = u >= 0, i >= 0
        pred[ku] += self.b_user[u[ku]]
        pred[ki] += self.b_item[i[ki]]
        both = np.flatnonzero(ku & ki)
        if len(both):
            if len(self.blend_w):
                pred[both] += self._blend_features(self._partner(), u[both], i[both]) @ self.blend_w
            else:
                num, den = self._pair_sums(u[both], i[both])
                pred[both] += num / (den + self._config.damping + (den == 0))
        return np.clip(pred, self.rating_min, self.rating_max)

    def recommend_batch(
        self, user_ids: Any, n: int = 20, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n movie ids and scores per user, best first: (users x n) arrays.

        Unknown users get the most-popular list. Slots a user cannot fill (every movie seen) hold
        "" with score -inf.
        """
        u = self.user_vocab.index(user_ids)
        n = max(0, min(n, len(self.items)))
        out_idx = np.tile(self._popular_order()[:n], (len(u), 1))
        out_score = np.tile(self._popularity_score()[self._popular_order()[:n]], (len(u), 1))
        known = np.flatnonzero(u >= 0)
        step = max(1, _SCORE_CELLS // max(1, len(self.items)))
        for a in range(0, len(known), step):
            rows = known[a : a + step]
            scores = self._score_all(u[rows])
            if exclude_seen:
                seen = self.Z[u[rows]]
                scores[
                    np.repeat(np.arange(len(rows)), np.diff(seen.indptr)), seen.indices
                ] = -np.inf
            if self._reranks(n):
                top, top_scores = self._rerank(u[rows], scores, n)
            else:
                top = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n else scores[:, :0]
                top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            out_idx[rows] = np.take_along_axis(top, order, axis=1)
            out_score[rows] = np.take_along_axis(top_scores, order, axis=1)
        ids = self.items[out_idx] if len(self.items) else np.empty((len(u), 0), dtype=str)
        ids = np.where(np.isneginf(out_score), "", ids)
        return ids, out_score

    def _reranks(self, n: int) -> bool:
        cfg = self._config
        return cfg.ranking == "topn" and cfg.rerank_weight > 0 and 0 < n <= len(self.items)

    def _rerank(self, u: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Two stages: the ranking scorer's best candidates, re-ranked with the rating predictor.

        score / (the user's best score) + rerank_weight x (predicted rating scaled to -1..1): the
        scorer says what the user is likely to watch, the predictor how much they would like it.
        Seen movies keep -inf.
        """
        m = max(n, min(self._config.rerank_candidates, scores.shape[1]))
        cand = (
            np.argpartition(-scores, m - 1, axis=1)[:, :m]
            if m < scores.shape[1]
            else np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
        )
        s = np.take_along_axis(scores, cand, axis=1)
        finite = np.where(np.isfinite(s), np.abs(s), 0.0)
        s = s / np.maximum(finite.max(axis=1, keepdims=True), 1e-12)
        pred = self._predict_idx(np.repeat(u, m), cand.ravel()).reshape(cand.shape)
        mid, half = (
            (self.rating_max + self.rating_min) / 2,
            max((self.rating_max - self.rating_min) / 2, 1e-9),
        )
        combined = s + self._config.rerank_weight * (pred - mid) / half
        top = np.argpartition(-combined, n - 1, axis=1)[:, :n]
        return np.take_along_axis(cand, top, axis=1), np.take_along_axis(combined, top, axis=1)

    # ---- persistence ----------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "users": self.users,
            "items": self.items,
            "b_user": self.b_user,
            "b_item": self.b_item,
            "item_counts": self.item_counts,
            "z_indptr": self.Z.indptr,
            "z_indices": self.Z.indices,
            "z_data": self.Z.data,
            "s_indptr": self.S.indptr,
            "s_indices": self.S.indices,
            "s_data": self.S.data,
            "x_data": self.X.data,
            "r_indptr": self.R.indptr,
            "r_indices": self.R.indices,
            "r_data": self.R.data,
            "p_indptr": self.P.indptr,
            "p_indices": self.P.indices,
            "p_data": self.P.data,
            "blend_w": self.blend_w,
        }

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self._arrays().values()))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, arr in self._arrays().items():
            np.save(path / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        meta = {
            "format_version": FORMAT_VERSION,
            "algo": self.algo,
            "config": self._config.model_dump(mode="json"),
            "mu": self.mu,
            "rating_min": self.rating_min,
            "rating_max": self.rating_max,
            "n_users": len(self.users),
            "n_items": len(self.items),
            "n_ratings": int(self.Z.nnz),
            "n_neighbours": int(self.S.nnz),
            "n_rank_links": int(self.R.nnz),
            "nbytes": self.nbytes,
        }
        (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def _load(cls, path: Path, meta: dict[str, Any], mmap: bool = True) -> KNNRecommender:
        def arr(name: str) -> np.ndarray:
            loaded = np.load(
                path / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False
            )
            return np.asarray(loaded)  # a plain ndarray view of the memory map: no copy

        model = cls(KNNConfig.model_validate(meta["config"]))
        model.user_vocab, model.item_vocab = Vocabulary(arr("users")), Vocabulary(arr("items"))
        model.mu = float(meta["mu"])
        model.rating_min, model.rating_max = float(meta["rating_min"]), float(meta["rating_max"])
        model.b_user, model.b_item = arr("b_user"), arr("b_item")
        model.item_counts = arr("item_counts")
        n_u, n_i = len(model.users), len(model.items)
        model.Z = _csr(arr("z_data"), arr("z_indices"), arr("z_indptr"), (n_u, n_i))
        n_e = n_i if cls._item_based else n_u
        model.S = _csr(arr("s_data"), arr("s_indices"), arr("s_indptr"), (n_e, n_e))
        if int(meta.get("format_version", 1)) >= 2:
            model.X = _csr(arr("x_data"), model.Z.indices, model.Z.indptr, (n_u, n_i))
            model.R = _csr(arr("r_data"), arr("r_indices"), arr("r_indptr"), (n_e, n_e))
            n_p = n_u if cls._item_based else n_i
            model.P = _csr(arr("p_data"), arr("p_indices"), arr("p_indptr"), (n_p, n_p))
            model.blend_w = arr("blend_w")
            _check_blend(model.P, model.blend_w, (n_p, n_p))
        elif model._config.ranking == "topn":  # a version-1 model has no ranking graph
            model._config = model._config.model_copy(update={"ranking": "evidence"})
        return model

    # ---- internals ----------------------------------------------------------------------------
    def _popular_order(self) -> np.ndarray:
        if "popular" not in self._cache:
            # most ratings first; ties by the better item bias, then by id
            self._cache["popular"] = np.lexsort((-self.b_item, -self.item_counts))
        return self._cache["popular"]

    def _popularity_score(self) -> np.ndarray:
        if "pop_score" not in self._cache:
            c = np.log1p(self.item_counts.astype(np.float64))
            self._cache["pop_score"] = c / max(1.0, float(c.max(initial=0.0)))
        return self._cache["pop_score"]

    def _context_rows(self) -> sp.csr_matrix:
        """Residuals with one row per context of a prediction: Z (users) or Z^T (items)."""
        if self._item_based:
            return self.Z
        if "ZT" not in self._cache:
            self._cache["ZT"] = self.Z.T.tocsr()
        return self._cache["ZT"]

    def _pair_sums(self, u: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pair: sum s * z over the neighbours with evidence, and sum |s| over them."""
        ent, ctx = (i, u) if self._item_based else (u, i)
        if self.Z.shape[0] * self.Z.shape[1] <= _DENSE_PREDICT_CELLS:
            return self._pair_sums_dense(ent, ctx)
        return self._pair_sums_sparse(ent, ctx)

    def _pair_sums_dense(self, ent: np.ndarray, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Small models: one flat gather over the padded (pairs x k) neighbour arrays.

        Item-item reads z[u, j] for i's neighbours j; user-user reads z[v, i] for u's neighbours
        v. The residuals are laid out context-major (one row per user, resp. per movie) and the
        pairs are visited in context order, so each pair's k reads fall in one cached row.
        Padding slots have similarity 0, so they add nothing to either sum.
        """
        nb_idx, nb_sim, nb_abs = self._neighbour_table()
        zr = self._dense_residuals()
        width = self.S.shape[0]  # a context row holds one cell per entity
        order = np.argsort(ctx, kind="stable")
        num = np.empty(len(ent))
        den = np.empty(len(ent))
        step = max(1, _LOOKUP_BATCH // nb_idx.shape[1])
        for a in range(0, len(ent), step):
            sel = order[a : a + step]
            e = ent[sel]
            flat = ctx[sel, None].astype(nb_idx.dtype) * width + nb_idx[e]
            g = np.take(zr, flat)  # residual + 1j * rated: both in one gather
            num[sel] = np.einsum("ij,ij->i", nb_sim[e], g.real)
            den[sel] = np.einsum("ij,ij->i", nb_abs[e], g.imag)
        return num, den

    def _pair_sums_sparse(self, ent: np.ndarray, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Large models: sparse row gathers and elementwise products, in C.

        Item-item: row i of S (i's neighbours) times row u of Z (u's residuals), elementwise;
        user-user: row u of S times row i of Z^T. Groups of pairs whose gathered rows stay within
        a fixed number of entries.
        """
        M = self._context_rows()
        size = np.diff(M.indptr)[ctx] + np.diff(self.S.indptr)[ent] + 1
        ends = np.cumsum(size)
        cuts = np.searchsorted(ends, np.arange(_LOOKUP_BATCH, ends[-1], _LOOKUP_BATCH))
        bounds = np.unique(np.r_[0, cuts, len(ent)])
        num = np.zeros(len(ent))
        den = np.zeros(len(ent))
        for a, b in itertools.pairwise(bounds):
            Se, Mc = self.S[ent[a:b]], M[ctx[a:b]]
            num[a:b] = np.asarray(Se.multiply(Mc).sum(axis=1), dtype=np.float64).ravel()
            Mc.data = np.ones_like(Mc.data)
            Se.data = np.abs(Se.data)
            den[a:b] = np.asarray(Se.multiply(Mc).sum(axis=1), dtype=np.float64).ravel()
        return num, den

    def _neighbour_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """S as padded (entities x max k) arrays: neighbour index, similarity and |similarity|.

        Padding slots point at index 0 with similarity 0.
        """
        if "nb" not in self._cache:
            S = self.S
            counts = np.diff(S.indptr)
            width = max(1, int(counts.max(initial=0)))
            rows = np.repeat(np.arange(S.shape[0]), counts)
            slot = np.arange(S.nnz) - np.repeat(S.indptr[:-1], counts)
            # int32 flat indices halve the gather's index traffic while users x items fits
            cells = self.Z.shape[0] * self.Z.shape[1]
            idx = np.zeros((S.shape[0], width), dtype=np.int32 if cells < 2**31 else np.int64)
            sim = np.zeros((S.shape[0], width), dtype=np.float32)
            idx[rows, slot] = S.indices
            sim[rows, slot] = S.data
            self._cache["nb"] = idx, sim, np.abs(sim)
        return self._cache["nb"]

    def _dense_residuals(self) -> np.ndarray:
        """Residuals as one flat complex64 array, residual + 1j * rated (1 or 0), context-major.

        Item-item: users x items (Z's layout); user-user: items x users (Z^T's). Complex only
        packs the two float32 values that one gather reads together; no complex maths.
        """
        if "zr" not in self._cache:
            M = self._context_rows()
            rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
            zr = np.zeros(M.shape[0] * M.shape[1], dtype=np.complex64)
            zr[rows * M.shape[1] + M.indices] = M.data + np.complex64(1j)
            self._cache["zr"] = zr
        return self._cache["zr"]

    def _ones(self) -> sp.csr_matrix:
        if "B" not in self._cache:
            self._cache["B"] = sp.csr_matrix(
                (np.ones(self.Z.nnz, dtype=np.float32), self.Z.indices, self.Z.indptr),
                shape=self.Z.shape,
            )
        return self._cache["B"]

    def _neighbours_t(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(S^T, |S|^T) as CSR, built once: item-item scoring multiplies by them per request."""
        if "ST" not in self._cache:
            ST = self.S.T.tocsr()
            absST = ST.copy()
            absST.data = np.abs(absST.data)
            self._cache["ST"], self._cache["absST"] = ST, absST
        return self._cache["ST"], self._cache["absST"]

    def _abs_s(self) -> sp.csr_matrix:
        if "absS" not in self._cache:
            self._cache["absS"] = abs(self.S)
        return self._cache["absS"]

    def _score_all(self, u: np.ndarray) -> np.ndarray:
        """Dense (len(u) x n_items) ranking scores for known users `u`."""
        if self._config.ranking == "topn":
            return self._topn_scores(u)
        if self._item_based:
            # num[u, i] = sum_j z_uj s_ij  ->  Z[u] @ S.T
            ST, absST = self._neighbours_t()
            num = (self.Z[u] @ ST).toarray()
            den = (self._ones()[u] @ absST).toarray()
        else:
            # num[u, i] = sum_v s_uv z_vi  ->  S[u] @ Z
            num = (self.S[u] @ self.Z).toarray()
            den = (self._abs_s()[u] @ self._ones()).toarray()
        tie = 1e-6 * self._popularity_score()[None, :]
        if self._config.ranking == "evidence":
            return den.astype(np.float64) + tie
        base = self.mu + self.b_user[u][:, None].astype(np.float64) + self.b_item[None, :]
        pred = base + num / (den + self._config.damping + (den == 0))
        return np.clip(pred, self.rating_min, self.rating_max) + tie

    def _topn_scores(self, u: np.ndarray) -> np.ndarray:
        """The ranking scorer: X[u] @ R^T (item-item) or R[u] @ X (user-user), popularity-damped."""
        if self._item_based:
            if "RT" not in self._cache:
                self._cache["RT"] = self.R.T.tocsr()
            raw = (self.X[u] @ self._cache["RT"]).toarray()
        else:
            raw = (self.R[u] @ self.X).toarray()
        if "damp" not in self._cache:
            counts = np.maximum(self.item_counts, 1).astype(np.float64)
            self._cache["damp"] = counts**-self._config.rank_popularity
        return raw * self._cache["damp"][None, :] + 1e-9 * self._popularity_score()[None, :]


class ItemItemKNN(KNNRecommender):
    """Neighbours are movies: predicts from the user's ratings of similar movies."""

    algo = "item-item"
    _item_based = True


class UserUserKNN(KNNRecommender):
    """Neighbours are users: predicts from similar users' ratings of the movie."""

    algo = "user-user"
    _item_based = False


def _check_blend(P: sp.csr_matrix, w: np.ndarray, shape: tuple[int, int]) -> None:
    """The blend's arrays are read in compiled code: validate them like the others."""
    from movierec_recommender.models.integrity import ModelIntegrityError, check_csr

    check_csr("P", P, shape)
    expected = (0, 2 * len(BLEND_DAMPINGS) + 1)
    if w.ndim != 1 or w.dtype.kind != "f" or len(w) not in expected or not np.isfinite(w).all():
        raise ModelIntegrityError(f"blend_w: expected {expected[1]} finite weights or none")


def _csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> Any:
    """A CSR over (possibly memory-mapped) arrays without copying them."""
    m = sp.csr_matrix(shape, dtype=data.dtype)
    m.data, m.indices, m.indptr = data, indices, indptr
    m.has_sorted_indices = True  # saved canonical (fit sorts them); the arrays are read-only
    return m


def _latest_per_pair(
    u: np.ndarray, i: np.ndarray, r: np.ndarray, ts: np.ndarray | None, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One rating per (user, item): the latest by timestamp, else the last given; sorted by key."""
    key = u.astype(np.int64) * n_items + i
    # the common case has no duplicate pairs: a plain (unstable, SIMD) sort is then enough and
    # 2-4x cheaper than the stable / timestamp-ordered sorts the duplicates need
    order = np.argsort(key)
    k = key[order]
    if len(k) > 1 and not (k[1:] != k[:-1]).all():
        order = np.lexsort((ts, key)) if ts is not None else np.argsort(key, kind="stable")
        k = key[order]
    last = np.r_[k[1:] != k[:-1], True] if len(k) else np.zeros(0, dtype=bool)
    sel = order[last]
    return u[sel].astype(np.int32), i[sel].astype(np.int32), r[sel].astype(np.float32)
