"""The manual audit of the poisoning quarantine: list what is held and why, release pairs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from movierec_ingestor import schema as s


@dataclass(frozen=True)
class Held:
    """One quarantined (user, movie) rating with the evidence that put it there."""

    user_id: int
    movie_id: str
    reason: str
    report_id: int | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "movie_id": self.movie_id,
            "reason": self.reason,
            "report_id": self.report_id,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def _filters(
    table: sa.Table, user: int | None, movie: str | None, report: int | None
) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if user is not None:
        conds.append(table.c.user_id == user)
    if movie is not None:
        conds.append(table.c.movie_id == movie)
    if report is not None:
        conds.append(table.c.report_id == report)
    return conds


def list_held(
    engine: sa.Engine,
    *,
    user: int | None = None,
    movie: str | None = None,
    report: int | None = None,
) -> list[Held]:
    """Quarantined pairs (optionally of one user, movie or gate report), newest first."""
    q = s.quarantine
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(q.c.user_id, q.c.movie_id, q.c.reason, q.c.report_id, q.c.created_at)
            .where(*_filters(q, user, movie, report))
            .order_by(q.c.created_at.desc(), q.c.movie_id, q.c.user_id)
        ).all()
    return [Held(int(r[0]), str(r[1]), str(r[2]), r[3], r[4]) for r in rows]


def release(
    engine: sa.Engine,
    *,
    user: int | None = None,
    movie: str | None = None,
    report: int | None = None,
    note: str | None = None,
) -> list[Held]:
    """Release the matching pairs: training sees them again and the gate will not re-quarantine
    them. At least one filter is required. Returns what was released."""
    if user is None and movie is None and report is None:
        raise ValueError("say what to release: a user, a movie and/or a report")
    held = list_held(engine, user=user, movie=movie, report=report)
    if not held:
        return []
    now = datetime.now(UTC).replace(tzinfo=None)
    q, rel = s.quarantine, s.quarantine_releases
    with engine.begin() as conn:
        for h in held:
            conn.execute(
                sa.delete(rel).where((rel.c.user_id == h.user_id) & (rel.c.movie_id == h.movie_id))
            )
        conn.execute(
            sa.insert(rel),
            [
                {
                    "user_id": h.user_id,
                    "movie_id": h.movie_id,
                    "reason": h.reason,
                    "note": note,
                    "released_at": now,
                }
                for h in held
            ],
        )
        conn.execute(sa.delete(q).where(*_filters(q, user, movie, report)))
    return held


def released_pairs(conn: sa.Connection) -> set[tuple[int, str]]:
    """Pairs a person released: never quarantined again."""
    rel = s.quarantine_releases
    return {(int(u), str(m)) for u, m in conn.execute(sa.select(rel.c.user_id, rel.c.movie_id))}
