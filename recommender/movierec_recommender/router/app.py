"""The router's Flask application factory and routes (same HTTP contract as the recommender).

`GET` and `HEAD /recommend/<id>` are answered by `router.hotpath` through the edge."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from movierec_recommender.router.assign import Assigner
from movierec_recommender.router.forward import Upstreams
from movierec_recommender.router.hotpath import HotMetrics, RecommendHandler
from movierec_recommender.router.loopforward import LoopUpstreams
from movierec_recommender.router.ratelimit import RateLimiter
from movierec_recommender.router.settings import RouterSettings
from movierec_recommender.web import edge
from movierec_recommender.web.metrics import (
    LATENCY_BUCKETS,
    ChildCache,
    RequestMetrics,
    metrics_response,
    openapi_response,
)

log = logging.getLogger(__name__)
bp = Blueprint("router", __name__)


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

    def hot(self) -> HotMetrics:
        """The per-request metrics with cached children, for the hot path."""
        return HotMetrics(
            requests=self,
            fallbacks=ChildCache(self.fallbacks),
            upstream_latency=ChildCache(self.upstream_latency),
            rate_limited=self.rate_limited,
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
    handler: RecommendHandler


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
    metrics = RouterMetrics(registry)
    upstreams = Upstreams(settings.tracks, settings.pool_size, settings.connect_timeout_ms / 1000)
    limiter = RateLimiter(
        settings.rate_limit_rps, settings.rate_limit_burst, settings.rate_limit_clients
    )
    handler = RecommendHandler(
        settings,
        default_track=default,
        metrics=metrics.hot(),
        assigner=assigner,
        upstreams=upstreams,
        limiter=limiter,
        loop_upstreams=LoopUpstreams(settings.tracks, settings.connect_timeout_ms / 1000),
    )
    app.extensions["movierec-router"] = RouterState(
        settings=settings,
        default_track=default,
        registry=registry,
        metrics=metrics,
        assigner=assigner,
        upstreams=upstreams,
        limiter=limiter,
        handler=handler,
    )
    app.register_blueprint(bp)
    edge.install(app, handler)
    return app


def _state() -> RouterState:
    state: RouterState = current_app.extensions["movierec-router"]
    return state


@bp.get("/recommend/<user_id>")
def recommend(user_id: str) -> Response:
    """Only reached when the edge did not answer (it takes GET and HEAD)."""
    reply = _state().handler.recommend(user_id, request.environ, request.method == "HEAD")
    return Response(reply.body, status=reply.status, headers=reply.wsgi_headers())


@bp.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", content_type="text/plain; charset=utf-8")


@bp.get("/readyz")
def readyz() -> Response:
    return edge.readyz_response(_state().handler.not_ready(), {})


@bp.get("/metrics")
def metrics() -> Response:
    return metrics_response(_state().registry)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return openapi_response("movierec router")
