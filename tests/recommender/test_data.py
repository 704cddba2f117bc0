"""RatingsData from CSV files and from the ingestor's database tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from movierec_ingestor.errors import BadInputError
from movierec_recommender.data import RatingsData


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_from_csv_reads_integer_and_slug_ids_with_timestamps(tmp_path: Path) -> None:
    f = write(
        tmp_path / "r.csv",
        "user_id,movie_id,rating,timestamp\n"
        "7,the+green+mile+1999,5,1700000000\n"
        "12,42,3.5,1700000100\n"
        "7,42,1,1700000100\n",
    )
    d = RatingsData.from_csv(f)
    assert list(d.user_ids) == ["7", "12", "7"]
    assert list(d.movie_ids) == ["the+green+mile+1999", "42", "42"]
    assert d.ratings.dtype == np.float32 and list(d.ratings) == [5.0, 3.5, 1.0]
    assert d.timestamps is not None and list(d.timestamps) == [1700000000, 1700000100, 1700000100]
    assert d.n_users == 2 and d.n_movies == 2 and len(d) == 3


def test_from_csv_reads_iso_timestamps(tmp_path: Path) -> None:
    text = "user_id,movie_id,rating,timestamp\n1,a,4,2023-11-14T22:15:00\n2,a,3,2023-11-14T22:15:00.5\n"
    d = RatingsData.from_csv(write(tmp_path / "r.csv", text))
    assert d.timestamps is not None and list(d.timestamps) == [1700000100, 1700000100]


def test_from_csv_without_timestamps(tmp_path: Path) -> None:
    d = RatingsData.from_csv(write(tmp_path / "r.csv", "user_id,movie_id,rating\n1,a,4\n"))
    assert d.timestamps is None and len(d) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user,movie,rating\n1,a,4\n", "line 1: expected header"),
        ("user_id,movie_id,rating,extra\n1,a,4,x\n", "line 1: expected header"),
        ("", "line 1: expected header"),
        ("user_id,movie_id,rating\n1,a,4\n2,b,four\n", "line 3: rating 'four' is not a number"),
        ("user_id,movie_id,rating\n1,a,4\n,b,3\n", "line 3: empty user_id"),
        ("user_id,movie_id,rating,timestamp\n1,a,4,yesterday\n", "line 2: timestamp 'yesterday'"),
    ],
)
def test_from_csv_bad_input_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        RatingsData.from_csv(write(tmp_path / "r.csv", text))


def test_from_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not found"):
        RatingsData.from_csv(tmp_path / "nope.csv")


def test_take_keeps_the_shared_vocabulary() -> None:
    d = RatingsData.from_arrays(["b", "a", "b"], ["x", "y", "y"], [1, 2, 3], [3, 2, 1])
    part = d.take(np.array([True, False, True]))
    assert list(part.user_ids) == ["b", "b"] and list(part.movie_ids) == ["x", "y"]
    assert part.n_users == 1 and list(part.timestamps) == [3, 1]  # type: ignore[arg-type]


def _make_db(url: str, with_quarantine: bool = True) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE ratings (user_id BIGINT, movie_id TEXT, rating SMALLINT, time TIMESTAMP,"
                " PRIMARY KEY (user_id, movie_id))"
            )
        )
        conn.execute(
            sa.text("INSERT INTO ratings VALUES (:u, :m, :r, :t)"),
            [
                {"u": 1, "m": "heat+1995", "r": 5, "t": "2025-01-01 00:00:00"},
                {"u": 1, "m": "up+2009", "r": 3, "t": "2025-01-02 00:00:00.500000"},
                {"u": 2, "m": "heat+1995", "r": 1, "t": "2025-01-03 00:00:00"},
            ],
        )
        if with_quarantine:
            conn.execute(
                sa.text(
                    "CREATE TABLE quarantine (user_id BIGINT, movie_id TEXT, reason TEXT,"
                    " report_id INT, created_at TIMESTAMP, PRIMARY KEY (user_id, movie_id))"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO quarantine VALUES (2, 'heat+1995', 'poisoning', 1, '2025-01-04')"
                )
            )
    engine.dispose()


def test_from_db_excludes_quarantined_pairs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    _make_db(url)
    d = RatingsData.from_db(url)
    assert sorted(zip(d.user_ids, d.movie_ids, d.ratings, strict=True)) == [
        ("1", "heat+1995", 5.0),
        ("1", "up+2009", 3.0),
    ]
    assert d.timestamps is not None and sorted(d.timestamps) == [1735689600, 1735776000]
    everything = RatingsData.from_db(url, exclude_quarantined=False)
    assert len(everything) == 3


def test_from_db_without_quarantine_table_or_ratings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    _make_db(url, with_quarantine=False)
    assert len(RatingsData.from_db(url)) == 3
    with pytest.raises(BadInputError, match="no 'ratings' table"):
        RatingsData.from_db(f"sqlite:///{tmp_path / 'empty.db'}")
