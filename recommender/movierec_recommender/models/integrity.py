"""Structural validation of a loaded kNN model before it may serve: nothing in it can crash a worker.

A model's sparse matrices are rebuilt from saved arrays without scipy's own checks (memory maps,
no copies), so an index out of range or a non-monotone `indptr` would read outside an array in
compiled code: a crashed worker, restarted into the same crash. Every array is checked here,
vectorised, in time linear in its size.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np


class ModelIntegrityError(ValueError):
    """A model artifact whose arrays are inconsistent; the message names the first problem."""


def _fail(what: str) -> NoReturn:
    raise ModelIntegrityError(what)


def _vector(name: str, arr: Any, length: int, kind: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.ndim != 1:
        _fail(f"{name}: expected a 1-d array")
    if arr.dtype.kind not in kind:
        _fail(f"{name}: dtype {arr.dtype} is not of kind {kind!r}")
    if arr.shape[0] != length:
        _fail(f"{name}: length {arr.shape[0]}, expected {length}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        _fail(f"{name}: non-finite values")
    return arr


def _vocabulary(name: str, arr: Any) -> None:
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind != "U":
        _fail(f"{name}: expected a 1-d array of strings")
    # lookups binary-search the vocabulary: it must be sorted and without repeats
    if arr.size > 1 and not (arr[1:] > arr[:-1]).all():
        _fail(f"{name}: not strictly sorted")


def check_csr(name: str, m: Any, shape: tuple[int, int]) -> None:
    """CSR arrays consistent with `shape`: monotone indptr, indices in range and sorted per row,
    finite values."""
    rows, cols = shape
    if getattr(m, "shape", None) != shape:
        _fail(f"{name}: shape {getattr(m, 'shape', None)}, expected {shape}")
    indptr, indices, data = m.indptr, m.indices, m.data
    for part, arr, kinds in (
        ("indptr", indptr, "iu"),
        ("indices", indices, "iu"),
        ("data", data, "f"),
    ):
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in kinds:
            _fail(f"{name}.{part}: expected a 1-d array of kind {kinds!r}")
    if indptr.shape[0] != rows + 1:
        _fail(f"{name}.indptr: length {indptr.shape[0]}, expected {rows + 1}")
    nnz = indices.shape[0]
    if data.shape[0] != nnz:
        _fail(f"{name}: {data.shape[0]} values for {nnz} indices")
    if indptr[0] != 0 or indptr[-1] != nnz:
        _fail(f"{name}.indptr: must run from 0 to {nnz}")
    steps = np.diff(indptr.astype(np.int64))
    if (steps < 0).any():
        _fail(f"{name}.indptr: not monotone")
    if nnz:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= cols:
            _fail(f"{name}.indices: values {lo}..{hi} outside 0..{cols - 1}")
        # sorted, distinct columns within each row (the matrices claim sorted indices)
        increasing = np.diff(indices.astype(np.int64)) > 0
        row_starts = np.zeros(nnz, dtype=bool)
        row_starts[indptr[1:-1][indptr[1:-1] < nnz].astype(np.int64)] = True
        if not (increasing | row_starts[1:]).all():
            _fail(f"{name}.indices: not sorted within rows")
        if not np.isfinite(data).all():
            _fail(f"{name}.data: non-finite values")


def check_knn(model: Any) -> None:
    """Every array of a loaded kNN model, against the vocabularies' sizes; raises on the first
    problem."""
    _vocabulary("users", model.users)
    _vocabulary("items", model.items)
    n_u, n_i = len(model.users), len(model.items)
    _vector("b_user", model.b_user, n_u, "f")
    _vector("b_item", model.b_item, n_i, "f")
    counts = _vector("item_counts", model.item_counts, n_i, "iu")
    if counts.size and counts.min() < 0:
        _fail("item_counts: negative")
    for name in ("mu", "rating_min", "rating_max"):
        if not math.isfinite(float(getattr(model, name))):
            _fail(f"{name}: not finite")
    if model.rating_min > model.rating_max:
        _fail("rating_min > rating_max")
    check_csr("Z", model.Z, (n_u, n_i))
    n_e = n_i if model._item_based else n_u
    check_csr("S", model.S, (n_e, n_e))
    # version-1 models have neither (they stay empty and unused)
    if model.X.shape != (0, 0) or model.R.shape != (0, 0):
        check_csr("X", model.X, (n_u, n_i))
        check_csr("R", model.R, (n_e, n_e))
