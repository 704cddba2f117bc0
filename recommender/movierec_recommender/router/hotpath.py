"""The router's `/recommend/<id>` (`web.edge.Handler`): assign, forward, fall back, count.

Every routed answer passes here, so it is kept lean: cached metric children, the per-user
assignment cache. Under the edge worker the upstream calls are made in its event loop
(`recommend_async`, `router.loopforward`); `recommend` is the same decision with blocking calls
on one keep-alive connection per thread (Flask's route, the tests' client, TLS upstreams).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from movierec_recommender.router.forward import Upstream, Upstreams
from movierec_recommender.router.loopforward import LoopUpstreams
from movierec_recommender.router.ratelimit import RateLimiter
from movierec_recommender.router.settings import RouterSettings
from movierec_recommender.web.contract import parse_user_id, wants_json
from movierec_recommender.web.loop import Loop
from movierec_recommender.web.metrics import ChildCache, RequestMetrics
from movierec_recommender.web.reply import NONE, Reply, short_reply
from movierec_recommender.web.worker import QUEUE_WAIT_KEY

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


def _failure(up: Upstream) -> str | None:
    """Why an upstream answer does not count as an answer (None: it does)."""
    if up.error:
        return up.error
    if up.status == 503:
        return "unavailable"
    if up.status >= 500:
        return "error"
    return None


def client_key(environ: dict[str, Any], trusted_hops: int) -> str:
    """Who the rate limit counts. Behind `trusted_hops` proxies that each append the address
    they saw to X-Forwarded-For, the entry `trusted_hops` from the right is the client as the
    outermost trusted proxy saw it; everything left of it was written by the client and is
    ignored. With fewer entries than that (the request skipped a proxy), the peer address."""
    peer = str(environ.get("REMOTE_ADDR") or "?")
    if trusted_hops <= 0:
        return peer
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
    entries = [e.strip() for e in forwarded.split(",")] if forwarded else []
    if len(entries) < trusted_hops:
        return peer
    return entries[-trusted_hops][:64] or peer


@dataclass(frozen=True, slots=True)
class _Route:
    """A request on its way to a track."""

    track: str
    path: str
    accept: str | None
    head: bool
    started: float
    waited: float


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
        loop_upstreams: LoopUpstreams | None = None,
    ) -> None:
        self.settings = settings
        self.stable = default_track
        self.metrics = metrics
        self.assigner = assigner
        self.upstreams = upstreams
        self.limiter = limiter
        self.loop_upstreams = loop_upstreams
        self.loop_slots = settings.pool_size
        self.hops = settings.trusted_proxy_hops
        self.budget = settings.budget_ms / 1000
        self.canary_timeout = min(settings.canary_timeout_ms / 1000, self.budget / 2)

    def recommend(self, raw_id: str, environ: dict[str, Any], head: bool) -> Reply:
        """The answer, made with blocking upstream calls (a thread's path)."""
        route = self._route(raw_id, environ, head)
        if isinstance(route, Reply):
            return route
        if route.track != self.stable:
            t0 = time.perf_counter()
            up = self.upstreams.get(
                route.track, route.path, route.accept, self.canary_timeout, head=head
            )
            if self._track_answered(route.track, up, t0, route):
                return self._answer(up, route.track, route.started)
        t0 = time.perf_counter()
        up = self.upstreams.get(self.stable, route.path, route.accept, self._left(route), head=head)
        return self._stable_answer(up, t0, route)

    def recommend_async(
        self, raw_id: str, environ: dict[str, Any], head: bool, loop: Loop,
        done: Callable[[Reply], None],
    ) -> bool:  # fmt: skip
        """The same answer, made in the worker's event loop: `done(reply)` is called once, in
        the loop. False (nothing done) when the loop cannot call the upstreams yet."""
        if self.loop_upstreams is None or not self.loop_upstreams.ready():
            return False
        route = self._route(raw_id, environ, head)
        if isinstance(route, Reply):
            done(route)
            return True
        calls = self.loop_upstreams

        def stable() -> None:
            t0 = time.perf_counter()
            calls.call(
                loop, self.stable, route.path, accept=route.accept, timeout=self._left(route),
                head=head, done=lambda up: done(self._stable_answer(up, t0, route)),
            )  # fmt: skip

        if route.track == self.stable:
            stable()
            return True
        t0 = time.perf_counter()

        def after_track(up: Upstream) -> None:
            if self._track_answered(route.track, up, t0, route):
                done(self._answer(up, route.track, route.started))
            else:
                stable()

        calls.call(
            loop, route.track, route.path, accept=route.accept, timeout=self.canary_timeout,
            head=head, done=after_track,
        )  # fmt: skip
        return True

    def _route(self, raw_id: str, environ: dict[str, Any], head: bool) -> Reply | _Route:
        """Where the request goes, or the router's own answer (bad id, rate limited)."""
        started = time.perf_counter()
        accept = environ.get("HTTP_ACCEPT")
        uid = parse_user_id(raw_id)
        if uid is None:
            msg = "bad user id: expected a non-negative integer"
            return self._local(400, msg, accept, started)
        if self.limiter.rate > 0:
            allowed, retry_after = self.limiter.allow(client_key(environ, self.hops))
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
        if track not in self.upstreams:
            track = self.stable
        waited = environ.get(QUEUE_WAIT_KEY, 0.0)
        return _Route(track, f"/recommend/{uid}", accept, head, started, waited)

    def _left(self, route: _Route) -> float:
        """What stable gets: the budget less the queueing and the time spent so far."""
        spent = route.waited + (time.perf_counter() - route.started)
        return max(self.budget - spent - _MARGIN, 0.01)

    def _track_answered(self, track: str, up: Upstream, t0: float, route: _Route) -> bool:
        """Count a non-stable track's call; False (and counted against it) when it failed."""
        self._observe_call(track, up, t0)
        reason = _failure(up)
        if reason is None:
            return True
        # Counted against the track that failed, so its success rate shows it.
        self.metrics.fallbacks.get(track, reason).inc()
        failed_status = 504 if reason == "timeout" else (up.status or 502)
        version = up.headers.get("X-Model-Version", "unknown")
        self.metrics.requests.observe(
            COMPONENT, track, version, failed_status, time.perf_counter() - route.started
        )
        return False

    def _stable_answer(self, up: Upstream, t0: float, route: _Route) -> Reply:
        self._observe_call(self.stable, up, t0)
        if up.error:
            return self._local(
                503, "no track available", route.accept, route.started, retry_after="1",
                track=self.stable,
            )  # fmt: skip
        return self._answer(up, self.stable, route.started)

    def _observe_call(self, track: str, up: Upstream, t0: float) -> None:
        outcome = up.error or str(up.status)
        self.metrics.upstream_latency.get(track, outcome).observe(time.perf_counter() - t0)

    def _answer(self, up: Upstream, track: str, started: float) -> Reply:
        """The upstream's answer passed on, with the track that really answered."""
        headers = up.headers
        answered_by = headers.get("X-Track") or track
        version = headers.get("X-Model-Version") or NONE
        kept = [(k, v) for k, v in headers.items() if k not in ("X-Track", "X-Model-Version")]
        self.metrics.requests.observe(
            COMPONENT, answered_by, version, up.status, time.perf_counter() - started
        )
        return Reply(up.status, up.body, kept, version, answered_by, length=up.length)

    def _local(
        self,
        status: int,
        message: str,
        accept: str | None,
        started: float,
        *,
        retry_after: str | None = None,
        track: str = NONE,
    ) -> Reply:
        """A short error answer from the router itself (JSON when the client asked for it)."""
        self.metrics.requests.observe(COMPONENT, track, NONE, status, time.perf_counter() - started)
        return short_reply(
            status, message, wants_json(accept), retry_after=retry_after, track=track
        )

    def identity(self) -> tuple[str, str]:
        return NONE, NONE

    def not_ready(self) -> str | None:
        """Ready when the stable upstream is ready (the router alone cannot answer)."""
        up = self.upstreams.get(self.stable, "/readyz", None, 1.0)
        return None if up.status == 200 else "stable_not_ready"

    def close(self, timeout: float) -> None:
        self.upstreams.close()
        if self.loop_upstreams is not None:
            self.loop_upstreams.close()
        close = getattr(self.assigner, "close", None)
        if close is not None:
            close()
