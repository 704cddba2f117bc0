"""Event lines of the `movielog` stream: typed events, the parser that validates them, the formatter."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_LINE_BYTES = 8192
MAX_RESULTS = 100
SLUG_RE = re.compile(r"^[a-z0-9_]+(?:\+[a-z0-9_]+)*$")
_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?$"
)
_WATCH_RE = re.compile(r"^GET /data/m/([^/\s]+)/(-?\d+)\.mpg$")
_RATE_RE = re.compile(r"^GET /rate/([^=\s]+)=(-?\d+)$")
_REC_RE = re.compile(
    r"^recommendation request (\S+), status (\d{3}), result: (.*?)(?:, (\d+)\s*ms)?$"
)

MovieId = Annotated[str, Field(min_length=1, max_length=200, pattern=SLUG_RE.pattern)]
UserId = Annotated[int, Field(ge=0, le=2**62)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    time: datetime
    user_id: UserId


class WatchEvent(_Event):
    """One minute of a movie streamed by a user."""

    kind: Literal["watch"] = "watch"
    movie_id: MovieId
    minute: int = Field(ge=0, le=100_000)


class RateEvent(_Event):
    """A user's rating of a movie, 1 to 5."""

    kind: Literal["rate"] = "rate"
    movie_id: MovieId
    rating: int = Field(ge=1, le=5)


class RecommendationEvent(_Event):
    """A recommendation request as logged by the serving side."""

    kind: Literal["recommendation"] = "recommendation"
    server: str = Field(min_length=1, max_length=200)
    status: int = Field(ge=100, le=599)
    results: tuple[MovieId, ...] = ()
    latency_ms: int | None = Field(default=None, ge=0, le=10_000_000)
    error: str | None = Field(default=None, max_length=2000)


Event = WatchEvent | RateEvent | RecommendationEvent


class ParseError(ValueError):
    """A line that is not a valid event; `reason` is a short, stable code for counting."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def parse_time(text: str) -> datetime:
    """ISO 8601 without zone, with none, micro or nano second fractions (nanos are truncated)."""
    m = _TIME_RE.match(text)
    if not m:
        raise ParseError("bad_time", text[:64])
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m.group(6) or 0)
    micro = int((m.group(7) or "0").ljust(9, "0")[:6])
    try:
        return datetime(year, month, day, hour, minute, second, micro)
    except ValueError as exc:
        raise ParseError("bad_time", text[:64]) from exc


def format_time(t: datetime) -> str:
    """The stream's time format; microseconds kept when present."""
    return t.isoformat(timespec="microseconds" if t.microsecond else "seconds")


def _decode(raw: str | bytes) -> str:
    if isinstance(raw, bytes):
        if len(raw) > MAX_LINE_BYTES:
            raise ParseError("too_long", f"{len(raw)} bytes")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError("not_utf8", str(exc)[:80]) from exc
    if len(raw) > MAX_LINE_BYTES:
        raise ParseError("too_long", f"{len(raw)} chars")
    line = raw.strip("\r\n")
    if any(ord(c) < 32 and c != "\t" for c in line) or "\x7f" in line:
        raise ParseError("binary", repr(line[:40]))
    return line.strip()


def _user_id(text: str) -> int:
    if not text.isdigit():
        raise ParseError("bad_user_id", text[:40])
    return int(text)


def _build(cls: type[_Event], **fields: object) -> Event:
    try:
        return cls(**fields)  # type: ignore[return-value]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "event"
        raise ParseError(f"invalid_{field.split('.')[0]}", err["msg"][:120]) from exc


def parse_line(raw: str | bytes) -> Event:
    """Parse one stream line into an event, or raise ParseError with a reason code."""
    line = _decode(raw)
    if not line:
        raise ParseError("empty")
    parts = line.split(",", 2)
    if len(parts) < 3:
        raise ParseError("truncated", line[:80])
    time = parse_time(parts[0].strip())
    user_id = _user_id(parts[1].strip())
    body = parts[2].strip()
    if body.startswith("GET /data/"):
        m = _WATCH_RE.match(body)
        if not m:
            raise ParseError("bad_watch", body[:80])
        movie, minute = m.group(1), int(m.group(2))
        if minute < 0:
            raise ParseError("invalid_minute", str(minute))
        return _build(WatchEvent, time=time, user_id=user_id, movie_id=movie, minute=minute)
    if body.startswith("GET /rate/"):
        m = _RATE_RE.match(body)
        if not m:
            raise ParseError("bad_rate", body[:80])
        return _build(
            RateEvent, time=time, user_id=user_id, movie_id=m.group(1), rating=int(m.group(2))
        )
    if body.startswith("recommendation request"):
        return _parse_recommendation(time, user_id, body)
    raise ParseError("unknown_type", body[:80])


def _parse_recommendation(time: datetime, user_id: int, body: str) -> Event:
    m = _REC_RE.match(body)
    if not m:
        raise ParseError("bad_recommendation", body[:80])
    server, status_text, payload, latency = m.groups()
    status = int(status_text)
    latency_ms = int(latency) if latency is not None else None
    if status != 200:
        return _build(
            RecommendationEvent,
            time=time,
            user_id=user_id,
            server=server,
            status=status,
            error=payload.strip()[:2000],
            latency_ms=latency_ms,
        )
    if latency is None:
        raise ParseError("truncated", "recommendation without latency")
    items = tuple(s.strip() for s in payload.split(",")) if payload.strip() else ()
    if len(items) > MAX_RESULTS:
        raise ParseError("too_many_results", str(len(items)))
    if any(not SLUG_RE.match(i) for i in items):
        raise ParseError("invalid_results", payload[:80])
    return _build(
        RecommendationEvent,
        time=time,
        user_id=user_id,
        server=server,
        status=status,
        results=items,
        latency_ms=latency_ms,
    )


def format_line(event: Event) -> str:
    """The stream line for an event; `parse_line(format_line(e)) == e` up to nanoseconds."""
    head = f"{format_time(event.time)},{event.user_id},"
    if isinstance(event, WatchEvent):
        return f"{head}GET /data/m/{event.movie_id}/{event.minute}.mpg"
    if isinstance(event, RateEvent):
        return f"{head}GET /rate/{event.movie_id}={event.rating}"
    latency = f", {event.latency_ms} ms" if event.latency_ms is not None else ""
    if event.status != 200:
        return f"{head}recommendation request {event.server}, status {event.status}, result: {event.error or ''}{latency}"
    return (
        f"{head}recommendation request {event.server}, status 200, "
        f"result: {', '.join(event.results)}{latency}"
    )


def slugify(title: str, year: int | None = None) -> str:
    """Movie id slug: lower-case title words joined by '+', punctuation as '_', then the year."""
    words = re.sub(r"[^a-z0-9\s]", "_", title.lower()).split()
    slug = "+".join(words) or "untitled"
    return f"{slug}+{year}" if year is not None else slug
