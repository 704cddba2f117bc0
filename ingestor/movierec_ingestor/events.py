"""Event lines of the `movielog` stream: typed events, the parser that validates them, the formatter."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_LINE_BYTES = 8192
MAX_RESULTS = 100
MAX_MOVIE_ID = 200
MAX_SERVER = 200
MAX_ERROR = 2000
MAX_USER_ID = 2**62
MAX_MINUTE = 100_000
MAX_LATENCY_MS = 10_000_000
# The client got no HTTP response (refused, reset, timed out): the line carries status 0 and the
# client's exception text. A failed request, which the success rate must count.
NO_RESPONSE = 0
# Title words joined by '+', then '+<year>'; with the year missing the slug ends in '+'.
SLUG_RE = re.compile(r"^[a-z0-9_]+(?:\+[a-z0-9_]+)*\+?$")
# re.ASCII everywhere: `\d` would otherwise accept other scripts' digits, which int() reads but
# the canonical line would spell differently (two keys for one event).
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?$", re.ASCII)
_WATCH_RE = re.compile(r"^GET /data/m/([^/\s]+)/(-?\d+)\.mpg$", re.ASCII)
_RATE_RE = re.compile(r"^GET /rate/([^=\s]+)=(-?\d+)$", re.ASCII)
# A request line is `<head>(.*?)(?:, (\d+)\s*ms)?$` in one pattern, but the lazy middle made
# that a backtracking step per character (24 us for a 20-item list); the head and the latency
# suffix (which cannot hold a comma, so at most one position ends the line with it) are
# matched apart, with the same result.
_REC_HEAD_RE = re.compile(r"recommendation request (\S+), status (\d{1,3}), result:", re.ASCII)
_REC_LATENCY_RE = re.compile(r", (\d+)\s*ms$", re.ASCII)
_SLUG = r"[a-z0-9_]+(?:\+[a-z0-9_]+)*\+?"
# A whole 200-status result list in one match (the common case); per-item checks only to name
# the bad item when it fails.
_RESULTS_RE = re.compile(rf"^ *{_SLUG}(?: *, *{_SLUG})* *$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# The bulk of the stream, a plain line of a common class (a watch, a rating, a 200 request)
# with nothing to trim, in one match on the bytes; anything else (and any value out of range)
# takes the general path, which gives the same fields or the precise reason. Every character
# it accepts is ASCII and printable.
_SLUG_B = _SLUG.encode()
_FAST_RE = re.compile(
    rb"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?),(\d{1,19}),(?:"
    rb"GET /data/m/(" + _SLUG_B + rb")/(\d{1,6})\.mpg"
    rb"|GET /rate/(" + _SLUG_B + rb")=([1-5])"
    # a server name of printable ASCII without commas, as the general path would read it
    rb"|recommendation request ([\x21-\x2b\x2d-\x7e]+), status 200, result: ("
    + _SLUG_B
    + rb"(?:, "
    + _SLUG_B
    + rb")*), (\d{1,8}) ms)",
    re.ASCII,
)
_fast_match = _FAST_RE.fullmatch
_slug_match = SLUG_RE.match

MovieId = Annotated[str, Field(min_length=1, max_length=MAX_MOVIE_ID, pattern=SLUG_RE.pattern)]
UserId = Annotated[int, Field(ge=0, le=MAX_USER_ID)]

Kind = Literal["watch", "rate", "recommendation"]
# The parser's fast form of an event: (kind, field values in the event class's field order,
# without `kind`). The ingest job stores these directly; `parse_line` wraps them in models.
Fields = tuple[Any, ...]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    time: datetime
    user_id: UserId


class WatchEvent(_Event):
    """One minute of a movie streamed by a user."""

    kind: Literal["watch"] = "watch"
    movie_id: MovieId
    minute: int = Field(ge=0, le=MAX_MINUTE)


class RateEvent(_Event):
    """A user's rating of a movie, 1 to 5."""

    kind: Literal["rate"] = "rate"
    movie_id: MovieId
    rating: int = Field(ge=1, le=5)


class RecommendationEvent(_Event):
    """A recommendation request as logged by the client side: an HTTP status, or 0 for none."""

    kind: Literal["recommendation"] = "recommendation"
    server: str = Field(min_length=1, max_length=MAX_SERVER)
    status: int = Field(ge=NO_RESPONSE, le=599)
    results: tuple[MovieId, ...] = ()
    latency_ms: int | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)
    error: str | None = Field(default=None, max_length=MAX_ERROR)

    @field_validator("status")
    @classmethod
    def _http_or_none(cls, status: int) -> int:
        if status != NO_RESPONSE and status < 100:
            raise ValueError("an HTTP status (100-599) or 0 for no response")
        return status


Event = WatchEvent | RateEvent | RecommendationEvent

