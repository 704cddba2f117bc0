"""The public HTTP contract's pure parts: user ids, content negotiation, answer bodies, OpenAPI."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from movierec_recommender.web.reply import JSON, TEXT

MAX_USER_ID = 2**63 - 1
_USER_ID = re.compile(r"[0-9]{1,19}")
MAX_ITEMS = 100
MAX_MOVIE_ID_CHARS = 200
RECOMMEND_PREFIX = "/recommend/"


def parse_user_id(raw: str) -> int | None:
    """The user id as an int, or None when it is not a plain non-negative decimal integer."""
    if not _USER_ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_USER_ID else None


def wants_json(accept: str | None) -> bool:
    """True when the client asks for JSON (and does not prefer text) in its Accept header."""
    if not accept or "json" not in accept:
        return False
    return _prefers_json(accept[:512])


@functools.lru_cache(maxsize=256)
def _prefers_json(accept: str) -> bool:
    # Clients send a handful of distinct Accept values, hence the small cache.
    best: str | None = parse_accept_header(accept, MIMEAccept).best_match(
        ["text/plain", JSON], default=JSON
    )
    return bool(best == JSON)


def render(
    user_id: int,
    *,
    ids: Sequence[str],
    scores: Sequence[float],
    model_version: str,
    track: str,
    as_json: bool,
) -> tuple[bytes, str]:
    """The body and content type of an answer (ids are bounded in number and length)."""
    ids = [str(i)[:MAX_MOVIE_ID_CHARS] for i in ids[:MAX_ITEMS]]
    if not as_json:
        return ",".join(ids).encode(), TEXT
    items = [
        {"movie_id": m, "score": round(float(s), 6) if math.isfinite(s) else 0.0}
        for m, s in zip(ids, scores, strict=False)
    ]
    body = {"user_id": user_id, "items": items, "model_version": model_version, "track": track}
    return json.dumps(body, separators=(",", ":")).encode(), JSON


def openapi(title: str) -> dict[str, Any]:
    """The OpenAPI document both services publish at /openapi.json."""
    headers = {
        "X-Model-Version": {"schema": {"type": "string"}},
        "X-Track": {"schema": {"type": "string"}},
    }
    answer = {
        "type": "object",
        "required": ["user_id", "items", "model_version", "track"],
        "properties": {
            "user_id": {"type": "integer"},
            "items": {
                "type": "array",
                "maxItems": MAX_ITEMS,
                "items": {
                    "type": "object",
                    "required": ["movie_id", "score"],
                    "properties": {"movie_id": {"type": "string"}, "score": {"type": "number"}},
                },
            },
            "model_version": {"type": "string"},
            "track": {"type": "string"},
        },
    }
    plain = {"text/plain": {"schema": {"type": "string"}}}
    short = {"content": plain, "headers": headers}
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1"},
        "paths": {
            "/recommend/{user_id}": {
                "get": {
                    "parameters": [
                        {
                            "name": "user_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "up to 20 movie ids, best first",
                            "headers": headers,
                            "content": {**plain, JSON: {"schema": answer}},
                        },
                        "400": {"description": "malformed user id", **short},
                        "429": {"description": "rate limited", **short},
                        "503": {"description": "not ready or shedding load", **short},
                    },
                }
            },
            "/healthz": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready: a reason code"},
                    }
                }
            },
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus metrics"}}}},
        },
    }
