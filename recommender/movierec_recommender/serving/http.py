"""HTTP contract pieces shared by the recommender and the router: ids, rendering, headers, errors."""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_accept_header

log = logging.getLogger(__name__)

MAX_USER_ID = 2**63 - 1
_USER_ID = re.compile(r"[0-9]{1,19}")
MAX_ITEMS = 100
MAX_MOVIE_ID_CHARS = 200

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


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
    return _prefers_json(accept)


@functools.lru_cache(maxsize=256)
def _prefers_json(accept: str) -> bool:
    # Pure in the header value (no Flask request), so the router's WSGI hot path can use it;
    # clients send a handful of distinct Accept values, hence the small cache.
    best = parse_accept_header(accept, MIMEAccept).best_match(["text/plain", JSON], default=JSON)
    return best == JSON


def render(
    user_id: int,
    *,
    ids: Sequence[str],
    scores: Sequence[float],
    model_version: str,
    track: str,
    as_json: bool,
) -> tuple[str, str]:
    """The body and content type of an answer (ids are bounded in number and length)."""
    ids = [str(i)[:MAX_MOVIE_ID_CHARS] for i in ids[:MAX_ITEMS]]
    if not as_json:
        return ",".join(ids), TEXT
    items = [
        {"movie_id": m, "score": round(float(s), 6) if math.isfinite(s) else 0.0}
        for m, s in zip(ids, scores, strict=False)
    ]
    body = {"user_id": user_id, "items": items, "model_version": model_version, "track": track}
    return json.dumps(body, separators=(",", ":")), JSON


def short(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A short plain-text error answer (JSON when the client asked for JSON)."""
    if wants_json(request.headers.get("Accept")):
        resp = Response(json.dumps({"error": message}), status=status, mimetype=JSON)
    else:
        resp = Response(message + "\n", status=status, content_type=TEXT)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


@dataclass
class Reply:
    """One answer without Flask: status, body and headers (the security headers come on top)."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def status_line(self) -> str:
        return _STATUS_LINES.get(self.status) or f"{self.status} Unknown"


_STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}
_SECURITY = list(SECURITY_HEADERS.items())


def short_reply(
    status: int, message: str, accept: str | None, headers: list[tuple[str, str]] | None = None
) -> Reply:
    """`short()` without Flask: a short plain-text error, JSON when the client asked for it."""
    if wants_json(accept):
        body, ctype = json.dumps({"error": message}).encode(), JSON
    else:
        body, ctype = (message + "\n").encode(), TEXT
    return Reply(status, body, [("Content-Type", ctype), *(headers or ())])


RECOMMEND_PREFIX = "/recommend/"


class RecommendFastPath:
    """WSGI middleware answering `GET /recommend/<id>` with `answer(raw_id, environ)`, without
    Flask's request machinery (URL map, request and response objects, context locals): every
    answer passes here. Everything else (other paths and methods, HEAD) goes to `app`, whose
    own route calls the same `answer`. It must be the outermost layer: it adds the security
    headers itself and turns an unexpected error into a short 500, never a stack trace."""

    def __init__(self, app: Any, answer: Callable[[str, dict[str, Any]], Reply]) -> None:
        self.app = app
        self.answer = answer

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(RECOMMEND_PREFIX) and environ.get("REQUEST_METHOD") == "GET":
            raw = path[len(RECOMMEND_PREFIX) :]
            if raw and "/" not in raw:
                try:
                    reply = self.answer(raw, environ)
                except Exception:
                    log.exception("unhandled error on %s", path[:60])
                    none = [("X-Model-Version", "none"), ("X-Track", "none")]
                    reply = short_reply(500, "internal error", environ.get("HTTP_ACCEPT"), none)
                headers = reply.headers + _SECURITY
                headers.append(("Content-Length", str(len(reply.body))))
                start_response(reply.status_line, headers)
                return [reply.body]
        return self.app(environ, start_response)


class SecurityHeaders:
    """WSGI middleware adding the security headers to every answer (cheaper than per-response
    Werkzeug header objects, and it covers error answers too)."""

    _extra: tuple[tuple[str, str], ...] = tuple(SECURITY_HEADERS.items())

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.extend(self._extra)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def install_common(app: Flask) -> None:
    """Security headers on every answer; short errors, never a stack trace; no redirects."""
    app.url_map.merge_slashes = False

    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        allowed = getattr(exc, "valid_methods", None)
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return short(code, (exc.name or "error").lower(), headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.error("unhandled error on %s", request.path, exc_info=exc)
        return short(500, "internal error")


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
                        "400": {"description": "malformed user id", "content": plain},
                        "429": {"description": "rate limited", "content": plain},
                        "503": {"description": "not ready or shedding load", "content": plain},
                    },
                }
            },
            "/healthz": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    }
                }
            },
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus metrics"}}}},
        },
    }