_FIELD_NAMES: dict[str, tuple[str, ...]] = {
    "watch": ("time", "user_id", "movie_id", "minute"),
    "rate": ("time", "user_id", "movie_id", "rating"),
    "recommendation": ("time", "user_id", "server", "status", "results", "latency_ms", "error"),
}
_CLASSES: dict[str, type[_Event]] = {
    "watch": WatchEvent,
    "rate": RateEvent,
    "recommendation": RecommendationEvent,
}


class ParseError(ValueError):
    """A line that is not a valid event; `reason` is a short, stable code for counting."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def parse_time(text: str) -> datetime:
    """ISO 8601 without zone, with none, micro or nano second fractions (nanos are truncated)."""
    if not _TIME_RE.match(text):
        raise ParseError("bad_time", text[:64])
    try:
        # The regex pins the accepted format; fromisoformat (C, truncates beyond micros) converts.
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ParseError("bad_time", text[:64]) from exc


def format_time(t: datetime) -> str:
    """The stream's time format; microseconds kept when present."""
    return t.isoformat(timespec="microseconds" if t.microsecond else "seconds")


def _decode(raw: str | bytes) -> str:
    if isinstance(raw, bytes | bytearray | memoryview):
        if len(raw) > MAX_LINE_BYTES:
            raise ParseError("too_long", f"{len(raw)} bytes")
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError("not_utf8", str(exc)[:80]) from exc
    if len(raw) > MAX_LINE_BYTES:
        raise ParseError("too_long", f"{len(raw)} chars")
    line = raw.strip("\r\n")
    bad = _CONTROL_RE.search(line)
    if bad:
        raise ParseError("binary", repr(line[:40]))
    return line.strip()


def _user_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ParseError("bad_user_id", text[:40])
    value = int(text)
    if value > MAX_USER_ID:
        raise ParseError("invalid_user_id", f"{value} out of range")
    return value


def _movie_id(text: str) -> str:
    if len(text) > MAX_MOVIE_ID or not _slug_match(text):
        raise ParseError("invalid_movie_id", text[:80])
    return text


def fast_fields(raw: bytes) -> tuple[Kind, Fields, bytes] | None:
    """A plain line's kind, fields and canonical line (`format_fields`, as bytes) from one
    match, or None: the general path then gives the same fields or the precise reason."""
    fast = _fast_match(raw)
    if fast is None:
        return None
    user_id = int(fast[2])
    if user_id > MAX_USER_ID:
        return None
    when = fast[1]
    try:
        time = datetime.fromisoformat(when.decode())
    except ValueError:
        return None  # e.g. month 13: the general path names the reason
    # format_time's spelling, from the text: seconds always, microseconds when not zero
    # (nanoseconds are cut, as fromisoformat cuts them)
    if len(when) == 16:
        when += b":00"
    elif len(when) > 19:
        micros = when[20:26].ljust(6, b"0")
        when = when[:19] if micros == b"000000" else when[:20] + micros
    if (movie := fast[3]) is not None:
        minute = int(fast[4])
        if minute > MAX_MINUTE or len(movie) > MAX_MOVIE_ID:
            return None
        canonical = b"%s,%d,GET /data/m/%s/%d.mpg" % (when, user_id, movie, minute)
        return "watch", (time, user_id, movie.decode(), minute), canonical
    if (movie := fast[5]) is not None:
        if len(movie) > MAX_MOVIE_ID:
            return None
        rating = int(fast[6])
        canonical = b"%s,%d,GET /rate/%s=%d" % (when, user_id, movie, rating)
        return "rate", (time, user_id, movie.decode(), rating), canonical
    server, results, latency = fast[7], fast[8], int(fast[9])
    items = results.decode().split(", ")
    if (
        len(raw) > MAX_LINE_BYTES
        or len(server) > MAX_SERVER
        or latency > MAX_LATENCY_MS
        or len(items) > MAX_RESULTS
        or (len(results) > MAX_MOVIE_ID and max(map(len, items)) > MAX_MOVIE_ID)
    ):
        return None
    canonical = b"%s,%d,recommendation request %s, status 200, result: %s, %d ms" % (
        when,
        user_id,
        server,
        results,
        latency,
    )
    return (
        "recommendation",
        (time, user_id, server.decode(), 200, tuple(items), latency, None),
        canonical,
    )


def parse_fields(raw: str | bytes) -> tuple[Kind, Fields]:
    """Validate one line into (kind, field values), or raise ParseError with a reason code.

    The allocation-free core of `parse_line`, for the ingest hot path; the checks are the
    event models' constraints, so `parse_line` can build models without validating twice.
    """
    if isinstance(raw, bytes) and (fast := fast_fields(raw)) is not None:
        return fast[0], fast[1]
    return parse_general_fields(raw)


