"""Parser and formatter of the movielog lines: every valid form, every malformed class."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from movierec_ingestor.events import (
    ParseError,
    RateEvent,
    RecommendationEvent,
    WatchEvent,
    format_line,
    parse_line,
    slugify,
)

from .streams import GARBAGE

T = datetime(2025, 10, 17, 1, 33, 45)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "2025-10-17T01:33:45.122692921,4711,GET /data/m/the+green+mile+1999/12.mpg",
            WatchEvent(
                time=T.replace(microsecond=122692),
                user_id=4711,
                movie_id="the+green+mile+1999",
                minute=12,
            ),
        ),
        (
            "2025-10-17T01:33:45.122692,4711,GET /data/m/the+green+mile+1999/0.mpg",
            WatchEvent(
                time=T.replace(microsecond=122692),
                user_id=4711,
                movie_id="the+green+mile+1999",
                minute=0,
            ),
        ),
        (
            "2025-10-17T01:33:45,1,GET /rate/the+matrix=5",
            RateEvent(time=T, user_id=1, movie_id="the+matrix", rating=5),
        ),
        (
            "2025-10-17T01:33,1,GET /rate/1193=1",
            RateEvent(time=T.replace(second=0), user_id=1, movie_id="1193", rating=1),
        ),
        (
            "2025-10-17T01:33:45.5,0,GET /rate/amelie_+2001=3\r\n",
            RateEvent(
                time=T.replace(microsecond=500000), user_id=0, movie_id="amelie_+2001", rating=3
            ),
        ),
        (
            "2025-10-17T01:33:45,7,recommendation request 17645-team01.isri.cmu.edu:8082, "
            "status 200, result: a+1999, 42, the+matrix, 120 ms",
            RecommendationEvent(
                time=T,
                user_id=7,
                server="17645-team01.isri.cmu.edu:8082",
                status=200,
                results=("a+1999", "42", "the+matrix"),
                latency_ms=120,
            ),
        ),
        (
            "2025-10-17T01:33:45,7,recommendation request s:8082, status 200, result: a, 5ms",
            RecommendationEvent(
                time=T, user_id=7, server="s:8082", status=200, results=("a",), latency_ms=5
            ),
        ),
        (
            "2025-10-17T01:33:45,7,recommendation request s:8082, status 500, "
            "result: java.lang.NullPointerException, 33 ms",
            RecommendationEvent(
                time=T,
                user_id=7,
                server="s:8082",
                status=500,
                error="java.lang.NullPointerException",
                latency_ms=33,
            ),
        ),
        (
            "2025-10-17T01:33:45,7,recommendation request s:8082, status 404, result: not found",
            RecommendationEvent(time=T, user_id=7, server="s:8082", status=404, error="not found"),
        ),
    ],
)
def test_valid_forms_parse(line: str, expected: object) -> None:
    assert parse_line(line) == expected
    assert parse_line(line.encode()) == expected


@pytest.mark.parametrize(
    ("reason", "line"), GARBAGE, ids=[f"{r}-{i}" for i, (r, _) in enumerate(GARBAGE)]
)
def test_every_malformed_class_has_its_reason(reason: str, line: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_line(line)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2025-10-17T01:33:45,-1,GET /rate/a=3", "bad_user_id"),
        ("2025-10-17T01:33:45,١٢,GET /rate/a=3", "bad_user_id"),  # Arabic-Indic digits
        ("2025-10-17T01:33:45,99999999999999999999,GET /rate/a=3", "invalid_user_id"),
        ("2025-10-17T01:33:45,1,GET /rate/a=0", "invalid_rating"),
        ("2025-10-17T01:33:45,1,GET /rate/a=3.5", "bad_rate"),
        ("2025-10-17T01:33:45,1,GET /data/m/a/100001.mpg", "invalid_minute"),
        ("2025-10-17T01:33:45+02:00,1,GET /rate/a=3", "bad_time"),
        ("2025-02-30T01:33:45,1,GET /rate/a=3", "bad_time"),
        ("17/10/2025 01:33,1,GET /rate/a=3", "bad_time"),
        (
            "2025-10-17T01:33:45,1,recommendation request s, status 200, result: A, 3 ms",
            "invalid_results",
        ),
        (
            "2025-10-17T01:33:45,1,recommendation request s, status 99x, result: a, 3 ms",
            "bad_recommendation",
        ),
        ("   ", "empty"),
    ],
)
def test_out_of_range_and_wrong_types(line: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_line(line)
    assert info.value.reason == reason


def test_too_many_results() -> None:
    items = ", ".join(f"m{i}" for i in range(101))
    with pytest.raises(ParseError) as info:
        parse_line(
            f"2025-10-17T01:33:45,1,recommendation request s, status 200, result: {items}, 3 ms"
        )
    assert info.value.reason == "too_many_results"


@pytest.mark.parametrize(
    ("title", "year", "slug"),
    [
        ("The Green Mile", 1999, "the+green+mile+1999"),
        ("Amélie", 2001, "am_lie+2001"),
        ("Se7en", None, "se7en"),
        ("", None, "untitled"),
    ],
)
def test_slugify(title: str, year: int | None, slug: str) -> None:
    assert slugify(title, year) == slug
    event = parse_line(f"2025-10-17T01:33:45,1,GET /rate/{slug}=4")
    assert isinstance(event, RateEvent) and event.movie_id == slug


_slugs = st.from_regex(r"\A[a-z0-9_]{1,12}(\+[a-z0-9_]{1,8}){0,3}\Z", fullmatch=True)
_times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1))
_users = st.integers(min_value=0, max_value=2**62)
_servers = st.from_regex(r"\A[a-z0-9.:-]{1,30}\Z", fullmatch=True)
_events = st.one_of(
    st.builds(
        WatchEvent, time=_times, user_id=_users, movie_id=_slugs, minute=st.integers(0, 100_000)
    ),
    st.builds(RateEvent, time=_times, user_id=_users, movie_id=_slugs, rating=st.integers(1, 5)),
    st.builds(
        RecommendationEvent,
        time=_times,
        user_id=_users,
        server=_servers,
        status=st.just(200),
        results=st.lists(_slugs, max_size=20).map(tuple),
        latency_ms=st.integers(0, 10_000_000),
    ),
    st.builds(
        RecommendationEvent,
        time=_times,
        user_id=_users,
        server=_servers,
        status=st.integers(100, 599).filter(lambda s: s != 200),
        error=st.one_of(
            st.none(), st.from_regex(r"\A[A-Za-z][A-Za-z .:]{0,40}[a-z]\Z", fullmatch=True)
        ),
        latency_ms=st.one_of(st.none(), st.integers(0, 10_000_000)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(_events)
def test_format_then_parse_round_trips(event: WatchEvent | RateEvent | RecommendationEvent) -> None:
    assert parse_line(format_line(event)) == event


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_parse_error(raw: bytes) -> None:
    try:
        parse_line(raw)
    except ParseError as exc:
        assert exc.reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_only_raises_parse_error(raw: str) -> None:
    try:
        event = parse_line(raw)
    except ParseError:
        return
    assert parse_line(format_line(event)) == event
