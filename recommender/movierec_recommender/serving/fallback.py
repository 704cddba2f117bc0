"""Cold-start answers: popular among users of the same demographic segment, else popular overall.

Segments are (gender, age band). A segment's list is a Borda count over the model's own
recommendations for a deterministic sample of known users in that segment, so it needs no ratings
table at serving time: only user metadata (a users.csv or the database's `users` table).
"""

from __future__ import annotations

import csv
import logging
import zlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from movierec_recommender.demographics import age_bucket

log = logging.getLogger(__name__)


class RecommenderLike(Protocol):
    algo: str

    def recommend(self, user_id: str, n: int = 20, exclude_seen: bool = True) -> Any: ...

    def known_user(self, user_id: str) -> bool: ...

    def popular(self, n: int) -> list[str]: ...


def age_band(age: int | None) -> str:
    """The shared age band (`<18`, `18-24`, ..., `56+`), or `?` when unknown."""
    return age_bucket(age) or "?"


def segment_of(age: int | None, gender: str | None) -> tuple[str, str]:
    return ((gender or "?").strip().upper()[:1] or "?", age_band(age))


def _int_or_none(text: Any) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def read_users_csv(path: str | Path) -> dict[str, tuple[str, str]]:
    """users.csv (`user_id,age,occupation,gender`) → user id → segment."""
    users: dict[str, tuple[str, str]] = {}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            uid = (row.get("user_id") or "").strip()
            if uid:
                users[uid] = segment_of(_int_or_none(row.get("age")), row.get("gender"))
    return users


def read_users_db(url: str) -> dict[str, tuple[str, str]]:
    """The database's `users` table → user id → segment."""
    import sqlalchemy as sa
    from movierec_ingestor.db import create_engine

    engine = create_engine(url)  # every URL form (postgresql://, postgres://, sqlite)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT user_id, age, gender FROM users"))
            return {str(r[0]): segment_of(_int_or_none(r[1]), r[2]) for r in rows}
    finally:
        engine.dispose()


def _sample_key(user_id: str) -> int:
    return zlib.crc32(user_id.encode())


@dataclass
class Fallback:
    """Popular lists per segment plus the global one; `for_user` is a dict lookup."""

    popular: list[str]
    popular_scores: list[float]
    users: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    segments: dict[tuple[str, str], tuple[list[str], list[float]]] = field(default_factory=dict)
    by_gender: dict[str, tuple[list[str], list[float]]] = field(default_factory=dict)

    def for_user(self, user_id: str) -> tuple[list[str], list[float], str]:
        """(ids, scores, kind) where kind is `segment`, `gender` or `popular`."""
        seg = self.users.get(user_id)
        if seg is not None:
            if seg in self.segments:
                ids, scores = self.segments[seg]
                return ids, scores, "segment"
            if seg[0] in self.by_gender:
                ids, scores = self.by_gender[seg[0]]
                return ids, scores, "gender"
        return self.popular, self.popular_scores, "popular"


def _rank_scores(n: int) -> list[float]:
    return [round(1.0 - i / max(n, 1), 6) for i in range(n)]


def _borda(model: RecommenderLike, user_ids: list[str], n: int) -> tuple[list[str], list[float]]:
    points: dict[str, float] = defaultdict(float)
    depth = 2 * n
    for uid in user_ids:
        ids, _ = model.recommend(uid, n=depth, exclude_seen=False)
        for rank, movie in enumerate(list(ids)[:depth]):
            points[movie] += depth - rank
    ranked = sorted(points.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    top = ranked[0][1] if ranked else 1.0
    return [m for m, _ in ranked], [round(p / top, 6) for _, p in ranked]


def build_fallback(
    model: RecommenderLike,
    users: Mapping[str, tuple[str, str]] | None,
    n: int,
    sample_per_segment: int = 40,
    min_users: int = 5,
) -> Fallback:
    """The fallback lists for `model`; segments with fewer than `min_users` known users are skipped."""
    popular = list(model.popular(n))
    fb = Fallback(popular=popular, popular_scores=_rank_scores(len(popular)), users=users or {})
    if not users:
        return fb
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    for uid, seg in users.items():
        members[seg].append(uid)
    gender_members: dict[str, list[str]] = defaultdict(list)
    for seg, uids in members.items():
        known = sorted((u for u in uids if model.known_user(u)), key=_sample_key)
        if seg[0] != "?":
            gender_members[seg[0]].extend(known[:sample_per_segment])
        if seg[0] == "?" or seg[1] == "?" or len(known) < min_users:
            continue
        fb.segments[seg] = _borda(model, known[:sample_per_segment], n)
    for gender, uids in gender_members.items():
        if len(uids) >= min_users:
            picked = sorted(uids, key=_sample_key)[:sample_per_segment]
            fb.by_gender[gender] = _borda(model, picked, n)
    log.info(
        "fallback: %d segments, %d genders, %d users",
        len(fb.segments),
        len(fb.by_gender),
        len(users),
    )
    return fb
