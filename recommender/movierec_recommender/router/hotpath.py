"""The router's `GET /recommend/<id>` without Flask: assign, forward, fall back, count.

Every routed answer passes here (through `serving.http.RecommendFastPath`, or the Flask route
for HEAD), so it is kept lean: a prebuilt header list, cached metric children, the per-user
assignment cache, one keep-alive upstream connection per thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from movierec_recommender.router.forward import Upstream, Upstreams
from movierec_recommender.router.ratelimit import RateLimiter
from movierec_recommender.router.settings import RouterSettings
from movierec_recommender.serving import admission
from movierec_recommender.serving.http import Reply, parse_user_id, short_reply
from movierec_recommender.serving.metrics import ChildCache, RequestMetrics

log = logging.getLogger(__name__)
COMPONENT = "router"
_MARGIN = 0.02  # seconds kept for the router's own work inside the budget


class TrackAssigner(Protocol):
    def track(self, user_id: int) -> str: ...


@dataclass
class HotMetrics:
    """The router's per-request metrics with their children cached."""

    requests: RequestMetrics
    fallbacks: ChildCache
    upstream_latency: ChildCache
    rate_limited: Any
    shed: ChildCache


def _failure(up: Upstream) -> str | None:
    """Why an upstream answer does not count as an answer (None: it does)."""
    if up.error:
        return up.error
    if up.status == 503:
        return "unavailable"
    if up.status >= 500:
        return "error"
    return None


class RecommendHandler:
    """The routing decision for one request; never raises for a bad upstream or assignment."""

    def __init__(
        self,
        settings: RouterSettings,
        *,
        default_track: str,
        metrics: HotMetrics,
        assigner: TrackAssigner,
        upstreams: Upstreams,
        limiter: RateLimiter,
    ) -> None:
        self.settings = settings
        self.stable = default_track
        self.metrics = metrics
        self.assigner = assigner
        self.upstreams = upstreams
        self.limiter = limiter
        self.budget = settings.budget_ms / 1000
        self.shed_queue = settings.shed_queue_ms / 1000
        self.canary_timeout = min(settings.canary_timeout_ms / 1000, self.budget / 2)

    def recommend(self, raw_id: str, accept: str | None, client: str) -> Reply:
        started = time.perf_counter()
        waited = admission.queue_wait()
        uid = parse_user_id(raw_id)
        if uid is None:
            msg = "bad user id: expected a non-negative integer"
            return self._local(400, msg, accept, started)
        if waited > self.shed_queue:
            # Already too late to be worth answering: refuse at once, the budget is gone.
            self.metrics.shed.get("queue_wait").inc()
            return self._local(503, "overloaded", accept, started, retry_after="1")
        if self.limiter.rate > 0:
            allowed, retry_after = self.limiter.allow(client)
            if not allowed:
                self.metrics.rate_limited.inc()
                return self._local(
                    429, "too many requests", accept, started, retry_after=str(retry_after)
                )
        try:
            track = self.assigner.track(uid)
        except Exception as exc:  # assignment must never fail an answer
            log.warning("track assignment failed, using %s: %s", self.stable, exc)
            track = self.stable
        stable = self.stable
        if track not in self.upstreams:
            track = stable
        path = f"/recommend/{uid}"
        if track != stable:
            up = self._call(track, path, accept, self.canary_timeout)
            reason = _failure(up)
            if reason is None:
                return self._answer(up, track, started)
            # Counted against the track that failed, so its success rate shows it.
            self.metrics.fallbacks.get(track, reason).inc()
            failed_status = 504 if reason == "timeout" else (up.status or 502)
            version = up.headers.get("X-Model-Version", "unknown")
            self.metrics.requests.observe(
                COMPONENT, track, version, failed_status, time.perf_counter() - started
            )
        left = self.budget - waited - (time.perf_counter() - started) - _MARGIN
        up = self._call(stable, path, accept, max(left, 0.01))
        if up.error:
            return self._local(
                503, "no track available", accept, started, retry_after="1", track=stable
            )
        return self._answer(up, stable, started)

    def _call(self, track: str, path: str, accept: str | None, timeout: float) -> Upstream:
        t0 = time.perf_counter()
        up = self.upstreams.get(track, path, accept, timeout)
        outcome = up.error or str(up.status)
        self.metrics.upstream_latency.get(track, outcome).observe(time.perf_counter() - t0)
        return up

    def _answer(self, up: Upstream, track: str, started: float) -> Reply:
        headers = list(up.headers.items())
        answered_by = up.headers.get("X-Track")
        if answered_by is None:
            answered_by = track
            headers.append(("X-Track", track))
        version = up.headers.get("X-Model-Version")
        if version is None:
            version = "none"
            headers.append(("X-Model-Version", version))
        self.metrics.requests.observe(
            COMPONENT, answered_by, version, up.status, time.perf_counter() - started
        )
        return Reply(up.status, up.body, headers)

    def _local(
        self,
        status: int,
        message: str,
        accept: str | None,
        started: float,
        *,
        retry_after: str | None = None,
        track: str = "none",
    ) -> Reply:
        """A short error answer from the router itself (JSON when the client asked for it)."""
        headers = [("X-Model-Version", "none"), ("X-Track", track)]
        if retry_after is not None:
            headers.append(("Retry-After", retry_after))
        self.metrics.requests.observe(
            COMPONENT, track, "none", status, time.perf_counter() - started
        )
        return short_reply(status, message, accept, headers)

    def wsgi_answer(self, raw_id: str, environ: dict[str, Any]) -> Reply:
        """`recommend` for `serving.http.RecommendFastPath`."""
        client = client_key(environ, self.settings.trust_forwarded_for)
        return self.recommend(raw_id, environ.get("HTTP_ACCEPT"), client)


def client_key(environ: dict[str, Any], trust_forwarded_for: bool) -> str:
    """Who the rate limit counts: the peer address, or the first X-Forwarded-For behind a proxy."""
    if trust_forwarded_for:
        first = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")[0].strip()
        if first:
            return str(first[:64])
    return str(environ.get("REMOTE_ADDR") or "?")
