"""Provenance events of the `recommendations` topic (JSON): validated into `recommendations` rows."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from movierec_ingestor.events import (
    MAX_LATENCY_MS,
    MAX_MOVIE_ID,
    MAX_RESULTS,
    MAX_SERVER,
    MAX_USER_ID,
    NO_RESPONSE,
    SLUG_RE,
    ParseError,
    parse_time,
)

MAX_TEXT = 200
SHED_STATUS = 503

# (time, user_id, server, status, results, latency_ms, error, request_id, track, model_name,
#  model_version, scores): the `recommendations` columns a provenance event fills.
ProvenanceFields = tuple[Any, ...]


class NotExposure(Exception):  # noqa: N818 - a verdict, not a failure
    """A valid event that showed the user nothing: a HEAD request or a shed (503) answer."""


def _text(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise ParseError("bad_provenance", f"{key}: expected text of 1-{MAX_TEXT} chars")
    if not value.isprintable():
        raise ParseError("bad_provenance", f"{key}: not printable")
    return value


def _number(value: Any, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError("bad_provenance", f"{key}: expected a number")
    if not (math.isfinite(value) and low <= value <= high):
        raise ParseError("bad_provenance", f"{key}: {value!r} out of range")
    return float(value)


def parse_provenance(raw: str | bytes) -> ProvenanceFields:
    """Validate one provenance event into `recommendations` columns, or raise ParseError.

    Raises NotExposure for HEAD requests and shed answers: nothing was shown to anyone.
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError("bad_provenance", f"not JSON: {str(exc)[:80]}") from exc
    if not isinstance(data, dict):
        raise ParseError("bad_provenance", "not a JSON object")
    if str(data.get("method", "GET")).upper() == "HEAD":
        raise NotExposure("HEAD")
    time_text = data.get("time")
    if not isinstance(time_text, str):
        raise ParseError("bad_time", "provenance event without time")
    time: datetime = parse_time(time_text)
    user = data.get("user_id")
    if isinstance(user, bool) or not isinstance(user, int) or not 0 <= user <= MAX_USER_ID:
        raise ParseError("invalid_user_id", repr(user)[:40])
    status = data.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        raise ParseError("invalid_status", repr(status)[:40])
    if status != NO_RESPONSE and not 100 <= status <= 599:
        raise ParseError("invalid_status", str(status))
    if status == SHED_STATUS:
        raise NotExposure("shed")
    track = _text(data, "track")
    model_name = _text(data, "model_name")
    model_version = _text(data, "model_version")
    request_id = _text(data, "request_id", required=False)
    latency = _number(data.get("latency_ms"), "latency_ms", 0, MAX_LATENCY_MS)
    items = data.get("items") or []
    if not isinstance(items, list) or len(items) > MAX_RESULTS:
        raise ParseError("bad_provenance", f"items: expected a list of at most {MAX_RESULTS}")
    ids: list[str] = []
    scores: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            raise ParseError("bad_provenance", "items: expected {movie_id, score} objects")
        movie = item.get("movie_id")
        if not isinstance(movie, str) or len(movie) > MAX_MOVIE_ID or not SLUG_RE.match(movie):
            raise ParseError("invalid_results", repr(movie)[:80])
        ids.append(movie)
        # repr of a float round-trips exactly; scores are for tracing, not arithmetic here
        scores.append(repr(_number(item.get("score"), "score", -1e300, 1e300)))
    server = (track or "")[:MAX_SERVER]  # the serving side knows its track, not its address
    return (
        time,
        user,
        server,
        status,
        ",".join(ids),
        round(latency),
        None,
        request_id,
        track,
        model_name,
        model_version,
        ",".join(scores),
    )


def canonical(fields: ProvenanceFields) -> str:
    """The idempotency text of an event: its request id when it has one, else its content."""
    request_id = fields[7]
    if request_id:
        return f"provenance:{request_id}"
    return "provenance:" + json.dumps([str(f) if isinstance(f, datetime) else f for f in fields])
