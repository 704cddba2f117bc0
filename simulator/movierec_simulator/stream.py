"""The course-format history stream: sessions plus realistic noise, with an exact injection count."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from movierec_ingestor.events import WatchEvent, format_fields, format_line, format_time

from movierec_simulator import malformed
from movierec_simulator.attacks import Drift, Shilling, resolve_target, shilling_events
from movierec_simulator.sessions import (
    KIND_NAMES,
    KIND_RATE,
    KIND_WATCH,
    SECOND,
    Answers,
    EventTable,
    simulate_sessions,
)
from movierec_simulator.world import World

DEFAULT_START = datetime(2025, 10, 1)
# Time formats seen in the real stream: no fraction, microseconds, nanoseconds.
STYLE_SECONDS, STYLE_MICROS, STYLE_NANOS = 0, 1, 2
STYLE_SHARES = (0.3, 0.4, 0.3)


@dataclass
class StreamSummary:
    """What a generated stream contains, so ingestion can be checked exactly."""

    lines: int
    valid_events: int  # valid lines, duplicates included
    distinct_events: int  # what an idempotent store ends up with
    duplicates: int  # exact repeats of an earlier valid line
    out_of_order: int  # valid lines delivered after lines with later times
    malformed: dict[str, int]  # parser reason -> lines
    events_by_kind: dict[str, int]  # distinct events per kind
    active_users: int
    start: str
    end: str
    seed: int
    drift: dict[str, Any] | None = None
    shilling: dict[str, Any] | None = None

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "malformed_total": self.malformed_total}


@dataclass(eq=False)
class History:
    """A generated stream: iterate for the lines (`str`, or `bytes` for undecodable garbage)."""

    world: World
    start: datetime
    events: EventTable  # sorted by time
    styles: np.ndarray  # time format per event
    answers: Answers
    rows: np.ndarray  # emission order: >= 0 an event index, < 0 ~malformed index
    malformed_lines: list[str | bytes]
    malformed_reasons: list[str]  # the parser reason each malformed line triggers
    malformed_users: np.ndarray
    summary: StreamSummary

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[str | bytes]:
        for _, line in self.keyed():
            yield line

    def keyed(self) -> Iterator[tuple[int | None, str | bytes]]:
        """(user id to key by, line) in emission order; malformed lines carry the user id of
        the event they imitate, so a keyed sink puts them in that user's partition."""
        lines = self._event_lines()
        users = self.events.user_id.tolist()
        for row in self.rows.tolist():
            if row >= 0:
                yield users[row], lines[row]
            else:
                j = ~row
                yield int(self.malformed_users[j]), self.malformed_lines[j]

    def _event_lines(self) -> _LazyLines:
        return _LazyLines(self)

    def format_event(self, i: int) -> str:
        """The line of valid event `i`, in its own time format (stable across calls)."""
        return _LazyLines(self, np.array([i]))[0]


