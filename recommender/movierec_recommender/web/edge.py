"""The outermost WSGI layer of both services: the `/recommend` fast path, one header set on every
answer, readiness while draining, and the lifecycle hooks the gunicorn worker calls.

`GET` and `HEAD /recommend/<id>` are answered by the service's `Handler` without Flask's request
machinery (URL map, request and response objects, context locals): every answer passes here.
Everything else goes to the Flask app, whose answers get the same headers on the way out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from movierec_recommender.web.contract import RECOMMEND_PREFIX, wants_json
from movierec_recommender.web.loop import Loop
from movierec_recommender.web.reply import (
    JSON,
    TEXT,
    Reply,
    edge_headers,
    short_reply,
    status_line,
)

log = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

DRAINING = "draining"  # the readiness reason code while the worker drains


class Handler(Protocol):
    """What a service provides to the edge."""

    def recommend(self, raw_id: str, environ: Environ, head: bool) -> Reply:
        """The answer to `GET` (head=False) or `HEAD` (head=True) `/recommend/<raw_id>`."""
        ...

    def identity(self) -> tuple[str, str]:
        """(model version, track) for answers the handler did not make (errors, 503s)."""
        ...

    def not_ready(self) -> str | None:
        """None when ready, else a short reason code (never an exception text or a path)."""
        ...

    def close(self, timeout: float) -> None:
        """Flush and stop background work within `timeout` seconds (worker exit)."""
        ...


class ImmediateHandler(Handler, Protocol):
    """A handler that can often answer without waiting (the recommender: a table lookup); the
    worker's event loop then makes the answer itself and only the rest take a thread."""

    def recommend_now(self, raw_id: str, environ: Environ, head: bool) -> Reply | None:
        """The answer if it needs no wait (no model call, no I/O), else None with no effect."""
        ...


class AsyncHandler(Handler, Protocol):
    """A handler that can also answer in the worker's event loop (the router: its answer is
    mostly a wait for an upstream, which the loop can do without holding a thread)."""

    loop_slots: int  # answers the loop makes at once per worker; more wait in order

    def recommend_async(
        self, raw_id: str, environ: Environ, head: bool, loop: Loop,
        done: Callable[[Reply], None],
    ) -> bool:  # fmt: skip
        """Start the answer; `done(reply)` once, in the loop. False: use `recommend` instead."""
        ...


def _recommend_id(environ: Environ) -> str | None:
    """The raw id of a `GET`/`HEAD /recommend/<id>` request, else None."""
    path: str = environ.get("PATH_INFO", "")
    if not path.startswith(RECOMMEND_PREFIX):
        return None
    raw = path[len(RECOMMEND_PREFIX) :]
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or not raw or "/" in raw:
        return None
    return raw


class Edge:
    """The service as gunicorn sees it (`wsgi:create()` returns this)."""

    def __init__(self, app: WSGIApp, handler: Handler) -> None:
        self.app = app
        self.handler = handler
        self.draining = False
        self._start_async: Callable[..., bool] | None = getattr(handler, "recommend_async", None)
        self._now: Callable[..., Reply | None] | None = getattr(handler, "recommend_now", None)
        self.loop_slots: int = getattr(handler, "loop_slots", 16)

    def fast(self, environ: Environ) -> Reply | None:
        """The answer to `GET`/`HEAD /recommend/<id>`, or None for anything else. The worker
        calls this directly for plain requests (no WSGI round trip); `__call__` for the rest."""
        return self._recommend(self.handler.recommend, environ)

    def fast_now(self, environ: Environ) -> Reply | None:
        """The answer to `GET`/`HEAD /recommend/<id>` when the handler can make it without
        waiting (`ImmediateHandler`), for the worker's event loop; None to take a thread."""
        return None if self._now is None else self._recommend(self._now, environ)

    def _recommend(
        self, answer: Callable[[str, Environ, bool], Reply | None], environ: Environ
    ) -> Reply | None:
        raw = _recommend_id(environ)
        if raw is None:
            return None
        try:
            return answer(raw, environ, environ["REQUEST_METHOD"] == "HEAD")
        except Exception:
            return self._internal_error(environ)

    def fast_async(self, environ: Environ, loop: Loop, done: Callable[[Reply], None]) -> bool:
        """Answer `GET`/`HEAD /recommend/<id>` in the worker's event loop when the handler can
        (`AsyncHandler`): True when `done(reply)` was or will be called, once, in the loop;
        False to take the thread path instead."""
        start = self._start_async
        if start is None:
            return False
        raw = _recommend_id(environ)
        if raw is None:
            return False
        try:
            return start(raw, environ, environ["REQUEST_METHOD"] == "HEAD", loop, done)
        except Exception:
            done(self._internal_error(environ))
            return True

    def _internal_error(self, environ: Environ) -> Reply:
        log.exception("unhandled error on %s", str(environ.get("PATH_INFO", ""))[:60])
        version, track = self.identity()
        return short_reply(500, "internal error", False, model_version=version, track=track)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        reply = self.fast(environ)
        if reply is not None:
            start_response(status_line(reply.status), reply.wsgi_headers())
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [reply.body]
        path = environ.get("PATH_INFO", "")
        if path == "/readyz" and self.draining:
            version, track = self.identity()
            as_json = wants_json(environ.get("HTTP_ACCEPT"))
            reply = short_reply(503, f"not ready: {DRAINING}", as_json, retry_after="1",
                                model_version=version, track=track)  # fmt: skip
            start_response(status_line(reply.status), reply.wsgi_headers())
            return [reply.body]

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            names = {name.lower() for name, _ in headers}
            version, track = self.identity()
            extra = [
                (name, value)
                for name, value in edge_headers(version, track)
                if name.lower() not in names
            ]
            return start_response(status, headers + extra, exc_info)

        return self.app(environ, start)

    # -- what the gunicorn worker calls ------------------------------------------------------

    def identity(self) -> tuple[str, str]:
        return self.handler.identity()

    def begin_drain(self) -> None:
        self.draining = True
        log.info("draining: /readyz answers 503 until this worker stops")

    def close(self, timeout: float) -> None:
        self.handler.close(timeout)


def short(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A short error from a Flask route: one plain-text line, JSON when the client asked."""
    if wants_json(request.headers.get("Accept")):
        resp = Response(json.dumps({"error": message}), status=status, mimetype=JSON)
    else:
        resp = Response(message + "\n", status=status, content_type=TEXT)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def readyz_response(reason: str | None, ready_body: dict[str, Any]) -> Response:
    """/readyz: 200 with `ready_body`, or 503 `not ready: <reason code>`."""
    if reason is None:
        return Response(json.dumps({"ready": True, **ready_body}), content_type=JSON)
    return short(503, f"not ready: {reason}", {"Retry-After": "1"})


def install(app: Flask, handler: Handler) -> Edge:
    """Short errors on the Flask app (never a stack trace, no redirects) and the edge around it."""
    app.url_map.merge_slashes = False

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        allowed = getattr(exc, "valid_methods", None)
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return short(code, (exc.name or "error").lower(), headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.error("unhandled error on %s", request.path[:60], exc_info=exc)
        return short(500, "internal error")

    edge = Edge(app.wsgi_app, handler)
    app.wsgi_app = edge  # type: ignore[method-assign]
    app.extensions["movierec-edge"] = edge
    return edge


def edge_of(app: Flask) -> Edge:
    edge: Edge = app.extensions["movierec-edge"]
    return edge
