"""Simulated users against a live HTTP recommender: better lists earn measurably more engagement."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pytest
from flask import Flask, Response
from movierec_ingestor.events import RateEvent, RecommendationEvent, WatchEvent, parse_line
from movierec_simulator.client import run_sessions
from movierec_simulator.sinks import MemorySink
from movierec_simulator.world import World
from werkzeug.serving import make_server

from harness.ports import free_port

START = datetime(2025, 10, 3)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(300, 250, seed=21)


def _recommender(world: World) -> Flask:
    """Serves `/good/recommend/<u>` (top true ratings), `/random/...` and a failing `/broken/...`."""
    app = Flask(__name__)
    rng = np.random.default_rng(0)

    @app.get("/good/recommend/<int:user_id>")
    def good(user_id: int) -> Response:
        u = world.user_index(user_id)
        assert u is not None
        top = np.argsort(-world.true_rating_rows(np.array([u]))[0])[:20]
        return _answer([world.movie_ids[i] for i in top], "good")

    @app.get("/random/recommend/<int:user_id>")
    def random(user_id: int) -> Response:
        picks = rng.choice(world.n_movies, size=20, replace=False)
        return _answer([world.movie_ids[i] for i in picks], "random")

    @app.get("/broken/recommend/<int:user_id>")
    def broken(user_id: int) -> Response:
        return Response("model not loaded", status=500)

    return app


def _answer(items: list[str], track: str) -> Response:
    resp = Response(",".join(items), mimetype="text/plain")
    resp.headers["X-Track"] = track
    resp.headers["X-Model-Version"] = "3" if track == "good" else "1"
    return resp


@pytest.fixture(scope="module")
def base_url(world: World) -> Iterator[str]:
    server = make_server("127.0.0.1", free_port(), _recommender(world), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def test_good_recommendations_earn_clearly_more_engagement(world: World, base_url: str) -> None:
    users = world.user_ids[:150].tolist()
    runs = {}
    for track in ("good", "random"):
        sink = MemorySink()
        runs[track] = (
            run_sessions(
                world, f"{base_url}/{track}", users, 150, sink, seed=9, deadline_s=120, start=START
            ),
            sink,
        )
    good, bad = runs["good"][0], runs["random"][0]
    assert good.requests == bad.requests == 150 and good.errors == bad.errors == 0
    assert good.watched > 1.4 * bad.watched
    assert good.minutes > 1.5 * bad.minutes
    assert good.rated > bad.rated
    assert {o.track for o in good.outcomes} == {"good"}
    assert {o.model_version for o in good.outcomes} == {"3"}
    assert good.by_track()["good"]["watch_rate"] > bad.by_track()["random"]["watch_rate"]
    quality = [o.mean_true_rating for o in good.outcomes if o.mean_true_rating is not None]
    random_quality = [o.mean_true_rating for o in bad.outcomes if o.mean_true_rating is not None]
    assert np.mean(quality) > np.mean(random_quality) + 1.0


def test_lines_are_valid_and_continue_after_the_start(world: World, base_url: str) -> None:
    sink = MemorySink()
    summary = run_sessions(
        world,
        f"{base_url}/good",
        [int(world.user_ids[0]), int(world.user_ids[1])],
        20,
        sink,
        seed=1,
        deadline_s=60,
        start=START,
    )
    events = [parse_line(line) for line in sink.lines]
    assert all(e.time >= START for e in events)
    recs = [e for e in events if isinstance(e, RecommendationEvent)]
    assert len(recs) == 20 and all(r.status == 200 and len(r.results) == 20 for r in recs)
    assert all(r.server == base_url.removeprefix("http://") for r in recs)
    latencies = [r.latency_ms for r in recs]
    assert latencies == summary.latencies_ms
    watches = [e for e in events if isinstance(e, WatchEvent)]
    rates = [e for e in events if isinstance(e, RateEvent)]
    assert len(watches) == summary.minutes and len(rates) == summary.rated
    # Each user's lines are in time order: a user watches one thing at a time.
    for user in {e.user_id for e in events}:
        times = [e.time for e in events if e.user_id == user]
        assert times == sorted(times)
    assert summary.end is not None and summary.end >= max(e.time for e in events)
    assert set(sink.keys) <= {int(world.user_ids[0]), int(world.user_ids[1])}


def test_a_live_clock_stamps_no_request_before_it(world: World, base_url: str) -> None:
    """Live traffic is stamped by the clock the served answers are, not by simulated time."""
    ticks = iter(range(10_000))
    now = datetime(2026, 6, 1)

    def live_clock() -> datetime:
        return now.replace(second=next(ticks) % 60)  # a clock that moves between requests

    sink = MemorySink()
    summary = run_sessions(
        world, f"{base_url}/good", [int(u) for u in world.user_ids[:5]], 12, sink,
        seed=4, deadline_s=60, start=START, live_clock=live_clock,
    )  # fmt: skip
    requests_at = [o.time for o in summary.outcomes]
    assert len(requests_at) == 12 and all(t >= now for t in requests_at)
    events = [parse_line(line) for line in sink.lines]
    assert all(e.time >= now for e in events)  # watches and ratings follow their request


def test_failures_are_logged_as_error_lines(world: World, base_url: str) -> None:
    sink = MemorySink()
    summary = run_sessions(
        world, f"{base_url}/broken", [1, 2], 5, sink, seed=1, deadline_s=30, start=START
    )
    assert summary.errors == 5 and summary.watched == 0
    events = [parse_line(line) for line in sink.lines]
    assert all(
        isinstance(e, RecommendationEvent) and e.status == 500 and e.error == "model not loaded"
        for e in events
    )

    gone = f"http://127.0.0.1:{free_port()}"
    sink = MemorySink()
    summary = run_sessions(
        world, gone, [1], 3, sink, seed=1, deadline_s=30, start=START, timeout_s=1
    )
    assert summary.errors == 3
    # No HTTP response: status 0 and the client's exception text, as the course logs it.
    events = [parse_line(line) for line in sink.lines]
    assert all(getattr(e, "status", None) == 0 for e in events)
    assert all("ConnectionError" in (getattr(e, "error", "") or "") for e in events)


def test_assign_routes_users_and_the_deadline_bounds_the_run(world: World, base_url: str) -> None:
    sink = MemorySink()
    summary = run_sessions(
        world,
        "http://127.0.0.1:9",
        [1, 2, 3, 4],
        40,
        sink,
        seed=3,
        deadline_s=60,
        start=START,
        assign=lambda u: f"{base_url}/good" if u % 2 else f"{base_url}/random",
    )
    for o in summary.outcomes:
        assert o.track == ("good" if o.user_id % 2 else "random")
    stopped = run_sessions(
        world, f"{base_url}/good", [1], 1000, MemorySink(), seed=3, deadline_s=0.0, start=START
    )
    assert stopped.requests == 0
