"""Rating data for training: `RatingsData` read from a CSV file or the ingestor's database.

Ids are kept as a `Vocabulary` (sorted unique strings) plus int32 codes, so 25M ratings cost ~150 MB rather than
gigabytes of Python strings; `user_ids` / `movie_ids` materialise the string arrays on demand.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from movierec_ingestor.errors import BadInputError

from movierec_recommender.vocabulary import Vocabulary

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("user_id", "movie_id", "rating")
OPTIONAL_COLUMNS = ("timestamp",)
# MovieLens's star scale (half stars; the event stream's integer 1..5 lies inside it): a rating
# outside it is a typo or an attack, and one 1e30 would drag every prediction with it
RATING_SCALE = (0.5, 5.0)


def read_header(path: Path) -> list[str]:
    """The first CSV row, stripped; BadInputError (not a crash) when it is not UTF-8 text."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: line 1: not UTF-8 text ({exc.reason})") from exc
    except csv.Error as exc:
        raise BadInputError(f"{path}: line 1: {exc}") from exc
    return [h.strip() for h in header] if header else []


def drop_repeated_headers(frame: Any, header: list[str], path: Path) -> tuple[Any, np.ndarray]:
    """Rows equal to the header (files concatenated with `cat`) are not data: drop them.

    Returns the remaining rows and, for each, its 0-based data line in the file."""
    cells = frame.apply(lambda col: col.str.strip())
    repeated = (cells == header[: frame.shape[1]]).all(axis=1).to_numpy()
    if repeated.any():
        log.warning("%s: skipped %d repeated header row(s)", path, int(repeated.sum()))
        return frame.loc[~repeated].reset_index(drop=True), np.flatnonzero(~repeated)
    return frame, np.arange(len(frame))


def check_ratings(values: np.ndarray, raw: Any, lines: np.ndarray, path: Path) -> None:
    """Every rating a finite number on RATING_SCALE; BadInputError names the first bad line."""
    lo, hi = RATING_SCALE
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise BadInputError(
            f"{path}: line {lines[bad[0]] + 2}: rating {raw.iloc[bad[0]]!r} is not a number"
        )
    out = np.flatnonzero((values < lo) | (values > hi))
    if len(out):
        raise BadInputError(
            f"{path}: line {lines[out[0]] + 2}: rating {raw.iloc[out[0]]!r} is outside the "
            f"rating scale {lo:g}..{hi:g}"
        )