def parse_general_fields(raw: str | bytes) -> tuple[Kind, Fields]:
    """`parse_fields` without the fast path: any line, any spelling the contract allows."""
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
        minute = int(m.group(2))
        if not 0 <= minute <= MAX_MINUTE:
            raise ParseError("invalid_minute", str(minute))
        return "watch", (time, user_id, _movie_id(m.group(1)), minute)
    if body.startswith("GET /rate/"):
        m = _RATE_RE.match(body)
        if not m:
            raise ParseError("bad_rate", body[:80])
        rating = int(m.group(2))
        if not 1 <= rating <= 5:
            raise ParseError("invalid_rating", str(rating))
        return "rate", (time, user_id, _movie_id(m.group(1)), rating)
    if body.startswith("recommendation request"):
        return "recommendation", _recommendation(time, user_id, body)
    raise ParseError("unknown_type", body[:80])


def _recommendation(time: datetime, user_id: int, body: str) -> Fields:
    m = _REC_HEAD_RE.match(body)
    if not m:
        raise ParseError("bad_recommendation", body[:80])
    server, status_text = m.groups()
    payload = body[m.end() :]
    latency: str | None = None
    if tail := _REC_LATENCY_RE.search(payload):
        payload, latency = payload[: tail.start()], str(tail[1])
    if len(server) > MAX_SERVER:
        raise ParseError("invalid_server", server[:80])
    status = int(status_text)
    if status != NO_RESPONSE and not 100 <= status <= 599:
        raise ParseError("invalid_status", status_text)
    latency_ms = int(latency) if latency is not None else None
    if latency_ms is not None and latency_ms > MAX_LATENCY_MS:
        raise ParseError("invalid_latency_ms", str(latency))
    if status != 200:
        error = payload.strip()[:MAX_ERROR] or None
        return (time, user_id, server, status, (), latency_ms, error)
    if latency_ms is None:
        raise ParseError("truncated", "recommendation without latency")
    items = tuple(s.strip() for s in payload.split(",")) if payload.strip() else ()
    if len(items) > MAX_RESULTS:
        raise ParseError("too_many_results", str(len(items)))
    if items and not (_RESULTS_RE.match(payload) and max(map(len, items)) <= MAX_MOVIE_ID):
        for item in items:
            if len(item) > MAX_MOVIE_ID or not _slug_match(item):
                raise ParseError("invalid_results", item[:80])
    return (time, user_id, server, status, items, latency_ms, None)


def event_from_fields(kind: Kind, fields: Fields) -> Event:
    """The event model for parser output (already validated, so no second validation pass)."""
    cls = _CLASSES[kind]
    return cls.model_construct(**dict(zip(_FIELD_NAMES[kind], fields, strict=True)))  # type: ignore[return-value]


def parse_line(raw: str | bytes) -> Event:
    """Parse one stream line into an event, or raise ParseError with a reason code."""
    kind, fields = parse_fields(raw)
    return event_from_fields(kind, fields)


def format_fields(kind: Kind, fields: Fields) -> str:
    """The canonical stream line for parser output; equals `format_line` of the event."""
    t, user_id = fields[0], fields[1]
    head = f"{t.isoformat(timespec='microseconds' if t.microsecond else 'seconds')},{user_id},"
    if kind == "watch":
        return f"{head}GET /data/m/{fields[2]}/{fields[3]}.mpg"
    if kind == "rate":
        return f"{head}GET /rate/{fields[2]}={fields[3]}"
    server, status, results, latency_ms, error = fields[2:]
    tail = f", {latency_ms} ms" if latency_ms is not None else ""
    if status != 200:
        return (
            f"{head}recommendation request {server}, status {status}, result: {error or ''}{tail}"
        )
    return f"{head}recommendation request {server}, status 200, result: {', '.join(results)}{tail}"


def format_line(event: Event) -> str:
    """The stream line for an event; `parse_line(format_line(e)) == e` up to nanoseconds."""
    if isinstance(event, WatchEvent):
        return format_fields("watch", (event.time, event.user_id, event.movie_id, event.minute))
    if isinstance(event, RateEvent):
        return format_fields("rate", (event.time, event.user_id, event.movie_id, event.rating))
    return format_fields(
        "recommendation",
        (
            event.time,
            event.user_id,
            event.server,
            event.status,
            event.results,
            event.latency_ms,
            event.error,
        ),
    )


def slugify(title: str, year: int | None = None) -> str:
    """Movie id slug: lower-case title words joined by '+', punctuation as '_', then the year."""
    words = re.sub(r"[^a-z0-9\s]", "_", title.lower()).split()
    slug = "+".join(words) or "untitled"
    return f"{slug}+{year}" if year is not None else slug