class _LazyLines:
    """Formats event lines on first access; bulk conversions up front keep the per-line cost low."""

    def __init__(self, history: History, idx: np.ndarray | None = None) -> None:
        ev = history.events if idx is None else history.events.take(idx)
        base = np.datetime64(history.start, "us")
        self._times = (base + (ev.t_ns // 1000).astype("timedelta64[us]")).tolist()
        self._nanos = (ev.t_ns % SECOND).tolist()
        self._kinds = ev.kind.tolist()
        self._users = ev.user_id.tolist()
        self._movies = ev.movie.tolist()
        self._values = ev.value.tolist()
        self._nano_style = (history.styles if idx is None else history.styles[idx]) == STYLE_NANOS
        self._movie_ids = history.world.movie_ids
        self._answers = history.answers

    def __getitem__(self, i: int) -> str:
        when: datetime = self._times[i]
        kind, user, value = self._kinds[i], self._users[i], self._values[i]
        if kind == KIND_WATCH:
            line = format_fields("watch", (when, user, self._movie_ids[self._movies[i]], value))
        elif kind == KIND_RATE:
            line = format_fields("rate", (when, user, self._movie_ids[self._movies[i]], value))
        else:
            a = self._answers
            fields = (
                when,
                user,
                a.server[value],
                a.status[value],
                a.results[value],
                a.latency_ms[value],
                a.error[value],
            )
            line = format_fields("recommendation", fields)
        if self._nano_style[i]:
            # format_time stops at microseconds; real producers also write nanoseconds.
            rest = line.split(",", 1)[1]
            line = f"{format_time(when.replace(microsecond=0))}.{self._nanos[i]:09d},{rest}"
        return line


def generate_history(
    world: World,
    hours: float,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    malformed_share: float = 0.01,
    *,
    duplicate_share: float = 0.005,
    out_of_order_share: float = 0.005,
    sessions_per_day: float = 1.0,
    request_share: float = 0.3,
    max_minutes_per_view: int = 30,
    drift: Drift | None = None,
    shilling: Shilling | None = None,
) -> History:
    """Simulate `hours` of the world's activity as course-format lines, deterministic per seed."""
    _check(hours, malformed_share, duplicate_share, out_of_order_share, max_minutes_per_view)
    rng = np.random.default_rng(np.random.SeedSequence([seed, world.seed, 0x57EA]))
    end_ns = int(hours * 3600 * SECOND)
    answers = Answers()
    per_day = world.activity * sessions_per_day
    sessions = rng.poisson(per_day * hours / 24.0)
    common = {"max_minutes": max_minutes_per_view, "request_share": request_share}
    tables: list[EventTable] = []
    drift_info: dict[str, Any] | None = None
    if drift is not None:
        cohort = np.sort(
            rng.choice(
                world.n_users, size=max(1, int(drift.cohort_share * world.n_users)), replace=False
            )
        )
        drift_ns = int(end_ns * drift.start_fraction)
        sessions[cohort] = 0
        window_days = (end_ns - drift_ns) / (86400 * SECOND)
        cohort_sessions = rng.poisson(per_day[cohort] * drift.activity_factor * window_days) + 1
        tables.append(
            simulate_sessions(
                world,
                cohort,
                cohort_sessions,
                (drift_ns, end_ns),
                rng,
                answers=answers,
                genre_boost=drift.boost_vector(),
                rating_shift=drift.rating_shift,
                **common,
            )
        )
        drift_info = {
            **asdict(drift),
            "window_start": format_time(start + timedelta(microseconds=drift_ns // 1000)),
            "cohort_user_ids": world.user_ids[cohort].tolist(),
        }
    tables.insert(
        0,
        simulate_sessions(
            world, np.arange(world.n_users), sessions, (0, end_ns), rng, answers=answers, **common
        ),
    )
    shilling_info: dict[str, Any] | None = None
    if shilling is not None:
        target = resolve_target(world, shilling, rng)
        table, fake_ids = shilling_events(world, shilling, target, end_ns, rng)
        tables.append(table)
        shilling_info = {
            "user_ids": fake_ids.tolist(),
            "target": world.movie_ids[target],
            "rating": shilling.rating,
            "start": format_time(start + timedelta(microseconds=int(table.t_ns.min()) // 1000)),
            "end": format_time(start + timedelta(microseconds=int(table.t_ns.max()) // 1000)),
        }

    events = EventTable.concat(tables)
    # The log is a window: sessions running over its edges are cut, as in a real log excerpt.
    events = events.take(np.flatnonzero((events.t_ns >= 0) & (events.t_ns < end_ns)))
    styles = rng.choice(3, size=len(events), p=STYLE_SHARES).astype(np.int8)
    # The stored time is what the line shows: whole seconds, microseconds, or nanoseconds.
    t = events.t_ns.copy()
    t[styles == STYLE_SECONDS] -= t[styles == STYLE_SECONDS] % SECOND
    t[styles == STYLE_MICROS] -= t[styles == STYLE_MICROS] % 1000
    events = EventTable(t, events.user_id, events.kind, events.movie, events.value)
    order = np.argsort(events.t_ns, kind="stable")
    events, styles = events.take(order), styles[order]

    rows, n_dup, n_late, mal_pos = _emission_order(
        len(events), malformed_share, duplicate_share, out_of_order_share, rng
    )
    mal_lines, mal_reasons, mal_users = _malformed_lines(world, events, mal_pos, rng, start)
    mal_counts = {r: n for r in malformed.MALFORMED_CLASSES if (n := mal_reasons.count(r))}
    distinct_kinds = Counter(np.asarray(events.kind).tolist())
    summary = StreamSummary(
        lines=len(rows),
        valid_events=len(events) + n_dup,
        distinct_events=len(events),
        duplicates=n_dup,
        out_of_order=n_late,
        malformed=mal_counts,
        events_by_kind={name: distinct_kinds.get(k, 0) for k, name in enumerate(KIND_NAMES)},
        active_users=int(np.unique(events.user_id).size),
        start=format_time(start),
        end=format_time(start + timedelta(microseconds=end_ns // 1000)),
        seed=seed,
        drift=drift_info,
        shilling=shilling_info,
    )
    return History(
        world, start, events, styles, answers, rows, mal_lines, mal_reasons, mal_users, summary
    )


def _check(hours: float, malformed_share: float, dup: float, late: float, max_minutes: int) -> None:
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    for name, share in (
        ("malformed_share", malformed_share),
        ("duplicate_share", dup),
        ("out_of_order_share", late),
    ):
        if not 0.0 <= share < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {share}")
    if max_minutes < 1:
        raise ValueError(f"max_minutes_per_view must be >= 1, got {max_minutes}")


def _emission_order(
    n_events: int,
    malformed_share: float,
    dup_share: float,
    late_share: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Interleave time-ordered events with late deliveries, exact repeats and malformed lines.

    Returns the emission rows (event index, or ~malformed index), the duplicate and late counts,
    and for each malformed line the position of the event it imitates.
    """
    key = np.arange(n_events, dtype=np.float64)
    n_late = round(late_share * n_events)
    late = rng.choice(n_events, size=n_late, replace=False) if n_late else np.zeros(0, np.int64)
    key[late] += rng.integers(20, 2000, size=n_late)

    n_dup = round(dup_share * n_events)
    dup_src = rng.choice(n_events, size=n_dup, replace=False) if n_dup else np.zeros(0, np.int64)
    dup_key = key[dup_src] + rng.integers(1, 200, size=n_dup) + 0.5

    n_valid = n_events + n_dup
    n_mal = round(malformed_share * n_valid / (1.0 - malformed_share))
    mal_pos = rng.integers(0, max(n_events, 1), size=n_mal) if n_events else np.zeros(0, np.int64)
    mal_key = mal_pos + rng.random(n_mal)

    keys = np.concatenate([key, dup_key, mal_key])
    ids = np.concatenate([np.arange(n_events), dup_src, ~np.arange(n_mal)])
    order = np.argsort(keys, kind="stable")
    return ids[order].astype(np.int64), n_dup, n_late, mal_pos


def _malformed_lines(
    world: World,
    events: EventTable,
    positions: np.ndarray,
    rng: np.random.Generator,
    start: datetime,
) -> tuple[list[str | bytes], list[str], np.ndarray]:
    """Malformed lines spread evenly over the parser's reasons, each imitating a nearby event."""
    classes = malformed.assign_classes(positions.size, rng)
    popular = tuple(world.movie_ids[m] for m in np.argsort(-world.popularity)[:25])
    lines: list[str | bytes] = []
    users = np.zeros(positions.size, dtype=np.int64)
    reasons: list[str] = []
    for j, (pos, cls) in enumerate(zip(positions.tolist(), classes.tolist(), strict=True)):
        movie = int(events.movie[pos])
        if movie < 0:
            movie = int(rng.integers(world.n_movies))
        when = start + timedelta(microseconds=int(events.t_ns[pos]) // 1000)
        user, movie_id = int(events.user_id[pos]), world.movie_ids[movie]
        watch = WatchEvent.model_construct(
            time=when, user_id=user, movie_id=movie_id, minute=int(rng.integers(100))
        )
        template = malformed.Template(
            time=format_time(when),
            user_id=user,
            movie_id=movie_id,
            line=format_line(watch),
            popular=popular,
        )
        reason = malformed.MALFORMED_CLASSES[cls]
        lines.append(malformed.build(reason, template, rng))
        users[j] = template.user_id
        reasons.append(reason)
    return lines, reasons, users