@dataclass(frozen=True)
class RatingsData:
    """Explicit ratings: one row per (user, movie) event; ids are strings, ratings float32."""

    user_vocab: Vocabulary
    user_codes: np.ndarray  # int32 index into user_vocab, one per rating
    movie_vocab: Vocabulary
    movie_codes: np.ndarray
    ratings: np.ndarray  # float32
    timestamps: np.ndarray | None = None  # int64 epoch seconds

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        user_ids: Any,
        movie_ids: Any,
        ratings: Any,
        timestamps: Any | None = None,
    ) -> RatingsData:
        user_vocab, user_codes = Vocabulary.from_values(np.asarray(user_ids).astype(str))
        movie_vocab, movie_codes = Vocabulary.from_values(np.asarray(movie_ids).astype(str))
        r = np.asarray(ratings, dtype=np.float32)
        ts = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
        return cls(user_vocab, user_codes, movie_vocab, movie_codes, r, ts)._validated()

    def _validated(self) -> RatingsData:
        n = len(self.ratings)
        for name in ("user_codes", "movie_codes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, ratings has {n}")
        if self.timestamps is not None and len(self.timestamps) != n:
            raise ValueError("timestamps and ratings differ in length")
        if n and not np.all(np.isfinite(self.ratings)):
            raise ValueError("ratings contain NaN or infinity")
        return self

    @classmethod
    def from_csv(cls, path: str | Path) -> RatingsData:
        """Read `user_id,movie_id,rating[,timestamp]`; BadInputError names the file and the line."""
        import pandas as pd

        path = Path(path)
        if not path.is_file():
            raise BadInputError(f"ratings file not found: {path}")
        header = read_header(path)
        if (
            tuple(header[:3]) != REQUIRED_COLUMNS
            or any(h not in OPTIONAL_COLUMNS for h in header[3:])
            or len(set(header)) != len(header)
        ):
            raise BadInputError(
                f"{path}: line 1: expected header 'user_id,movie_id,rating[,timestamp]', "
                f"got {','.join(header)!r}"
            )
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise BadInputError(f"{path}: cannot parse CSV: {exc}") from exc
        frame.columns = [c.strip() for c in frame.columns]
        # `lines[k]` = 0-based data line of row k once repeated header rows are dropped
        frame, lines = drop_repeated_headers(frame, header, path)
        for column in ("user_id", "movie_id"):
            empty = np.flatnonzero(frame[column].str.strip().to_numpy() == "")
            if len(empty):
                raise BadInputError(f"{path}: line {lines[empty[0]] + 2}: empty {column}")
        rating = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(dtype=np.float64)
        check_ratings(rating, frame["rating"], lines, path)
        timestamps = None
        if "timestamp" in frame.columns:
            timestamps = _parse_timestamps(frame["timestamp"], path)
        return cls.from_arrays(
            frame["user_id"].str.strip().to_numpy(),
            frame["movie_id"].str.strip().to_numpy(),
            rating.astype(np.float32),
            timestamps,
        )

    @classmethod
    def from_db(cls, url: str, exclude_quarantined: bool = True) -> RatingsData:
        """Latest rating per (user, movie) from the `ratings` table, minus quarantined pairs."""
        import pandas as pd
        import sqlalchemy as sa
        from movierec_ingestor.db import create_engine

        engine = create_engine(url)  # every URL form the ingestor accepts (postgresql://, ...)
        try:
            tables = set(sa.inspect(engine).get_table_names())
            if "ratings" not in tables:
                raise BadInputError(f"{url}: no 'ratings' table; run `movierec ingest` first")
            query = "SELECT r.user_id, r.movie_id, r.rating, r.time FROM ratings r"
            if exclude_quarantined and "quarantine" in tables:
                query += (
                    " WHERE NOT EXISTS (SELECT 1 FROM quarantine q"
                    " WHERE q.user_id = r.user_id AND q.movie_id = r.movie_id)"
                )
            elif exclude_quarantined:
                log.warning("no 'quarantine' table in %s: training on every rating", url)
            with engine.connect() as conn:
                frame = pd.read_sql_query(sa.text(query), conn)
        finally:
            engine.dispose()
        times = pd.to_datetime(frame["time"], errors="coerce", format="ISO8601")
        ts = None
        if len(frame) and not times.isna().any():
            ts = (times.astype("datetime64[ns]").to_numpy().astype(np.int64) // 10**9).astype(
                np.int64
            )
        return cls.from_arrays(
            frame["user_id"].astype(np.int64).astype(str).to_numpy(),
            frame["movie_id"].astype(str).to_numpy(),
            frame["rating"].to_numpy(dtype=np.float32),
            ts,
        )

    # ---- views --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ratings)

    @property
    def user_ids(self) -> np.ndarray:
        return self.user_vocab.id(self.user_codes)

    @property
    def movie_ids(self) -> np.ndarray:
        return self.movie_vocab.id(self.movie_codes)

    @property
    def n_users(self) -> int:
        return len(np.unique(self.user_codes))

    @property
    def n_movies(self) -> int:
        return len(np.unique(self.movie_codes))

    def take(self, index: np.ndarray) -> RatingsData:
        """Rows `index` (a boolean mask or positions); vocabularies are shared, not copied."""
        return RatingsData(
            self.user_vocab,
            self.user_codes[index],
            self.movie_vocab,
            self.movie_codes[index],
            self.ratings[index],
            None if self.timestamps is None else self.timestamps[index],
        )

    def lineage(self) -> dict[str, Any]:
        """Facts about the data worth logging next to a model (sizes, time range, rating scale)."""
        out: dict[str, Any] = {
            "n_ratings": len(self),
            "n_users": self.n_users,
            "n_movies": self.n_movies,
        }
        if len(self):
            out["rating_min"] = float(self.ratings.min())
            out["rating_max"] = float(self.ratings.max())
        if self.timestamps is not None and len(self):
            out["time_min"] = int(self.timestamps.min())
            out["time_max"] = int(self.timestamps.max())
        return out


def _parse_timestamps(column: Any, path: Path) -> np.ndarray:
    """Epoch seconds, or ISO 8601 text (naive = UTC); BadInputError with the first bad line."""
    import pandas as pd

    numeric = pd.to_numeric(column, errors="coerce")
    if not numeric.isna().any():
        return numeric.to_numpy(dtype=np.float64).astype(np.int64)
    parsed = pd.to_datetime(column, errors="coerce", format="ISO8601", utc=True)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise BadInputError(
            f"{path}: line {bad[0] + 2}: timestamp {column.iloc[bad[0]]!r} is neither epoch "
            "seconds nor ISO 8601"
        )
    return parsed.dt.tz_localize(None).astype("datetime64[ns]").to_numpy().astype(np.int64) // 10**9
