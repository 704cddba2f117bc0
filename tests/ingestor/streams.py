"""Synthetic course-format streams for the ingestor tests: valid events, repeats and garbage."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from movierec_ingestor.batch import event_key
from movierec_ingestor.events import (
    Event,
    RateEvent,
    RecommendationEvent,
    WatchEvent,
    format_line,
)

# One example per malformed class the parser must dead-letter (reason code, line).
GARBAGE: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("truncated", b"2025-10-17T01:33:45,12"),
    ("bad_time", b"2025-13-45T99:99:99,1,GET /rate/a+1999=3"),
    ("bad_user_id", b"2025-10-17T01:33:45,abc,GET /rate/a+1999=3"),
    ("invalid_rating", b"2025-10-17T01:33:45,1,GET /rate/a+1999=9"),
    ("invalid_minute", b"2025-10-17T01:33:45,1,GET /data/m/a+1999/-4.mpg"),
    ("bad_watch", b"2025-10-17T01:33:45,1,GET /data/m/a+1999/x.mpg"),
    ("invalid_movie_id", b"2025-10-17T01:33:45,1,GET /rate/Bad-Movie=3"),
    ("unknown_type", b"2025-10-17T01:33:45,1,POST /login"),
    ("not_utf8", b"\xff\xfe\x00garbage"),
    ("binary", b"2025-10-17T01:33:45,1,GET /rate/a=3\x00\x01"),
    ("bad_recommendation", b"2025-10-17T01:33:45,1,recommendation request x status 200"),
    ("truncated", b"2025-10-17T01:33:45,1,recommendation request s:1, status 200, result: a, b"),
    ("too_long", b"2025-10-17T01:33:45,1,GET /rate/" + b"a" * 9000 + b"=3"),
]


@dataclass
class Stream:
    """Lines in stream order and what a correct ingest must end with."""

    lines: list[bytes] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # distinct valid events
    invalid: int = 0
    latest_rating: dict[tuple[int, str], tuple[datetime, int]] = field(default_factory=dict)
    max_minute: dict[tuple[int, str], int] = field(default_factory=dict)

    def add_event(self, event: Event, *, nanos: str = "") -> None:
        line = format_line(event)
        if nanos and "." in line.split(",", 1)[0]:
            head, rest = line.split(",", 1)
            line = f"{head}{nanos},{rest}"  # extra digits past micros: same event
        self.lines.append(line.encode())
        self.keys.add(event_key(format_line(event)))
        pair = (event.user_id, getattr(event, "movie_id", ""))
        if isinstance(event, RateEvent):
            old = self.latest_rating.get(pair)
            if old is None or (event.time, event.rating) > old:
                self.latest_rating[pair] = (event.time, event.rating)
        elif isinstance(event, WatchEvent):
            self.max_minute[pair] = max(self.max_minute.get(pair, -1), event.minute)

    def add_garbage(self, raw: bytes) -> None:
        self.lines.append(raw)
        self.invalid += 1


def make_stream(
    n: int, *, seed: int = 7, garbage_every: int = 50, repeat_every: int = 20
) -> Stream:
    """`n` lines: mostly valid events out of time order, exact repeats, and garbage."""
    rng = random.Random(seed)
    stream = Stream()
    start = datetime(2025, 10, 17)
    movies = [f"movie+{i}+{1950 + i % 70}" for i in range(300)] + ["42", "the+matrix"]
    recent: list[Event] = []
    while len(stream.lines) < n:
        i = len(stream.lines)
        if garbage_every and i % garbage_every == garbage_every - 1:
            stream.add_garbage(rng.choice(GARBAGE)[1] + str(i).encode() * (i % 2))
            continue
        if recent and repeat_every and i % repeat_every == 0:
            stream.add_event(rng.choice(recent), nanos="999")
            continue
        t = start + timedelta(
            seconds=rng.randrange(0, 30 * 86400),
            microseconds=rng.choice([0, rng.randrange(1, 10**6)]),
        )
        user = rng.randrange(0, 2000)
        movie = rng.choice(movies)
        roll = rng.random()
        event: Event
        if roll < 0.8:
            event = WatchEvent(time=t, user_id=user, movie_id=movie, minute=rng.randrange(0, 180))
        elif roll < 0.9:
            event = RateEvent(time=t, user_id=user, movie_id=movie, rating=rng.randrange(1, 6))
        elif roll < 0.97:
            picks = tuple(rng.sample(movies, 20))
            event = RecommendationEvent(
                time=t,
                user_id=user,
                server="17645-team01.isri.cmu.edu:8082",
                status=200,
                results=picks,
                latency_ms=rng.randrange(1, 900),
            )
        else:
            event = RecommendationEvent(
                time=t,
                user_id=user,
                server="17645-team01.isri.cmu.edu:8082",
                status=503,
                error="Service Unavailable",
                latency_ms=rng.randrange(1, 900),
            )
        stream.add_event(event)
        recent.append(event)
        if len(recent) > 200:
            recent.pop(0)
    return stream


def db_state(url: str) -> dict[str, object]:
    """What the ingest left in the database, in the shape `Stream` predicts."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            keys: list[str] = []
            for table in ("watch_events", "rating_events", "recommendations"):
                keys += conn.execute(sa.text(f"SELECT event_key FROM {table}")).scalars().all()
            dead = conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one()
            ratings = {
                (u, m): (t if isinstance(t, datetime) else datetime.fromisoformat(t), r)
                for u, m, r, t in conn.execute(
                    sa.text("SELECT user_id, movie_id, rating, time FROM ratings")
                )
            }
            minutes = dict(
                ((u, m), x)
                for u, m, x in conn.execute(
                    sa.text("SELECT user_id, movie_id, max_minute FROM watch_sessions")
                )
            )
    finally:
        engine.dispose()
    return {"keys": keys, "dead": dead, "ratings": ratings, "minutes": minutes}


def assert_exactly(stream: Stream, url: str) -> None:
    """The store holds each valid distinct event once, every bad line as a dead letter."""
    state = db_state(url)
    keys = state["keys"]
    assert isinstance(keys, list)
    assert len(keys) == len(set(keys)), "an event was stored twice"
    missing = stream.keys - set(keys)
    extra = set(keys) - stream.keys
    assert not missing, f"{len(missing)} events missing"
    assert not extra, f"{len(extra)} unexpected events"
    assert state["dead"] == stream.invalid
    assert state["ratings"] == stream.latest_rating
    assert state["minutes"] == stream.max_minute


def write_lines(path: str, lines: Iterable[bytes]) -> None:
    """Append lines to a file, newline-terminated."""
    with open(path, "ab") as handle:
        for line in lines:
            handle.write(line + b"\n")
