"""A snapshot of the training data: counts, time range and a content hash, logged with every model."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel

from movierec_recommender.data import RatingsData


class DataLineage(BaseModel):
    """What a model was trained and evaluated on; becomes `lineage.*` tags in MLflow."""

    rows: int
    users: int
    movies: int
    time_min: str | None = None  # ISO 8601, UTC
    time_max: str | None = None
    sha256: str
    source: str = ""  # database URL without password
    quality_report_id: int | None = None
    train_rows: int | None = None
    test_rows: int | None = None
    split_time: str | None = None  # first holdout timestamp


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def data_sha256(data: RatingsData) -> str:
    """A hash of the rows' content that ignores row order (so a DB's scan order does not matter)."""
    users = data.user_ids.astype(str)
    movies = data.movie_ids.astype(str)
    times = (
        data.timestamps.astype(np.int64)
        if data.timestamps is not None
        else np.zeros(len(data), dtype=np.int64)
    )
    order = np.lexsort((times, data.ratings, movies, users))
    digest = hashlib.sha256()
    digest.update(f"{len(data)}\n".encode())
    # one separator-joined block per column: no per-row Python work beyond the join
    digest.update("\x1f".join(users[order].tolist()).encode())
    digest.update(b"\x1e")
    digest.update("\x1f".join(movies[order].tolist()).encode())
    digest.update(b"\x1e")
    digest.update(np.ascontiguousarray(data.ratings[order], dtype="<f4").tobytes())
    digest.update(np.ascontiguousarray(times[order], dtype="<i8").tobytes())
    return digest.hexdigest()


def snapshot(
    data: RatingsData, source: str = "", quality_report_id: int | None = None
) -> DataLineage:
    """The lineage of ``data`` as read from ``source``."""
    has_time = data.timestamps is not None and len(data) > 0
    return DataLineage(
        rows=len(data),
        users=data.n_users,
        movies=data.n_movies,
        time_min=_iso(int(data.timestamps.min()))
        if has_time and data.timestamps is not None
        else None,
        time_max=_iso(int(data.timestamps.max()))
        if has_time and data.timestamps is not None
        else None,
        sha256=data_sha256(data),
        source=source,
        quality_report_id=quality_report_id,
    )


def with_split(lineage: DataLineage, train: RatingsData, test: RatingsData) -> DataLineage:
    """``lineage`` plus the holdout split's sizes and first holdout time."""
    split_time = None
    if test.timestamps is not None and len(test):
        split_time = _iso(int(test.timestamps.min()))
    return lineage.model_copy(
        update={"train_rows": len(train), "test_rows": len(test), "split_time": split_time}
    )
