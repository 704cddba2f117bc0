"""`Vocabulary`: string ids <-> dense row/column indices, as lkpy's `Vocabulary` does it.

The ids are held sorted and unique in one numpy string array (saved as such with the model, so a
memory map serves as the vocabulary without building a dict); `index` maps ids to indices by a
vectorised binary search, -1 for unknown ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class Vocabulary:
    """Sorted unique string ids; position in the sorted array = index."""

    __slots__ = ("_ids",)

    def __init__(self, ids: Any = ()) -> None:
        arr = np.asarray(ids)
        self._ids = arr if arr.dtype.kind == "U" else arr.astype(str)

    @classmethod
    def from_values(cls, values: Any) -> tuple[Vocabulary, np.ndarray]:
        """(vocabulary of the distinct values, int32 code of each value): hash-based, then sorted,
        so O(n) on large input."""
        import pandas as pd

        codes, uniques = pd.factorize(np.asarray(values), sort=False)
        ids = np.asarray(uniques).astype(str)
        order = np.argsort(ids, kind="stable")
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        return cls(ids[order]), rank[codes]

    @property
    def ids(self) -> np.ndarray:
        """The ids, sorted (a read-only view when loaded from a memory map)."""
        return self._ids

    def index(self, ids: Any) -> np.ndarray:
        """Index of each id, or -1 when unknown (int64, one per input id)."""
        ids = np.asarray(ids).astype(str).ravel()
        if len(self._ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        return np.where(self._ids[pos] == ids, pos, -1).astype(np.int64)

    def id(self, index: Any) -> np.ndarray:
        """The ids at `index` (an int array or a boolean mask)."""
        return self._ids[index]

    def compact(self, codes: np.ndarray) -> tuple[Vocabulary, np.ndarray]:
        """Drop the ids no code uses: (smaller vocabulary, remapped int32 codes)."""
        used = np.bincount(codes, minlength=len(self._ids)) > 0
        remap = np.cumsum(used, dtype=np.int64) - 1
        return Vocabulary(self._ids[used]), remap[codes].astype(np.int32)

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return (str(x) for x in self._ids)

    def __contains__(self, item: object) -> bool:
        return bool(self.index([item])[0] >= 0)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self._ids if dtype is None else self._ids.astype(dtype)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and np.array_equal(self._ids, other._ids)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids)"
