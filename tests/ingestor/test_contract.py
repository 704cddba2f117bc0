"""The stream contract in full (ARCHITECTURE §3): every line class it allows parses, is stored,
and formats back to its canonical line."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from movierec_ingestor.batch import Batch
from movierec_ingestor.events import (
    NO_RESPONSE,
    ParseError,
    RateEvent,
    RecommendationEvent,
    WatchEvent,
    format_line,
    parse_fields,
    parse_line,
)
from movierec_ingestor.store import Store

T = datetime(2025, 10, 17, 1, 33, 45)
SERVER = "17645-team01.isri.cmu.edu:8082"

# (line class, line, the event it is, its canonical line).
CLASSES = [
    (
        "watch, slug with year",
        "2025-10-17T01:33:45,4711,GET /data/m/the+green+mile+1999/12.mpg",
        WatchEvent(time=T, user_id=4711, movie_id="the+green+mile+1999", minute=12),
        None,
    ),
    (
        "watch, year missing: slug ends in +",
        "2025-10-17T01:33:45,4711,GET /data/m/the+green+mile+/0.mpg",
        WatchEvent(time=T, user_id=4711, movie_id="the+green+mile+", minute=0),
        None,
    ),
    (
        "watch, MovieLens integer id",
        "2025-10-17T01:33:45,4711,GET /data/m/1193/7.mpg",
        WatchEvent(time=T, user_id=4711, movie_id="1193", minute=7),
        None,
    ),
    (
        "rate, year missing",
        "2025-10-17T01:33:45,1,GET /rate/amelie+=5",
        RateEvent(time=T, user_id=1, movie_id="amelie+", rating=5),
        None,
    ),
    (
        "rate, MovieLens integer id",
        "2025-10-17T01:33:45,0,GET /rate/2571=1",
        RateEvent(time=T, user_id=0, movie_id="2571", rating=1),
        None,
    ),
    (
        "time without fraction",
        "2025-10-17T01:33:45,1,GET /rate/a+1999=3",
        RateEvent(time=T, user_id=1, movie_id="a+1999", rating=3),
        None,
    ),
    (
        "time with microseconds",
        "2025-10-17T01:33:45.122692,1,GET /rate/a+1999=3",
        RateEvent(time=T.replace(microsecond=122692), user_id=1, movie_id="a+1999", rating=3),
        None,
    ),
    (
        "time with nanoseconds (cut to micros)",
        "2025-10-17T01:33:45.122692921,1,GET /rate/a+1999=3",
        RateEvent(time=T.replace(microsecond=122692), user_id=1, movie_id="a+1999", rating=3),
        "2025-10-17T01:33:45.122692,1,GET /rate/a+1999=3",
    ),
    (
        "request 200 listing slugs without year and integer ids",
        f"2025-10-17T01:33:45,7,recommendation request {SERVER}, status 200, "
        "result: the+green+mile+, 1193, a+1999, 120 ms",
        RecommendationEvent(
            time=T,
            user_id=7,
            server=SERVER,
            status=200,
            results=("the+green+mile+", "1193", "a+1999"),
            latency_ms=120,
        ),
        None,
    ),
    (
        "request with an HTTP error status",
        f"2025-10-17T01:33:45,7,recommendation request {SERVER}, status 503, "
        "result: Service Unavailable, 3 ms",
        RecommendationEvent(
            time=T, user_id=7, server=SERVER, status=503, error="Service Unavailable", latency_ms=3
        ),
        None,
    ),
    (
        "request without HTTP response: status 0, the client's exception, the time",
        f"2025-10-17T01:33:45,7,recommendation request {SERVER}, status 0, "
        "result: java.net.SocketTimeoutException: Read timed out, 800 ms",
        RecommendationEvent(
            time=T,
            user_id=7,
            server=SERVER,
            status=NO_RESPONSE,
            error="java.net.SocketTimeoutException: Read timed out",
            latency_ms=800,
        ),
        None,
    ),
    (
        "status 0 whose exception text has commas",
        f"2025-10-17T01:33:45,7,recommendation request {SERVER}, status 0, "
        "result: java.net.ConnectException: Connection refused (a, b), 2 ms",
        RecommendationEvent(
            time=T,
            user_id=7,
            server=SERVER,
            status=NO_RESPONSE,
            error="java.net.ConnectException: Connection refused (a, b)",
            latency_ms=2,
        ),
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "line", "event", "canonical"), CLASSES, ids=[c[0] for c in CLASSES]
)
def test_every_line_class_parses_and_formats_canonically(
    name: str, line: str, event: object, canonical: str | None
) -> None:
    assert parse_line(line) == event
    assert parse_line(line.encode()) == event
    assert format_line(parse_line(line)) == (canonical or line)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            f"2025-10-17T01:33:45,7,recommendation request {SERVER}, status 42, result: x",
            "invalid_status",
        ),
        ("2025-10-17T01:33:45,1,GET /rate/a++=3", "invalid_movie_id"),
        ("2025-10-17T01:33:45,1,GET /rate/+=3", "invalid_movie_id"),
    ],
)
def test_what_the_contract_does_not_allow_is_still_dead_lettered(line: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_line(line)
    assert info.value.reason == reason


def test_every_line_class_is_stored_and_no_response_counts_as_a_failed_request(
    tmp_path: Path,
) -> None:
    batch = Batch("test:classes")
    for i, (_, line, _, _) in enumerate(CLASSES):
        batch.add(line.encode(), str(i))
    batch.offsets[0] = len(CLASSES)
    assert batch.dead_letters == []
    store = Store(f"sqlite:///{tmp_path}/store.db")
    try:
        store.write(batch)
        with store.engine.connect() as conn:
            stored = sum(
                conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("watch_events", "rating_events", "recommendations")
            )
            # The availability figure: status 200 within 800 ms over every request logged.
            ok, requests, no_response = conn.execute(
                sa.text(
                    "SELECT sum(CASE WHEN status = 200 AND latency_ms <= 800 THEN 1 ELSE 0 END),"
                    " count(*), sum(CASE WHEN status = 0 THEN 1 ELSE 0 END) FROM recommendations"
                )
            ).one()
            errors = conn.execute(
                sa.text("SELECT error FROM recommendations WHERE status = 0 ORDER BY latency_ms")
            ).scalars()
            assert list(errors) == [
                "java.net.ConnectException: Connection refused (a, b)",
                "java.net.SocketTimeoutException: Read timed out",
            ]
    finally:
        store.close()
    # The nanosecond line is the microsecond line's event: one row for both.
    assert stored == len(CLASSES) - 1
    assert (ok, requests, no_response) == (1, 4, 2)


# ---- property: format(parse(line)) is the canonical line, for every valid class ------------

_word = st.from_regex(r"\A[a-z0-9_]{1,10}\Z", fullmatch=True)
_slug = st.one_of(
    # title words + year
    st.tuples(st.lists(_word, min_size=1, max_size=4), st.integers(1900, 2030)).map(
        lambda t: "+".join(t[0]) + f"+{t[1]}"
    ),
    # the year missing: a trailing '+'
    st.lists(_word, min_size=1, max_size=4).map(lambda w: "+".join(w) + "+"),
    # MovieLens integer ids
    st.integers(1, 300_000).map(str),
)
_fraction = st.one_of(
    st.just(""),
    st.from_regex(r"\A\.[0-9]{6}\Z", fullmatch=True),
    st.from_regex(r"\A\.[0-9]{9}\Z", fullmatch=True),
    st.from_regex(r"\A\.[0-9]{1,9}\Z", fullmatch=True),
)
_when = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda t: t.replace(microsecond=0)
)
_user = st.integers(0, 2**62)
_latency = st.integers(0, 10_000_000)
_server = st.from_regex(r"\A[a-z0-9.:-]{1,30}\Z", fullmatch=True)
_exception = st.from_regex(r"\A[A-Za-z][A-Za-z0-9 .:(),_$-]{0,60}[A-Za-z)]\Z", fullmatch=True)


def _head(when: datetime, fraction: str, user: int) -> tuple[str, str]:
    """(as written, canonical) time and user prefix: six fraction digits, nanoseconds cut,
    '.000000' dropped."""
    written = f"{when.isoformat(timespec='seconds')}{fraction},{user},"
    micros = fraction[1:7].ljust(6, "0")  # '.5' is 500000 microseconds
    canonical_fraction = f".{micros}" if int(micros) else ""
    return written, f"{when.isoformat(timespec='seconds')}{canonical_fraction},{user},"


_bodies = st.one_of(
    st.tuples(_slug, st.integers(0, 100_000)).map(lambda t: f"GET /data/m/{t[0]}/{t[1]}.mpg"),
    st.tuples(_slug, st.integers(1, 5)).map(lambda t: f"GET /rate/{t[0]}={t[1]}"),
    st.tuples(_server, st.lists(_slug, max_size=20), _latency).map(
        lambda t: f"recommendation request {t[0]}, status 200, result: {', '.join(t[1])}, {t[2]} ms"
    ),
    st.tuples(_server, st.integers(100, 599).filter(lambda s: s != 200), _exception, _latency).map(
        lambda t: f"recommendation request {t[0]}, status {t[1]}, result: {t[2]}, {t[3]} ms"
    ),
    st.tuples(_server, _exception, _latency).map(
        lambda t: f"recommendation request {t[0]}, status 0, result: {t[1]}, {t[2]} ms"
    ),
)


@settings(max_examples=500, deadline=None)
@given(_when, _fraction, _user, _bodies)
def test_format_of_parse_is_the_canonical_line(
    when: datetime, fraction: str, user: int, body: str
) -> None:
    written, canonical = _head(when, fraction, user)
    event = parse_line(written + body)
    assert format_line(event) == canonical + body
    assert parse_line(format_line(event)) == event


def _parsed(raw: str | bytes) -> tuple[object, ...] | str:
    try:
        return parse_fields(raw)
    except ParseError as exc:
        return exc.reason


# Watch lines near and past every limit of the fast path's single match: user ids of 19-20
# digits, minutes past the maximum, month 13, a slug of 201 characters, a trailing space.
_EDGE_WATCH = [
    f"{when},{user},GET /data/m/{movie}/{minute}.mpg{tail}"
    for when, user, movie, minute, tail in itertools.product(
        [
            "2025-10-01T10:00",
            "2025-10-01T10:00:05",
            "2025-10-01T10:00:05.5",
            "2025-10-01T10:00:05.000001",
            "2025-10-01T10:00:05.000000123",
            "2025-10-01T10:00:05.123456789",
            "2025-13-01T10:00:00",
        ],
        ["0", "007", str(2**62), str(2**62 + 1), "9" * 19, "9" * 20],
        ["a+b+1999", "a+", "x" * 200, "x" * 201, "A+b", "a++b"],
        ["0", "100000", "100001", "999999", "-1"],
        ["", " ", "\r"],
    )
]


def _stored(raw: str | bytes) -> tuple[object, ...] | str:
    """What a batch makes of one line: its row (event key included) or its dead letter reason."""
    batch = Batch("test", ingested_at=datetime(2026, 1, 1))
    outcome = batch.add(raw, "0")
    rows = [*batch.watch, *batch.rate, *batch.recommendation]
    return rows[0] if rows else outcome


# Rating and request lines near and past every limit of the fast path: ratings 0-6 and '05',
# 100 and 101 results, a result of 201 characters, latencies at and past the maximum, a line
# past 8192 bytes, a server with a comma, a tab or a non-ASCII byte, an empty result list.
_ITEMS = [f"m{i}+" for i in range(101)]
_EDGE_OTHER = [
    *(
        f"2025-10-01T10:00:05{frac},{user},GET /rate/{movie}={rating}{tail}"
        for frac, user, movie, rating, tail in itertools.product(
            ["", ".5", ".000000123"],
            ["0", "007", str(2**62 + 1)],
            ["a+b+1999", "x" * 200, "x" * 201, "a++b"],
            ["0", "1", "5", "6", "05", "-1"],
            ["", " "],
        )
    ),
    *(
        f"2025-10-01T10:00:05,{user},recommendation request {server}, status 200, "
        f"result: {results}, {latency} ms{tail}"
        for user, server, results, latency, tail in itertools.product(
            ["1", "007"],
            ["s:8082", "a,b", "a\tb", "caf\u00e9", "x" * 200, "x" * 201],
            [
                ", ".join(_ITEMS[:100]),
                ", ".join(_ITEMS),
                "a+, " + "y" * 201,
                "a+,b+",
                "a+ , b+",
                "",
                "z" * 8200,
            ],
            ["0", "10000000", "10000001", "012"],
            ["", " "],
        )
    ),
]


def test_the_fast_path_gives_what_the_general_path_gives_at_every_limit() -> None:
    """Bytes (what Kafka and files hand over) may take the one-match fast path; text never
    does: both must give the same fields or the same reason, and the same event key (the fast
    path spells the canonical line from the text it matched)."""
    edges = _EDGE_WATCH + _EDGE_OTHER
    differ = [line for line in edges if _parsed(line.encode()) != _parsed(line)]
    assert not differ, differ[:5]
    differ = [line for line in edges if _stored(line.encode()) != _stored(line)]
    assert not differ, differ[:5]
    # A byte that is not UTF-8 in a server name is the general path's `not_utf8`, not a crash.
    raw = b"2025-10-01T10:00:05,1,recommendation request s\xff, status 200, result: a+, 3 ms"
    assert _parsed(raw) == "not_utf8"


@settings(max_examples=300, deadline=None)
@given(_when, _fraction, _user, _bodies)
def test_the_fast_path_agrees_on_every_line_class(
    when: datetime, fraction: str, user: int, body: str
) -> None:
    line = _head(when, fraction, user)[0] + body
    assert _parsed(line.encode()) == _parsed(line)
    assert _stored(line.encode()) == _stored(line)
