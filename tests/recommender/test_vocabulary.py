"""The id <-> index vocabulary: known answers."""

from __future__ import annotations

import numpy as np
from movierec_recommender.vocabulary import Vocabulary


def test_from_values_sorts_ids_and_codes_every_value() -> None:
    vocab, codes = Vocabulary.from_values(["b", "a", "c", "a"])
    assert list(vocab) == ["a", "b", "c"] and codes.tolist() == [1, 0, 2, 0]
    assert codes.dtype == np.int32


def test_index_is_minus_one_for_unknown_ids_and_id_inverts_it() -> None:
    vocab = Vocabulary(["a", "b", "d"])
    assert vocab.index(["d", "c", "a", "zz", ""]).tolist() == [2, -1, 0, -1, -1]
    assert vocab.id(np.array([2, 0])).tolist() == ["d", "a"]
    assert "b" in vocab and "c" not in vocab and len(vocab) == 3
    assert Vocabulary().index(["a"]).tolist() == [-1]


def test_compact_drops_unused_ids_and_remaps_codes() -> None:
    vocab, codes = Vocabulary(["a", "b", "c", "d"]).compact(np.array([3, 1, 3], dtype=np.int32))
    assert list(vocab) == ["b", "d"] and codes.tolist() == [1, 0, 1]
    assert np.asarray(vocab).tolist() == ["b", "d"]  # usable where an array is expected
