"""Router: LaunchDarkly file-data assignment (split, stickiness, kill switch) and forwarding."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from movierec_recommender.router.app import create_app
from movierec_recommender.router.assign import Assigner
from movierec_recommender.router.flagdata import build_flags, write_flag_file
from movierec_recommender.router.hotpath import client_key
from movierec_recommender.router.ratelimit import RateLimiter
from movierec_recommender.router.settings import RouterSettings
from movierec_recommender.web.worker import QUEUE_WAIT_KEY
from werkzeug.serving import BaseWSGIServer, make_server

USERS = range(20_000)


def _tracks(assigner: Assigner, users: range = USERS) -> dict[int, str]:
    return {u: assigner.track(u) for u in users}


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    return write_flag_file(tmp_path / "flags.json", {"stable": 90, "canary": 10})


@pytest.fixture
def assigner(flag_file: Path) -> Iterator[Assigner]:
    a = Assigner(flags_file=str(flag_file), poll_seconds=0.1)
    yield a
    a.close()


def test_flag_file_format_is_the_contract() -> None:
    flags = build_flags({"canary": 25, "stable": 75})["flags"]
    track = flags["movierec-track"]
    assert track["variations"] == ["stable", "canary"]
    assert track["offVariation"] == 0
    assert track["on"] is True
    rollout = track["fallthrough"]["rollout"]["variations"]
    assert [v["weight"] for v in rollout] == [75_000, 25_000]
    assert sum(v["weight"] for v in rollout) == 100_000
    kill = flags["movierec-kill-switch"]
    assert kill["variations"] == [False, True]


def test_split_follows_the_weights(assigner: Assigner) -> None:
    tracks = _tracks(assigner)
    share = sum(t == "canary" for t in tracks.values()) / len(tracks)
    assert 0.09 < share < 0.11


def test_assignment_is_deterministic_across_clients(assigner: Assigner, flag_file: Path) -> None:
    other = Assigner(flags_file=str(flag_file))
    try:
        assert _tracks(assigner, range(2000)) == _tracks(other, range(2000))
    finally:
        other.close()


def _wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_canary_users_stay_on_canary_as_the_weight_grows(
    assigner: Assigner, flag_file: Path
) -> None:
    previous = {u for u, t in _tracks(assigner).items() if t == "canary"}
    for weight in (25, 50, 100):
        write_flag_file(flag_file, {"stable": 100 - weight, "canary": weight})
        _wait_for(lambda w=weight: sum(assigner.track(u) == "canary" for u in range(500)) > 4 * w)
        now = {u for u, t in _tracks(assigner).items() if t == "canary"}
        assert previous <= now, f"{len(previous - now)} users left the canary at {weight}%"
        assert abs(len(now) / len(USERS) - weight / 100) < 0.015
        previous = now


def test_kill_switch_sends_everyone_to_stable(assigner: Assigner, flag_file: Path) -> None:
    assert "canary" in set(_tracks(assigner, range(500)).values())
    write_flag_file(flag_file, {"stable": 50, "canary": 50}, kill_switch=True)
    _wait_for(lambda: set(_tracks(assigner, range(500)).values()) == {"stable"})


def test_missing_flag_file_means_stable(tmp_path: Path) -> None:
    a = Assigner(flags_file=str(tmp_path / "absent.json"), start_wait=0.5)
    try:
        assert set(_tracks(a, range(200)).values()) == {"stable"}
    finally:
        a.close()


def test_token_bucket_refuses_past_the_burst_and_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3.0, clock=lambda: now[0])
    assert [limiter.allow("a")[0] for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("a") == (False, 1)
    assert limiter.allow("b")[0]  # other clients are not affected
    now[0] += 0.5
    assert limiter.allow("a")[0]


# -- forwarding against real HTTP upstreams ------------------------------------------------------


class Upstream:
    """A tiny real HTTP server standing in for one recommender track."""

    def __init__(self, track: str, version: str) -> None:
        self.mode = "ok"  # ok | error | slow | down
        self.hits = 0
        app = Flask(track)

        @app.get("/recommend/<int:uid>")
        def rec(uid: int) -> Response:
            self.hits += 1
            if self.mode == "error":
                return Response("boom", status=500)
            if self.mode == "slow":
                time.sleep(1.0)
            resp = Response(f"{track}-a,{track}-b", content_type="text/plain")
            resp.headers["X-Track"] = track
            resp.headers["X-Model-Version"] = version
            return resp

        @app.get("/readyz")
        def ready() -> str:
            return "ok"

        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstreams() -> Iterator[dict[str, Upstream]]:
    ups = {"stable": Upstream("stable", "3"), "canary": Upstream("canary", "4")}
    yield ups
    for up in ups.values():
        up.close()


class Fixed:
    """Assignment by a fixed rule, to test forwarding apart from LaunchDarkly."""

    def __init__(self, rule: Callable[[int], str]) -> None:
        self.track = rule


def _router(ups: dict[str, Upstream], rule: Callable[[int], str], **kw: object) -> FlaskClient:
    settings = RouterSettings(
        tracks={name: up.url for name, up in ups.items()},
        canary_timeout_ms=200,
        rate_limit_rps=0,
        **kw,
    )
    return create_app(settings, assigner=Fixed(rule)).test_client()


def test_router_forwards_to_the_assigned_track_with_its_headers(
    upstreams: dict[str, Upstream],
) -> None:
    client = _router(upstreams, lambda u: "canary" if u % 2 else "stable")
    resp = client.get("/recommend/1")
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == "canary-a,canary-b"
    assert resp.headers["X-Track"] == "canary"
    assert resp.headers["X-Model-Version"] == "4"
    resp = client.get("/recommend/2")
    assert resp.headers["X-Track"] == "stable"
    assert resp.headers["X-Model-Version"] == "3"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("mode", "reason"), [("error", "error"), ("slow", "timeout")])
def test_failing_canary_falls_back_to_stable_and_counts_against_canary(
    upstreams: dict[str, Upstream], mode: str, reason: str
) -> None:
    upstreams["canary"].mode = mode
    client = _router(upstreams, lambda u: "canary")
    started = time.monotonic()
    resp = client.get("/recommend/7")
    assert time.monotonic() - started < 0.8
    assert resp.status_code == 200
    assert resp.headers["X-Track"] == "stable"
    assert resp.get_data(as_text=True) == "stable-a,stable-b"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'movierec_router_fallbacks_total{{reason="{reason}",track="canary"}} 1.0' in metrics
    failed = "504" if mode == "slow" else "500"
    assert f'component="router",model_version="unknown",status="{failed}",track="canary"' in metrics
    assert 'component="router",model_version="3",status="200",track="stable"} 1.0' in metrics


def test_canary_down_falls_back_to_stable(upstreams: dict[str, Upstream]) -> None:
    upstreams["canary"].close()
    client = _router(upstreams, lambda u: "canary")
    resp = client.get("/recommend/7")
    assert resp.status_code == 200
    assert resp.headers["X-Track"] == "stable"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'movierec_router_fallbacks_total{reason="connect",track="canary"} 1.0' in metrics


def test_stable_down_is_a_fast_503_not_a_stack_trace(upstreams: dict[str, Upstream]) -> None:
    upstreams["stable"].close()
    client = _router(upstreams, lambda u: "stable")
    resp = client.get("/recommend/1")
    assert resp.status_code == 503
    assert "Retry-After" in resp.headers
    assert client.get("/readyz").status_code == 503


@pytest.mark.parametrize("bad", ["x", "-3", "1 ", "0x10", "12345678901234567890"])
def test_router_rejects_malformed_ids_without_calling_upstream(
    upstreams: dict[str, Upstream], bad: str
) -> None:
    client = _router(upstreams, lambda u: "stable")
    assert client.get(f"/recommend/{bad}").status_code == 400
    assert upstreams["stable"].hits == 0


def test_rate_limit_answers_429_with_retry_after(upstreams: dict[str, Upstream]) -> None:
    settings = RouterSettings(
        tracks={"stable": upstreams["stable"].url}, rate_limit_rps=1, rate_limit_burst=3
    )
    client = create_app(settings, assigner=Fixed(lambda u: "stable")).test_client()
    statuses = [client.get("/recommend/1").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    resp = client.get("/recommend/1")
    assert int(resp.headers["Retry-After"]) >= 1


def test_router_with_launchdarkly_file_routes_by_flag(
    upstreams: dict[str, Upstream], flag_file: Path
) -> None:
    settings = RouterSettings(
        tracks={n: u.url for n, u in upstreams.items()},
        flags_file=str(flag_file),
        rate_limit_rps=0,
    )
    app = create_app(settings)
    client = app.test_client()
    seen = {client.get(f"/recommend/{u}").headers["X-Track"] for u in range(300)}
    assert seen == {"stable", "canary"}
    write_flag_file(flag_file, {"stable": 100})
    _wait_for(
        lambda: {client.get(f"/recommend/{u}").headers["X-Track"] for u in range(100)} == {"stable"}
    )
    app.extensions["movierec-router"].assigner.close()


def test_experiment_without_stable_falls_back_to_the_first_track(
    upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    flags = write_flag_file(tmp_path / "ab.json", {"user-user": 50_000, "item-item": 50_000})
    track_flag = json.loads(flags.read_text())["flags"]["movierec-track"]
    assert track_flag["variations"] == ["stable", "user-user", "item-item"]
    assert track_flag["fallthrough"]["rollout"]["variations"][0]["weight"] == 0
    ups = {"user-user": upstreams["stable"], "item-item": upstreams["canary"]}
    settings = RouterSettings(
        tracks={n: u.url for n, u in ups.items()}, flags_file=str(flags), rate_limit_rps=0
    )
    app = create_app(settings)
    client = app.test_client()
    seen = {client.get(f"/recommend/{u}").headers["X-Track"] for u in range(200)}
    assert seen == {"stable", "canary"}  # the two upstreams, named by what they report
    upstreams["canary"].mode = "error"  # item-item fails: user-user (listed first) answers
    item_item_user = next(
        u for u in range(200) if app.extensions["movierec-router"].assigner.track(u) == "item-item"
    )
    assert client.get(f"/recommend/{item_item_user}").headers["X-Track"] == "stable"
    app.extensions["movierec-router"].assigner.close()
    with pytest.raises(ValueError, match="no track"):
        create_app(RouterSettings(tracks={}), assigner=Fixed(str))


def test_tracks_come_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_ROUTER_TRACKS", json.dumps({"stable": "http://127.0.0.1:9/"}))
    assert RouterSettings().tracks == {"stable": "http://127.0.0.1:9"}


# -- the assignment cache and the WSGI hot path ---------------------------------------------------


def test_assignment_cache_serves_repeats_and_drops_on_flag_change(
    assigner: Assigner, flag_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluated: list[int] = []
    real = assigner._evaluate

    def counting(user_id: int) -> str:
        evaluated.append(user_id)
        return real(user_id)

    monkeypatch.setattr(assigner, "_evaluate", counting)
    before = _tracks(assigner, range(300))
    assert _tracks(assigner, range(300)) == before
    assert len(evaluated) == 300, "repeat lookups must come from the cache, not the SDK"
    stable_users = [u for u, t in before.items() if t == "stable"]
    write_flag_file(flag_file, {"stable": 0, "canary": 100})
    # the SDK reports the change: cached stable answers must not survive it
    _wait_for(lambda: all(assigner.track(u) == "canary" for u in stable_users))
    assert len(evaluated) > 300
    assert set(_tracks(assigner, range(300)).values()) == {"canary"}
    evaluated.clear()
    assert set(_tracks(assigner, range(300)).values()) == {"canary"}
    assert evaluated == []  # cached again under the new flag data


def test_hot_path_answers_with_the_full_contract(upstreams: dict[str, Upstream]) -> None:
    client = _router(upstreams, lambda u: "stable")
    resp = client.get("/recommend/5")
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(len("stable-a,stable-b"))
    for name in ("X-Frame-Options", "Content-Security-Policy", "Cache-Control"):
        assert name in resp.headers
    assert resp.headers.getlist("X-Content-Type-Options") == ["nosniff"]  # added once
    bad = client.get("/recommend/x1", headers={"Accept": "application/json"})
    assert bad.status_code == 400
    assert bad.get_json() == {"error": "bad user id: expected a non-negative integer"}
    assert bad.headers["X-Track"] == "none"
    head = client.head("/recommend/5")  # forwarded as a HEAD: never an exposure upstream
    assert head.status_code == 200
    assert head.headers["X-Track"] == "stable"
    assert head.headers["X-Model-Version"] == "3"
    assert head.get_data() == b""
    assert client.post("/recommend/5").status_code == 405
    assert client.get("/recommend/5/").status_code == 404


def test_stable_gets_only_what_is_left_of_the_budget_after_queueing(
    upstreams: dict[str, Upstream],
) -> None:
    upstreams["stable"].mode = "slow"  # 1 s
    client = _router(upstreams, lambda u: "stable")
    started = time.monotonic()
    # as stamped by the gunicorn worker: the request waited 300 ms for a thread
    resp = client.get("/recommend/5", environ_overrides={QUEUE_WAIT_KEY: 0.3})
    # 800 ms budget - 300 ms already spent queued: the router gives up within ~0.5 s
    assert time.monotonic() - started < 0.65
    assert resp.status_code == 503
    assert resp.headers["X-Track"] == "stable"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


# -- rate limiting behind proxies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded", "hops", "client"),
    [
        (None, 0, "10.0.0.9"),
        ("1.1.1.1", 0, "10.0.0.9"),  # no proxy trusted: the header is ignored
        ("1.1.1.1", 1, "1.1.1.1"),
        ("6.6.6.6, 1.1.1.1", 1, "1.1.1.1"),  # the client wrote 6.6.6.6: ignored
        ("6.6.6.6, 1.1.1.1, 2.2.2.2", 2, "1.1.1.1"),
        ("1.1.1.1", 2, "10.0.0.9"),  # fewer entries than trusted hops: the peer
        ("", 1, "10.0.0.9"),
    ],
)
def test_client_key_trusts_only_the_configured_proxy_hops(
    forwarded: str | None, hops: int, client: str
) -> None:
    environ = {"REMOTE_ADDR": "10.0.0.9"}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_key(environ, hops) == client


def test_rotating_x_forwarded_for_does_not_pass_the_limit(upstreams: dict[str, Upstream]) -> None:
    settings = RouterSettings(
        tracks={"stable": upstreams["stable"].url},
        rate_limit_rps=1,
        rate_limit_burst=3,
        trusted_proxy_hops=1,
    )
    client = create_app(settings, assigner=Fixed(lambda u: "stable")).test_client()
    statuses = [
        # the client rotates what it writes; the proxy appends the address it really saw
        client.get(
            "/recommend/1", headers={"X-Forwarded-For": f"10.9.{i}.{i}, 203.0.113.7"}
        ).status_code
        for i in range(10)
    ]
    assert statuses == [200, 200, 200] + [429] * 7
    other = client.get("/recommend/1", headers={"X-Forwarded-For": "203.0.113.8"})
    assert other.status_code == 200  # another real client has its own bucket


# -- the upstream HTTP client against raw answers -------------------------------------------------


class Canned:
    """A socket server that answers every request on a connection with the next canned bytes,
    then closes the connection when told to (None)."""

    def __init__(self, answers: list[bytes | None]) -> None:
        import socket

        self.answers = list(answers)
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with sock:
                while self.answers:
                    if not sock.recv(4096):
                        break
                    answer = self.answers.pop(0)
                    if answer is None:
                        break  # close this connection with the request unanswered
                    sock.sendall(answer)

    def close(self) -> None:
        self.listener.close()


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nX-Track: stable\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


def test_upstream_client_reads_length_chunked_and_close_delimited_bodies() -> None:
    from movierec_recommender.router.forward import Upstreams

    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    until_close = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nxyz"
    server = Canned([_ok(b"1,2"), chunked, until_close])
    ups = Upstreams({"stable": server.url}, 1, 1.0)
    try:
        first = ups.get("stable", "/recommend/1", None, 1.0)
        assert (first.status, first.body, first.headers) == (200, b"1,2", {"X-Track": "stable"})
        assert ups.get("stable", "/recommend/1", None, 1.0).body == b"abcde"
        assert server.connections == 1  # kept alive across answers
        last = ups.get("stable", "/recommend/1", None, 1.0)
        assert (last.body, last.headers) == (b"xyz", {"Content-Type": "text/plain"})
    finally:
        ups.close()
        server.close()


def test_upstream_client_retries_once_when_an_idle_connection_was_closed() -> None:
    from movierec_recommender.router.forward import Upstreams

    # the second request arrives on a connection the upstream then closes (idle timeout)
    server = Canned([_ok(b"a"), None, _ok(b"b")])
    ups = Upstreams({"stable": server.url}, 1, 1.0)
    try:
        assert ups.get("stable", "/recommend/1", None, 1.0).body == b"a"
        again = ups.get("stable", "/recommend/2", None, 1.0)
        assert (again.status, again.body, again.error) == (200, b"b", None)
        assert server.connections == 2
    finally:
        ups.close()
        server.close()


def test_upstream_client_refuses_oversized_and_malformed_answers() -> None:
    from movierec_recommender.router.forward import MAX_BODY, Upstreams

    server = Canned([
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),
        b"SMTP ready\r\n\r\n",
    ])  # fmt: skip
    ups = Upstreams({"stable": server.url}, 1, 1.0)
    try:
        assert ups.get("stable", "/recommend/1", None, 1.0).error == "protocol"
        assert ups.get("stable", "/recommend/1", None, 1.0).error == "protocol"
    finally:
        ups.close()
        server.close()
