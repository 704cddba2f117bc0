"""Simulated users as live clients: ask the service for recommendations, then watch and rate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
from movierec_ingestor.events import NO_RESPONSE, SLUG_RE, format_fields

from movierec_simulator.behaviour import (
    accept_probability,
    rate_probability,
    watch_fraction,
    watched_minutes,
)
from movierec_simulator.sinks import Sink
from movierec_simulator.world import World, sample_ratings

log = logging.getLogger(__name__)

TOP_K_QUALITY = 10  # items whose true rating is averaged into `mean_true_rating`


@dataclass(frozen=True)
class RequestOutcome:
    """One recommendation request and what the user did with the answer."""

    user_id: int
    time: datetime
    status: int  # HTTP status; 0 when the service gave no response (refused, timed out)
    latency_ms: int
    items: tuple[str, ...]
    track: str | None
    model_version: str | None
    watched: tuple[str, ...] = ()
    minutes: int = 0
    ratings: tuple[tuple[str, int], ...] = ()
    mean_true_rating: float | None = None  # of the top items the world knows: list quality
    error: str | None = None


@dataclass
class ClientSummary:
    """Totals of a client run, plus every request's outcome for attribution to tracks."""

    outcomes: list[RequestOutcome] = field(default_factory=list)
    end: datetime | None = None

    @property
    def requests(self) -> int:
        return len(self.outcomes)

    @property
    def errors(self) -> int:
        return sum(o.status != 200 for o in self.outcomes)

    @property
    def latencies_ms(self) -> list[int]:
        return [o.latency_ms for o in self.outcomes]

    @property
    def watched(self) -> int:
        return sum(len(o.watched) for o in self.outcomes)

    @property
    def rated(self) -> int:
        return sum(len(o.ratings) for o in self.outcomes)

    @property
    def minutes(self) -> int:
        return sum(o.minutes for o in self.outcomes)

    def by_track(self) -> dict[str, dict[str, float]]:
        """Requests, errors, watch rate, minutes and ratings per answering track."""
        groups: dict[str, list[RequestOutcome]] = {}
        for o in self.outcomes:
            groups.setdefault(o.track or "unknown", []).append(o)
        return {track: _totals(items) for track, items in sorted(groups.items())}

    def to_dict(self) -> dict[str, Any]:
        lat = np.array(self.latencies_ms or [0])
        return {
            **_totals(self.outcomes),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "by_track": self.by_track(),
            "end": self.end.isoformat() if self.end else None,
        }


def _totals(outcomes: Sequence[RequestOutcome]) -> dict[str, float]:
    n = len(outcomes)
    watched = sum(len(o.watched) for o in outcomes)
    return {
        "requests": n,
        "errors": sum(o.status != 200 for o in outcomes),
        "watched": watched,
        "watch_rate": watched / n if n else 0.0,
        "minutes": sum(o.minutes for o in outcomes),
        "rated": sum(len(o.ratings) for o in outcomes),
    }


# The positional order is the simulator's published client contract (demo and tests call it so).
def run_sessions(  # noqa: PLR0917
    world: World,
    base_url: str,
    user_ids: Sequence[int],
    n_requests: int,
    sink: Sink,
    seed: int = 0,
    deadline_s: float = 60.0,
    assign: Callable[[int], str] | None = None,
    *,
    start: datetime,
    timeout_s: float = 2.0,
    think_time_s: float = 5.0,
    max_minutes_per_view: int = 30,
    http: requests.Session | None = None,
    live_clock: Callable[[], datetime] | None = None,
) -> ClientSummary:
    """Play `n_requests` recommendation requests by users drawn from `user_ids`, within
    `deadline_s` of wall time, writing every line (request, minutes, ratings) to `sink`.

    `assign(user_id)` may return the base URL that serves that user (a client-side split);
    otherwise every request goes to `base_url`. Simulated time starts at `start` (continue after
    the history) and a user's next request waits until they finished watching. With
    `live_clock` (e.g. the wall clock) no request is stamped earlier than it: the lines then
    line up with what the service itself stamped (provenance), which the online evaluator joins.
    """
    if n_requests < 0 or not user_ids:
        raise ValueError("n_requests must be >= 0 and user_ids non-empty")
    rng = np.random.default_rng(np.random.SeedSequence([seed, world.seed, 0xC11E]))
    users = np.asarray(user_ids, dtype=np.int64)
    own_http = http is None
    session = http or requests.Session()
    summary = ClientSummary()
    clock = start
    busy_until: dict[int, datetime] = {}
    seen: dict[int, set[str]] = {}
    stop_at = time.monotonic() + deadline_s
    try:
        for _ in range(n_requests):
            if time.monotonic() >= stop_at:
                log.info("client deadline reached after %d requests", summary.requests)
                break
            user = int(users[rng.integers(users.size)])
            clock += timedelta(seconds=float(rng.exponential(think_time_s)))
            if live_clock is not None:
                clock = max(clock, live_clock())
            when = max(clock, busy_until.get(user, clock))
            url = (assign(user) if assign else base_url).rstrip("/")
            outcome = _request(session, url, user, when, timeout_s=timeout_s, sink=sink)
            outcome, done = _react(
                world,
                outcome,
                sink,
                rng,
                seen=seen.setdefault(user, set()),
                max_minutes=max_minutes_per_view,
            )
            busy_until[user] = done + timedelta(seconds=1)
            summary.outcomes.append(outcome)
    finally:
        sink.flush()
        if own_http:
            session.close()
    summary.end = max([clock, *busy_until.values()])
    return summary


