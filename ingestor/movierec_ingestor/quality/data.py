"""SQL reads of the gate: the newest window, its reference and the history, as numpy arrays."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from movierec_ingestor import schema as s
from movierec_ingestor.events import ParseError, parse_time
from movierec_ingestor.quality import checks, drift
from movierec_ingestor.quality.poisoning import History, WindowRatings
from movierec_ingestor.quality.settings import CheckThresholds

log = logging.getLogger(__name__)

EVENT_TABLES = (s.watch_events, s.rating_events, s.recommendations)


@dataclass(frozen=True)
class Window:
    """Newest window [start, ∞) and reference [ref_start, start); `end` is its latest event.

    `hours` is the window's actual length (see `resolve_window`); the reference is `slots`
    windows of that length.
    """

    start: datetime
    end: datetime
    ref_start: datetime
    hours: float
    slots: int
    # Events later than this (now + skew) are implausible, never part of the window.
    limit: datetime = datetime.max
    # Server time of the previous gate run: rows ingested since are this run's to judge
    # (None: every row with an ingestion time).
    since: datetime | None = None
    # Set when arrival times are informative (live ingestion): rows claimed more than this
    # many seconds before they arrived count at their arrival (see `effective_time`).
    arrival_lag_s: float | None = None


def epoch(values: Any) -> NDArray[np.float64]:
    """Naive-UTC datetimes (or None) as epoch seconds (NaN for None)."""
    arr = np.array(list(values), dtype="datetime64[us]")
    out = arr.astype(np.int64).astype(np.float64) / 1e6
    out[np.isnat(arr)] = np.nan
    return out


def resolve_window(
    conn: sa.Connection,
    now: datetime,
    hours: float,
    *,
    slots: int,
    skew_seconds: float,
    min_ratings: int,
    tail_share: float,
) -> Window | None:
    """The newest window, or None when the store has no events.

    It ends where the stream's bulk ends: at the newest event once the newest `tail_share` of
    the events of the whole span (reference + window) is set aside, so a few binge-watchers
    streaming hours after everyone else do not drag the window into a near-empty stretch (their
    events still count: the window is open-ended). It spans `hours`, stretched back until it
    holds `min_ratings` ratings, so a quiet night is not too thin to judge.
    """
    limit = now + timedelta(seconds=skew_seconds)
    latest = [
        conn.execute(sa.select(sa.func.max(t.c.time)).where(t.c.time <= limit)).scalar()
        for t in EVENT_TABLES
    ]
    known = [t for t in latest if t is not None]
    if not known:
        return None
    end = _bulk_end(conn, max(known), timedelta(hours=hours) * (slots + 1), tail_share)
    start = end - timedelta(hours=hours)
    r = s.rating_events
    nth_newest = conn.execute(
        sa.select(r.c.time)
        .where(r.c.time <= limit)
        .order_by(r.c.time.desc())
        .limit(1)
        .offset(max(min_ratings - 1, 0))
    ).scalar()
    if nth_newest is not None and nth_newest < start:
        start = nth_newest
    length = end - start
    return Window(
        start, end, start - slots * length, length.total_seconds() / 3600.0, slots, limit=limit
    )


MAX_TAIL_EVENTS = 10_000  # bounds the read; at that many events the tail is minutes long


def _bulk_end(
    conn: sa.Connection, latest: datetime, span: timedelta, tail_share: float
) -> datetime:
    """The time of the k-th newest event, k = tail_share of the events in (latest - span, latest]."""
    in_span = [(t, (t.c.time > latest - span) & (t.c.time <= latest)) for t in EVENT_TABLES]
    total = sum(
        int(conn.execute(sa.select(sa.func.count()).where(c)).scalar() or 0) for _, c in in_span
    )
    k = min(int(total * tail_share), MAX_TAIL_EVENTS)
    if k < 1:
        return latest
    newest: list[datetime] = []
    for t, cond in in_span:
        newest += conn.execute(
            sa.select(t.c.time).where(cond).order_by(t.c.time.desc()).limit(k)
        ).scalars()
    newest.sort(reverse=True)
    return newest[k - 1]


def _not_quarantined(table: sa.Table) -> sa.ColumnElement[bool]:
    q = s.quarantine
    return ~sa.exists().where((q.c.user_id == table.c.user_id) & (q.c.movie_id == table.c.movie_id))


def _lateness_s(conn: sa.Connection, table: sa.Table) -> sa.ColumnElement[Any]:
    """Seconds between a row's claimed time and its arrival (ingestion) time."""
    if conn.dialect.name == "postgresql":
        return sa.func.extract("epoch", table.c.ingested_at - table.c.time)
    return (sa.func.julianday(table.c.ingested_at) - sa.func.julianday(table.c.time)) * 86400.0


