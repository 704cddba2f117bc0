"""The router's Flask application factory and routes (same HTTP contract as the recommender)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from movierec_recommender.router.assign import Assigner
from movierec_recommender.router.forward import Upstream, Upstreams
from movierec_recommender.router.ratelimit import RateLimiter
from movierec_recommender.router.settings import RouterSettings
from movierec_recommender.serving.http import install_common, parse_user_id, short
from movierec_recommender.serving.metrics import (
    LATENCY_BUCKETS,
    RequestMetrics,
    metrics_response,
    openapi_response,
)

log = logging.getLogger(__name__)
bp = Blueprint("router", __name__)
COMPONENT = "router"
_MARGIN = 0.02  # seconds kept for the router's own work inside the budget


class RouterMetrics(RequestMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.fallbacks = Counter(
            "movierec_router_fallbacks_total",
            "Requests a track failed (error, slow, unavailable) that stable answered instead",
            ("track", "reason"),
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "movierec_router_upstream_latency_seconds",
            "Time an upstream track took to answer (or fail)",
            ("track", "outcome"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "movierec_router_rate_limited_total",
            "Requests refused with 429 by the per-client token bucket",
            registry=registry,
        )


@dataclass
class RouterState:
    settings: RouterSettings
    default_track: str
    registry: CollectorRegistry
    metrics: RouterMetrics
    assigner: Any
    upstreams: Upstreams
    limiter: RateLimiter


def create_app(settings: RouterSettings | None = None, *, assigner: Any = None) -> Flask:
    """The router app; `assigner` (anything with `track(user_id) -> str`) replaces LaunchDarkly."""
    settings = settings or RouterSettings()
    if not settings.tracks:
        raise ValueError('MOVIEREC_ROUTER_TRACKS names no track: {"stable": "http://..."}')
    # The track that answers when assignment fails or a track errs: stable, or for an experiment
    # without one (tracks such as "user-user" and "item-item"), the first track listed.
    default = settings.stable_track
    if default not in settings.tracks:
        default = next(iter(settings.tracks))
        log.warning("no %r track: %r answers fallbacks", settings.stable_track, default)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4096
    registry = CollectorRegistry(auto_describe=True)
    if assigner is None:
        assigner = Assigner(
            flags_file=settings.flags_file,
            sdk_key=settings.sdk_key.get_secret_value() if settings.sdk_key else None,
            poll_seconds=settings.flag_poll_seconds,
            start_wait=settings.ld_start_wait_seconds,
            stable=settings.stable_track,
        )
    app.extensions["movierec-router"] = RouterState(
        settings=settings,
        default_track=default,
        registry=registry,
        metrics=RouterMetrics(registry),
        assigner=assigner,
        upstreams=Upstreams(
            settings.tracks, settings.pool_size, settings.connect_timeout_ms / 1000
        ),
        limiter=RateLimiter(
            settings.rate_limit_rps, settings.rate_limit_burst, settings.rate_limit_clients
        ),
    )
    install_common(app)
    app.register_blueprint(bp)
    return app


def _state() -> RouterState:
    state: RouterState = current_app.extensions["movierec-router"]
    return state


def _client_key(settings: RouterSettings) -> str:
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:64]
    return request.remote_addr or "?"


def _answer(st: RouterState, up: Upstream, track: str, started: float) -> Response:
    resp = Response(up.body, status=up.status)
    for key, value in up.headers.items():
        resp.headers[key] = value
    resp.headers.setdefault("X-Track", track)
    resp.headers.setdefault("X-Model-Version", "none")
    st.metrics.observe(
        COMPONENT,
        resp.headers["X-Track"],
        resp.headers["X-Model-Version"],
        up.status,
        time.perf_counter() - started,
    )
    return resp


def _call(st: RouterState, track: str, path: str, accept: str | None, timeout: float) -> Upstream:
    t0 = time.perf_counter()
    up = st.upstreams.get(track, path, accept, timeout)
    outcome = up.error or str(up.status)
    st.metrics.upstream_latency.labels(track, outcome).observe(time.perf_counter() - t0)
    return up


def _failure(up: Upstream) -> str | None:
    """Why an upstream answer does not count as an answer (None: it does)."""
    if up.error:
        return up.error
    if up.status == 503:
        return "unavailable"
    if up.status >= 500:
        return "error"
    return None


@bp.get("/recommend/<user_id>")
def recommend(user_id: str) -> Response:
    started = time.perf_counter()
    st = _state()
    settings = st.settings
    uid = parse_user_id(user_id)
    if uid is None:
        resp = short(400, "bad user id: expected a non-negative integer")
        return _local(st, resp, "none", started)
    allowed, retry_after = st.limiter.allow(_client_key(settings))
    if not allowed:
        st.metrics.rate_limited.inc()
        resp = short(429, "too many requests", {"Retry-After": str(retry_after)})
        return _local(st, resp, "none", started)
    try:
        track = st.assigner.track(uid)
    except Exception as exc:  # assignment must never fail an answer
        log.warning("track assignment failed, using %s: %s", st.default_track, exc)
        track = st.default_track
    stable = st.default_track
    if track not in st.upstreams:
        track = stable
    path = f"/recommend/{uid}"
    accept = request.headers.get("Accept")
    budget = settings.budget_ms / 1000
    if track != stable:
        timeout = min(settings.canary_timeout_ms / 1000, budget / 2)
        up = _call(st, track, path, accept, timeout)
        reason = _failure(up)
        if reason is None:
            return _answer(st, up, track, started)
        # Counted against the track that failed, so its success rate shows it.
        st.metrics.fallbacks.labels(track, reason).inc()
        failed_status = 504 if reason == "timeout" else (up.status or 502)
        st.metrics.observe(COMPONENT, track, up.headers.get("X-Model-Version", "unknown"),
                           failed_status, time.perf_counter() - started)  # fmt: skip
    left = budget - (time.perf_counter() - started) - _MARGIN
    up = _call(st, stable, path, accept, max(left, 0.01))
    if up.error:
        resp = short(503, "no track available", {"Retry-After": "1"})
        return _local(st, resp, "none", started, track=stable)
    return _answer(st, up, stable, started)


def _local(
    st: RouterState, resp: Response, version: str, started: float, track: str = "none"
) -> Response:
    resp.headers["X-Model-Version"] = version
    resp.headers["X-Track"] = track
    st.metrics.observe(COMPONENT, track, version, resp.status_code, time.perf_counter() - started)
    return resp


@bp.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", content_type="text/plain; charset=utf-8")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the stable upstream is ready (the router alone cannot answer)."""
    st = _state()
    up = st.upstreams.get(st.default_track, "/readyz", None, 1.0)
    if up.status == 200:
        return jsonify({"ready": True})
    return short(503, "stable track not ready", {"Retry-After": "1"})


@bp.get("/metrics")
def metrics() -> Response:
    return metrics_response(_state().registry)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return openapi_response("movierec router")
