"""Baseline predictor b_ui = mu + b_u + b_i with regularised biases fitted by ALS sweeps (vectorised)."""

from __future__ import annotations

import numpy as np


def fit_biases(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    epochs: int,
    reg_user: float,
    reg_item: float,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Return (mu, b_user, b_item).

    Each sweep solves the items given the users, then the users given the items, exactly:
    b_i = sum_u (r_ui - mu - b_u) / (reg_item + n_i), then b_u likewise (Koren 2010, eq. 2).
    `epochs=0` leaves both biases at zero (the global-mean predictor).
    """
    r = ratings.astype(np.float64)
    mu = float(r.mean()) if len(r) else 0.0
    b_user = np.zeros(n_users, dtype=np.float64)
    b_item = np.zeros(n_items, dtype=np.float64)
    n_u = np.bincount(users, minlength=n_users)
    n_i = np.bincount(items, minlength=n_items)
    dev = r - mu
    for _ in range(epochs):
        b_item = np.bincount(items, weights=dev - b_user[users], minlength=n_items) / (
            reg_item + n_i
        )
        b_user = np.bincount(users, weights=dev - b_item[items], minlength=n_users) / (
            reg_user + n_u
        )
    # an id with no ratings and zero regularisation would divide 0/0
    return mu, np.nan_to_num(b_user), np.nan_to_num(b_item)