def arrival_is_informative(conn: sa.Connection, lag_s: float, sample: int = 10_000) -> bool:
    """True when the store is fed live: most recently ingested ratings arrived within `lag_s`
    of their claimed time. A backfill (history loaded at once) makes every row late; then
    arrival times say nothing about when an account appeared."""
    r = s.rating_events
    recent = (
        sa.select((_lateness_s(conn, r) > lag_s).label("late"))
        .where(r.c.ingested_at.is_not(None))
        .order_by(r.c.ingested_at.desc())
        .limit(sample)
        .subquery()
    )
    late, total = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((recent.c.late, 1), else_=0)), 0),
            sa.func.count(),
        )
    ).one()
    return bool(total) and late / total < 0.5


def effective_time(conn: sa.Connection, table: sa.Table, w: Window) -> sa.ColumnElement[Any]:
    """When the server can vouch the event happened: the claimed time, or the arrival time for
    a row claimed more than the allowed lag before it arrived (backdated, or held back)."""
    if w.arrival_lag_s is None:
        return table.c.time
    late = table.c.ingested_at.is_not(None) & (_lateness_s(conn, table) > w.arrival_lag_s)
    return sa.case((late, table.c.ingested_at), else_=table.c.time)


def window_ratings(conn: sa.Connection, w: Window) -> tuple[WindowRatings, NDArray[np.bool_]]:
    """The window's rating events by effective time, and per event whether its pair is already
    quarantined; `times` are effective times (what the poisoning detector judges)."""
    r = s.rating_events
    when = effective_time(conn, r, w)
    rows = conn.execute(
        sa.select(r.c.user_id, r.c.movie_id, r.c.rating, when, ~_not_quarantined(r))
        .where((when >= w.start) & (r.c.time <= w.limit))
        .order_by(when)
    ).all()
    ratings = WindowRatings(
        user_ids=np.array([row[0] for row in rows], dtype=np.int64),
        movie_ids=np.array([row[1] for row in rows], dtype=str),
        ratings=np.array([row[2] for row in rows], dtype=np.int64),
        times=epoch(row[3] for row in rows),
    )
    return ratings, np.array([bool(row[4]) for row in rows], dtype=bool)


def reference_rating_counts(conn: sa.Connection, w: Window) -> NDArray[np.float64]:
    """Rating histogram of the reference span, quarantined pairs left out as training does."""
    r = s.rating_events
    rows = conn.execute(
        sa.select(r.c.rating, sa.func.count())
        .where((r.c.time >= w.ref_start) & (r.c.time < w.start) & _not_quarantined(r))
        .group_by(r.c.rating)
    ).all()
    counts = np.zeros(5)
    for rating, n in rows:
        if 1 <= rating <= 5:
            counts[rating - 1] = n
    return counts