def _request(
    session: requests.Session, base: str, user: int, when: datetime, *, timeout_s: float, sink: Sink
) -> RequestOutcome:
    server = urlsplit(base).netloc or base
    t0 = time.perf_counter()
    try:
        resp = session.get(f"{base}/recommend/{user}", timeout=timeout_s)
    except requests.RequestException as exc:
        # No HTTP response (refused, reset, timed out): the course's line for it is status 0
        # with the client's exception text, which the success rate counts as a failure.
        latency = round((time.perf_counter() - t0) * 1000)
        return _log_failure(
            sink,
            user,
            when,
            server=server,
            status=NO_RESPONSE,
            error=_exception_text(exc),
            latency=latency,
        )
    latency = round((time.perf_counter() - t0) * 1000)
    track = resp.headers.get("X-Track")
    version = resp.headers.get("X-Model-Version")
    if resp.status_code != 200:
        text = " ".join(resp.text.split())[:200] or resp.reason or "error"
        outcome = _log_failure(
            sink, user, when, server=server, status=resp.status_code, error=text, latency=latency
        )
        return replace(outcome, track=track, model_version=version)
    items = tuple(i.strip() for i in resp.text.strip().split(",") if i.strip())
    fields = (when, user, server, 200, items, latency, None)
    sink.write(format_fields("recommendation", fields), user)
    return RequestOutcome(user, when, 200, latency, items, track, version)


def _exception_text(exc: BaseException) -> str:
    """The exception as one line of bounded, printable text (it lands in the log line)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _log_failure(
    sink: Sink, user: int, when: datetime, *, server: str, status: int, error: str, latency: int
) -> RequestOutcome:
    fields = (when, user, server, status, (), latency, error)
    sink.write(format_fields("recommendation", fields), user)
    return RequestOutcome(user, when, status, latency, (), None, None, error=error)


def _react(
    world: World,
    outcome: RequestOutcome,
    sink: Sink,
    rng: np.random.Generator,
    *,
    seen: set[str],
    max_minutes: int,
) -> tuple[RequestOutcome, datetime]:
    """The user scans the list top-down and plays the first movie that appeals (by true taste).

    Returns the outcome and the time of the user's last line (they are busy until then).
    """
    u = world.user_index(outcome.user_id)
    if u is None or not outcome.items:
        return outcome, outcome.time
    known = [(pos, m, world.movie_index(m)) for pos, m in enumerate(outcome.items)]
    known_idx = np.array(
        [i for _, m, i in known if i is not None and SLUG_RE.match(m)], dtype=np.int64
    )
    quality = (
        float(np.mean(world.true_rating(u, known_idx[:TOP_K_QUALITY]))) if known_idx.size else None
    )
    for pos, movie_id, idx in known:
        if idx is None or movie_id in seen:
            continue
        true = world.true_rating(u, idx)
        if rng.random() >= float(accept_probability(true, np.asarray(pos))):
            continue
        frac = watch_fraction(np.asarray(true), rng)
        minutes = int(min(watched_minutes(frac, world.runtimes[idx]), max_minutes))
        t = outcome.time + timedelta(seconds=float(rng.uniform(3, 20)))
        for minute in range(minutes):
            sink.write(
                format_fields(
                    "watch", (t + timedelta(minutes=minute), outcome.user_id, movie_id, minute)
                ),
                outcome.user_id,
            )
        ratings: tuple[tuple[str, int], ...] = ()
        done = t + timedelta(minutes=minutes - 1)
        if rng.random() < float(rate_probability(frac)):
            stars = int(sample_ratings(np.asarray(true), rng))
            when = t + timedelta(minutes=minutes, seconds=float(rng.uniform(5, 60)))
            sink.write(
                format_fields("rate", (when, outcome.user_id, movie_id, stars)), outcome.user_id
            )
            ratings = ((movie_id, stars),)
            done = when
        seen.add(movie_id)
        played = replace(
            outcome,
            watched=(movie_id,),
            minutes=minutes,
            ratings=ratings,
            mean_true_rating=quality,
        )
        return played, done
    return replace(outcome, mean_true_rating=quality), outcome.time
