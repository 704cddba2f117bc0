"""Reads what the online evaluator joins: recent exposures and the outcomes after them (SQL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from movierec_recommender.online.arms import exposures_frame

# Provenance columns of `recommendations` (PLAN: provenance in the store); older stores lack them.
PROVENANCE_COLUMNS = ("track", "model_name", "model_version", "source")
_CHUNK = 5000  # bounded IN lists


@dataclass
class StoreData:
    exposures: pd.DataFrame
    outcomes: dict[str, pd.DataFrame]
    popularity: pd.Series  # movie_id -> watchers or the metadata's popularity
    catalogue_size: int


def load(engine: sa.Engine, since: datetime, until: datetime) -> StoreData:
    """Exposures served in [since, until) and every outcome of their users from `since` on.

    Exposures come from provenance rows (track and model version known); a store holding only
    the course log's request lines gives exposures of track "unknown".
    """
    with engine.connect() as conn:
        exposures = _exposures(conn, since, until)
        users = sorted({int(u) for u in exposures["user_id"]})
        outcomes = {
            "watches": _by_users(
                conn,
                "SELECT user_id, movie_id, time, minute FROM watch_events "
                "WHERE time >= :since AND user_id IN :ids",
                users,
                since,
            ),
            "ratings": _by_users(
                conn,
                "SELECT user_id, movie_id, time, rating FROM rating_events "
                "WHERE time >= :since AND user_id IN :ids",
                users,
                since,
            ),
            "users": _by_users(
                conn, "SELECT user_id, age, gender FROM users WHERE user_id IN :ids", users, since
            ),
            "movies": pd.read_sql(
                sa.text("SELECT movie_id, runtime, popularity FROM movies"), conn
            ),
        }
        watchers = pd.read_sql(
            sa.text("SELECT movie_id, COUNT(*) AS n FROM watch_sessions GROUP BY movie_id"), conn
        )
    for name in ("watches", "ratings"):
        frame = outcomes[name]
        frame["time"] = pd.to_datetime(frame["time"])
        frame["user_id"] = frame["user_id"].astype(np.int64)
        frame["movie_id"] = frame["movie_id"].astype(str)
    movies = outcomes["movies"]
    popularity = watchers.set_index("movie_id")["n"].astype(float)
    if len(movies) and movies["popularity"].notna().mean() > 0.5:
        popularity = movies.set_index("movie_id")["popularity"].dropna().astype(float)
    return StoreData(
        exposures=exposures,
        outcomes=outcomes,
        popularity=popularity,
        catalogue_size=max(len(movies), len(watchers)),
    )


def _exposures(conn: sa.Connection, since: datetime, until: datetime) -> pd.DataFrame:
    present = {c["name"] for c in sa.inspect(conn).get_columns("recommendations")}
    chosen = [
        f"{c}" if c in present else f"NULL AS {c}" for c in PROVENANCE_COLUMNS if c != "source"
    ]
    sql = (
        "SELECT time, user_id, status, results, latency_ms, "
        + ", ".join(chosen)
        + (", source" if "source" in present else ", NULL AS source")
        + " FROM recommendations WHERE time >= :since AND time < :until"
    )
    rows = pd.read_sql(sa.text(sql), conn, params={"since": since, "until": until})
    provenance = rows["source"] == "provenance"
    # every answer may be stored twice (its provenance event and its course log line): count once
    rows = rows[provenance] if provenance.any() else rows
    rows = rows.drop(columns=["source"])
    rows["items"] = pd.Series([_split(r) for r in rows["results"].tolist()], index=rows.index)
    rows = rows.drop(columns=["results"])
    return exposures_frame(rows)


def _split(results: Any) -> list[str]:
    if not isinstance(results, str) or not results:
        return []
    return [item.strip() for item in results.split(",") if item.strip()]


def _by_users(conn: sa.Connection, sql: str, users: list[int], since: datetime) -> pd.DataFrame:
    stmt = sa.text(sql).bindparams(sa.bindparam("ids", expanding=True))
    frames = [
        pd.read_sql(stmt, conn, params={"ids": users[i : i + _CHUNK], "since": since})
        for i in range(0, len(users), _CHUNK)
    ]
    if frames:
        return pd.concat(frames, ignore_index=True)
    # no users: an empty frame with the query's columns
    empty = sa.text(sql.replace("IN :ids", "IN (NULL)"))
    return pd.read_sql(empty, conn, params={"since": since})