def history(conn: sa.Connection, w: Window) -> History:
    """Per-movie histograms before the window, and per window rater the first sight (effective
    time of their first event of any kind) and the ratings they had before the window."""
    r = s.rating_events
    r_when = effective_time(conn, r, w)
    window_movies = sa.select(r.c.movie_id).where(r_when >= w.start).distinct()
    movie_rows = conn.execute(
        sa.select(r.c.movie_id, r.c.rating, sa.func.count())
        .where((r_when < w.start) & r.c.movie_id.in_(window_movies) & _not_quarantined(r))
        .group_by(r.c.movie_id, r.c.rating)
    ).all()
    movie_ids = np.array(sorted({m for m, _, _ in movie_rows}), dtype=str)
    counts = np.zeros((movie_ids.size, 5))
    if movie_rows:
        idx = np.searchsorted(movie_ids, np.array([m for m, _, _ in movie_rows], dtype=str))
        rating = np.array([v for _, v, _ in movie_rows], dtype=np.int64)
        n = np.array([c for _, _, c in movie_rows], dtype=np.float64)
        ok = (rating >= 1) & (rating <= 5)
        np.add.at(counts, (idx[ok], rating[ok] - 1), n[ok])

    raters = sa.select(r.c.user_id).where(r_when >= w.start).distinct()
    firsts: dict[int, datetime] = {}
    for table in (r, s.watch_events, s.recommendations):
        when = effective_time(conn, table, w)
        for user, raw in conn.execute(
            sa.select(table.c.user_id, sa.func.min(when))
            .where(table.c.user_id.in_(raters))
            .group_by(table.c.user_id)
        ):
            # SQLite returns a CASE over times as text
            first = datetime.fromisoformat(raw) if isinstance(raw, str) else raw
            if first is not None and (user not in firsts or first < firsts[user]):
                firsts[user] = first
    # An established profile is one built before the window: ratings an account makes during
    # the window (camouflage on popular movies) do not age it.
    totals: dict[int, int] = {
        int(user): int(n)
        for user, n in conn.execute(
            sa.select(r.c.user_id, sa.func.count(sa.distinct(r.c.movie_id)))
            .where(r.c.user_id.in_(raters) & (r_when < w.start))
            .group_by(r.c.user_id)
        )
    }
    users = np.array(sorted(firsts), dtype=np.int64)
    # How far the history reaches, on effective times too: backdated lines must not stretch it
    # (a longer history means a lower past rate per hour, so more bursts).
    raw_earliest = conn.execute(sa.select(sa.func.min(r_when)).where(r_when < w.start)).scalar()
    earliest = (
        datetime.fromisoformat(raw_earliest) if isinstance(raw_earliest, str) else raw_earliest
    )
    return History(
        movie_ids=movie_ids,
        rating_counts=counts,
        user_ids=users,
        first_seen=epoch(firsts[u] for u in users.tolist()),
        total_ratings=np.array([totals.get(u, 0) for u in users.tolist()], dtype=np.int64),
        span_hours=(w.start - earliest).total_seconds() / 3600.0 if earliest else 0.0,
    )


def activity(conn: sa.Connection, w: Window) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Events per active user per window-length slot: (reference slots pooled, newest window)."""
    length = timedelta(hours=w.hours)
    users: list[int] = []
    counts: list[int] = []
    slots: list[int] = []
    for t in EVENT_TABLES:
        whens = [(t.c.time >= w.start, 0)] + [
            (t.c.time >= w.start - (i * length), i) for i in range(1, w.slots + 1)
        ]
        slot = sa.case(*whens, else_=-1).label("slot")
        for user, sl, n in conn.execute(
            sa.select(t.c.user_id, slot, sa.func.count())
            .where(t.c.time >= w.ref_start)
            .group_by(t.c.user_id, slot)
        ):
            users.append(user)
            slots.append(sl)
            counts.append(n)
    u, c, sl_arr = np.array(users, dtype=np.int64), np.array(counts), np.array(slots)
    new = sl_arr == 0
    return (
        drift.activity_per_user(u[~new], c[~new], sl_arr[~new]),
        drift.activity_per_user(u[new], c[new], sl_arr[new]),
    )


def sessions(
    conn: sa.Connection, w: Window
) -> tuple[
    tuple[NDArray[np.float64], NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]
]:
    """((completion ref, new), (watch minutes ref, new)) of sessions last active in each span."""
    ws, m = s.watch_sessions, s.movies
    # The span is decided in SQL: converting every session's time in Python costs more than
    # the query itself.
    is_new = sa.case((ws.c.last_time >= w.start, 1), else_=0)
    rows = conn.execute(
        sa.select(ws.c.max_minute, m.c.runtime, is_new)
        .select_from(ws.outerjoin(m, m.c.movie_id == ws.c.movie_id))
        .where(ws.c.last_time >= w.ref_start)
    ).all()
    minutes = np.array([row[0] for row in rows], dtype=np.float64)
    runtime = np.array([row[1] for row in rows], dtype=np.float64)  # None -> NaN
    new = np.array([row[2] for row in rows], dtype=bool)
    ref_c, ref_m = drift.completion(minutes[~new], runtime[~new])
    new_c, new_m = drift.completion(minutes[new], runtime[new])
    return (ref_c, new_c), (ref_m, new_m)


def watch_summary(
    conn: sa.Connection, w: Window, now: datetime, th: CheckThresholds
) -> checks.TableSummary:
    """Problems among the window's watch events, counted in SQL (watch lines are the bulk)."""
    we = s.watch_events
    in_window = (we.c.time >= w.start) & (we.c.time <= w.limit)

    def count_if(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    row = conn.execute(
        sa.select(
            sa.func.count(),
            count_if(we.c.minute < 0),
            count_if((we.c.user_id < 0) | (we.c.user_id > checks.MAX_USER_ID)),
        ).where(in_window)
    ).one()
    movie_rows = conn.execute(
        sa.select(we.c.movie_id, sa.func.count()).where(in_window).group_by(we.c.movie_id)
    ).all()
    bad_movies = sum(
        n for movie, n in movie_rows if checks.invalid_movie_ids(np.array([movie], dtype=object))
    )
    groups = (
        sa.select(sa.func.count().label("n"))
        .where(in_window)
        .group_by(we.c.user_id, we.c.movie_id, we.c.minute)
        .having(sa.func.count() > 1)
        .subquery()
    )
    duplicates = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(groups.c.n - 1), 0))).scalar()
    return checks.TableSummary(
        table="watch_events",
        rows=int(row[0]),
        out_of_range=int(row[1]),
        bad_ids=int(row[2]) + bad_movies,
        duplicates=int(duplicates or 0),
    )


def implausible_times(
    conn: sa.Connection, table: sa.Table, w: Window, th: CheckThresholds
) -> tuple[int, int]:
    """(future, too_old) among the rows this run judges: those ingested since the previous run.

    Such rows never fall into a window by their own time, so they are judged by when they
    arrived, once: an event dated 1990 or 9999 fails the run after it lands, not every run
    for ever. Rows without an ingestion time (stored before revision 0002) are not judged.
    """
    arrived: sa.ColumnElement[bool] = table.c.ingested_at.is_not(None)
    if w.since is not None:
        arrived = arrived & (table.c.ingested_at >= w.since)

    def count_if(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    row = conn.execute(
        sa.select(count_if(table.c.time > w.limit), count_if(table.c.time < th.oldest_time)).where(
            arrived & ((table.c.time > w.limit) | (table.c.time < th.oldest_time))
        )
    ).one()
    return int(row[0]), int(row[1])


def previous_run(conn: sa.Connection) -> datetime | None:
    """When the gate last ran (server time), or None."""
    return conn.execute(sa.select(sa.func.max(s.quality_reports.c.created_at))).scalar()


def dead_letter_count(conn: sa.Connection, w: Window) -> tuple[float, int]:
    """(dead letters estimated in the window, those whose time could not be read).

    A dead letter is placed by the time at the head of its raw line. Lines whose time cannot be
    read are shared out in the proportion of those that can: garbage does not choose its hour.
    Only lines ingested since the window began can belong to it.
    """
    dl = s.dead_letters
    readable_in = readable_out = unreadable = 0
    for (raw,) in conn.execute(sa.select(dl.c.raw).where(dl.c.ingested_at >= w.start)):
        try:
            t = parse_time(raw.split(",", 1)[0].strip())
        except ParseError:
            unreadable += 1
            continue
        if t >= w.start:
            readable_in += 1
        else:
            readable_out += 1
    readable = readable_in + readable_out
    share = readable_in / readable if readable else 1.0
    return readable_in + unreadable * share, unreadable


def valid_events(conn: sa.Connection, w: Window) -> int:
    return sum(
        int(
            conn.execute(
                sa.select(sa.func.count()).where((t.c.time >= w.start) & (t.c.time <= w.limit))
            ).scalar()
            or 0
        )
        for t in EVENT_TABLES
    )


def metadata_nulls(conn: sa.Connection, w: Window) -> list[tuple[str, dict[str, int], int]]:
    """Null counts of optional metadata for the window's users and movies: (table, nulls, rows)."""
    r, u, m = s.rating_events, s.users, s.movies
    out = []
    for table, key, cols, ids in (
        (u, u.c.user_id, ("age", "occupation", "gender"), sa.select(r.c.user_id)),
        (m, m.c.movie_id, ("title", "year", "genres", "runtime"), sa.select(r.c.movie_id)),
    ):
        active = key.in_(ids.where(r.c.time >= w.start).distinct())
        row = conn.execute(
            sa.select(
                sa.func.count(),
                *(sa.func.count() - sa.func.count(table.c[c]) for c in cols),
            ).where(active)
        ).one()
        out.append(
            (table.name, {c: int(v) for c, v in zip(cols, row[1:], strict=True)}, int(row[0]))
        )
    return out
