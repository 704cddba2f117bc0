"""The router's upstream calls made in the worker's event loop, under real gunicorn, against raw
upstreams that are slow, hang, close idle connections, answer garbage or are down."""

from __future__ import annotations

import contextlib
import gc
import json
import select
import selectors
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from movierec_recommender.router.flagdata import write_flag_file
from movierec_recommender.router.forward import Upstream
from movierec_recommender.router.loopforward import LoopUpstreams
from movierec_recommender.web.loop import LoopServices

from harness.appservice import ROUTER_APP, Service, free_port, http_get


class RawUpstream:
    """A recommender stand-in on 127.0.0.1 speaking HTTP/1.1 by hand, one thread per
    connection, whose behaviour is set by `mode`:
    ok | close_after (answers, then closes the kept-alive connection) | slow | hang | garbage."""

    def __init__(self, track: str, version: str, delay: float = 0.3) -> None:
        self.track = track
        self.version = version
        self.delay = delay
        self.mode = "ok"
        self.padding = 0  # bytes added to every answer's body
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        buf = b""
        with sock:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = sock.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                with self._lock:
                    self.requests += 1
                path = head.split(b" ")[1].decode()
                mode = self.mode
                if mode == "hang":
                    time.sleep(30)
                    return
                if mode == "slow":
                    time.sleep(self.delay)
                if mode == "garbage":
                    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                    return
                body = f"{self.track}:{path}".encode() + b"." * self.padding
                answer = (
                    f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Track: {self.track}\r\n"
                    f"X-Model-Version: {self.version}\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                try:
                    sock.sendall(answer)
                except OSError:
                    return
                if mode == "close_after":
                    return  # kept alive by the headers, closed while the router holds it idle

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accepting thread: nothing listens after
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def upstreams() -> Iterator[dict[str, RawUpstream]]:
    ups = {"stable": RawUpstream("stable", "3"), "canary": RawUpstream("canary", "4")}
    yield ups
    for up in ups.values():
        up.close()


def _router(
    tmp_path: Path, tracks: dict[str, str], weights: dict[str, int], *, threads: int = 4,
    **env: str,
) -> Service:  # fmt: skip
    flags = write_flag_file(tmp_path / "flags.json", weights)
    settings = {
        "MOVIEREC_ROUTER_TRACKS": json.dumps(tracks),
        "MOVIEREC_ROUTER_FLAGS_FILE": str(flags),
        "MOVIEREC_ROUTER_RATE_LIMIT_RPS": "0",
        "MOVIEREC_ROUTER_CANARY_TIMEOUT_MS": "200",
        "MOVIEREC_EDGE_DRAIN_S": "0",  # nothing to drain for at the end of a test
        **env,
    }
    # /readyz calls stable; a hanging or slow stable must not keep the router from starting
    return Service(ROUTER_APP, settings, workers=1, threads=threads, ready_path="/healthz")


def _slow_stable_router(
    tmp_path: Path, upstreams: dict[str, RawUpstream], delay: float, *, threads: int = 4,
    **env: str,
) -> tuple[RawUpstream, Service]:  # fmt: skip
    """A router for which stable takes `delay` seconds per answer."""
    stable = upstreams["stable"]
    stable.mode = "slow"
    stable.delay = delay
    return stable, _router(
        tmp_path, {"stable": stable.url}, {"stable": 100}, threads=threads, **env
    )


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _timed_get(url: str) -> tuple[int, dict[str, str], bytes, float]:
    started = time.monotonic()
    status, headers, body = http_get(url, timeout=10)
    return status, headers, body, time.monotonic() - started


def test_one_thread_carries_many_routed_answers_at_once(
    tmp_path: Path, upstreams: dict[str, RawUpstream]
) -> None:
    """24 requests to an upstream that takes 0.3 s each, through a router with one thread: a
    thread per call would need 7 s (and blow the 800 ms budget); the loop needs ~0.3 s."""
    _, router_service = _slow_stable_router(
        tmp_path, upstreams, 0.3, threads=1, MOVIEREC_ROUTER_POOL_SIZE="32"
    )
    with router_service as router:
        started = time.monotonic()
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(_timed_get, [f"{router.url}/recommend/{u}" for u in range(24)]))
        wall = time.monotonic() - started
    statuses = [a[0] for a in answers]
    assert statuses == [200] * 24, statuses
    assert [a[2] for a in answers] == [f"stable:/recommend/{u}".encode() for u in range(24)]
    assert wall < 2.0, f"24 routed answers took {wall:.2f} s"


def test_requests_past_the_slots_wait_in_order_and_are_shed_fast(
    tmp_path: Path, upstreams: dict[str, RawUpstream]
) -> None:
    """4 slots, an upstream that takes 0.6 s: the first requests take the slots, the rest wait
    for one, and those that waited past 250 ms get a fast 503 instead of a late answer."""
    stable, router_service = _slow_stable_router(
        tmp_path, upstreams, 0.6, MOVIEREC_ROUTER_POOL_SIZE="4"
    )
    with router_service as router:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(_timed_get, [f"{router.url}/recommend/{u}" for u in range(12)]))
        metrics = http_get(router.url + "/metrics")[2].decode()
    statuses = [a[0] for a in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 4
    assert statuses.count(503) >= 1
    for status, headers, _, took in answers:
        if status == 503:
            assert headers["Retry-After"] == "1"
            assert took < 1.0  # 0.6 s for a slot, then refused at once
    assert stable.requests == statuses.count(200)  # a shed request never reached the upstream
    assert _sample(metrics, "movierec_load_shed_total") == statuses.count(503)


def test_an_upstream_closing_idle_connections_costs_no_answer(
    tmp_path: Path, upstreams: dict[str, RawUpstream]
) -> None:
    stable = upstreams["stable"]
    stable.mode = "close_after"
    with _router(tmp_path, {"stable": stable.url}, {"stable": 100}) as router:
        answers = [http_get(f"{router.url}/recommend/{u}") for u in range(20)]
    assert [a[0] for a in answers] == [200] * 20
    assert stable.requests == 20  # one retry on a fresh connection, never a second request
    assert stable.connections >= 20


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("garbage", "protocol"), ("hang", "timeout"), ("slow", "timeout"), ("down", "connect")],
)
def test_a_failing_canary_is_answered_by_stable_and_counted(
    tmp_path: Path, upstreams: dict[str, RawUpstream], mode: str, reason: str
) -> None:
    canary = upstreams["canary"]
    if mode == "down":
        canary.close()
    else:
        canary.mode = mode
    tracks = {name: up.url for name, up in upstreams.items()}
    with _router(tmp_path, tracks, {"stable": 0, "canary": 100}) as router:
        status, headers, body, took = _timed_get(f"{router.url}/recommend/7")
        metrics = http_get(router.url + "/metrics")[2].decode()
    assert status == 200
    assert headers["X-Track"] == "stable"
    assert headers["X-Model-Version"] == "3"
    assert body == b"stable:/recommend/7"
    assert took < 0.8
    assert _sample(metrics, "movierec_router_fallbacks_total", track="canary", reason=reason) == 1


@pytest.mark.parametrize("mode", ["hang", "down"])
def test_without_stable_the_answer_is_a_503_within_the_budget(
    tmp_path: Path, upstreams: dict[str, RawUpstream], mode: str
) -> None:
    stable = upstreams["stable"]
    if mode == "down":
        stable.close()
    else:
        stable.mode = mode
    with _router(tmp_path, {"stable": stable.url}, {"stable": 100}) as router:
        status, headers, _, took = _timed_get(f"{router.url}/recommend/1")
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert took < 1.0


def test_pipelined_get_head_and_close_are_answered_in_order(
    tmp_path: Path, upstreams: dict[str, RawUpstream]
) -> None:
    stable = upstreams["stable"]
    with (
        _router(tmp_path, {"stable": stable.url}, {"stable": 100}) as router,
        socket.create_connection(("127.0.0.1", router.port), timeout=5) as sock,
    ):
        sock.sendall(
            b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /recommend/2 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /recommend/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):  # the server closes after the third answer
            data += chunk
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200"] * 3, data[:600]
    assert answers[0].endswith(b"stable:/recommend/1")
    assert answers[1].endswith(b"\r\n\r\n")  # HEAD: no body, the GET's length
    assert b"Content-Length: 19\r\n" in answers[0]
    assert b"Content-Length: 19\r\n" in answers[1]
    assert b"Connection: keep-alive" in answers[1]
    assert b"Connection: close" in answers[2]
    assert answers[2].endswith(b"stable:/recommend/3")
    assert stable.requests == 3


def test_a_client_that_does_not_read_blocks_nobody_and_is_dropped(
    tmp_path: Path, upstreams: dict[str, RawUpstream]
) -> None:
    """A client pipelines requests and never reads: its answers pile up until its socket is
    full. The loop must not wait on it: other clients get answers, and it is closed once the
    write timeout passes."""
    stable = upstreams["stable"]
    stable.padding = 50_000  # 2,000 answers: 100 MB, far more than any socket buffers
    with _router(
        tmp_path, {"stable": stable.url}, {"stable": 100}, MOVIEREC_EDGE_WRITE_TIMEOUT_S="1"
    ) as router:
        greedy = socket.socket()
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.connect(("127.0.0.1", router.port))
        greedy.settimeout(1.0)
        request = b"GET /recommend/5 HTTP/1.1\r\nHost: x\r\n\r\n"

        def flood() -> None:
            with contextlib.suppress(OSError):
                for _ in range(20):
                    greedy.sendall(request * 100)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        time.sleep(1.0)
        others = [_timed_get(f"{router.url}/recommend/{u}") for u in range(10)]
        assert [o[0] for o in others] == [200] * 10
        assert max(o[3] for o in others) < 0.5
        answered_before = stable.requests
        assert answered_before > 10
        time.sleep(2.0)  # past the write timeout: the greedy connection is closed
        greedy.settimeout(5.0)
        closed = False
        try:
            while greedy.recv(1 << 20):
                pass
            closed = True
        except (ConnectionResetError, TimeoutError):
            closed = True  # reset: the server closed it with answers unread
        assert closed
        greedy.close()
        flooder.join(5)
        answered = stable.requests
        time.sleep(0.5)
        assert stable.requests == answered  # nothing more is read from the closed connection
        assert answered < 1_000, "the pipelined requests were answered: nothing blocked"


def test_sigterm_lets_routed_answers_in_flight_finish(
    tmp_path: Path, upstreams: dict[str, RawUpstream]
) -> None:
    _, router_service = _slow_stable_router(tmp_path, upstreams, 0.6, MOVIEREC_EDGE_DRAIN_S="0.1")
    with router_service as router:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(_timed_get, f"{router.url}/recommend/{u}") for u in range(8)]
            time.sleep(0.2)  # all eight are waiting on the upstream
            assert router.proc is not None
            router.proc.send_signal(signal.SIGTERM)
            answers = [f.result() for f in futures]
        router.proc.wait(15)
    assert [a[0] for a in answers] == [200] * 8, [a[:3] for a in answers]


def test_a_track_named_by_host_name_is_looked_up_off_the_loop(
    tmp_path: Path, upstreams: dict[str, RawUpstream]
) -> None:
    stable = upstreams["stable"]
    with _router(tmp_path, {"stable": f"http://localhost:{stable.port}"}, {"stable": 100}) as r:
        answers = [http_get(f"{r.url}/recommend/{u}") for u in range(20)]
    assert [a[0] for a in answers] == [200] * 20
    assert [a[2] for a in answers] == [f"stable:/recommend/{u}".encode() for u in range(20)]


def _drive(loop: LoopServices, selector: selectors.BaseSelector, until: Callable[[], bool]) -> None:
    """Run the loop's events and timers (as the worker does) until `until()` or 3 s."""
    deadline = time.monotonic() + 3.0
    while not until() and time.monotonic() < deadline:
        for key, _ in selector.select(0.05):
            key.data(key.fileobj)
        loop.run_due(time.monotonic())


def test_a_refused_address_fails_over_to_the_next_and_is_remembered(
    upstreams: dict[str, RawUpstream],
) -> None:
    """A name with two addresses, the first refusing (a dual-stack name whose service listens on
    one): the call goes to the second, and later calls try that one first."""
    stable = upstreams["stable"]
    dead = free_port()
    selector = selectors.DefaultSelector()
    loop = LoopServices(selector, threading.RLock())
    calls = LoopUpstreams({"stable": stable.url}, connect_timeout=0.5)
    address = calls._addresses["stable"]
    live = (socket.AF_INET, ("127.0.0.1", stable.port))
    address.value = [(socket.AF_INET, ("127.0.0.1", dead)), live]
    answers: list[Upstream] = []
    for uid in (1, 2):
        calls.call(loop, "stable", f"/recommend/{uid}", accept=None, timeout=2.0, head=False,
                   done=answers.append)  # fmt: skip
        _drive(loop, selector, lambda n=uid: len(answers) == n)
    calls.close()
    selector.close()
    assert [(a.status, a.body, a.error) for a in answers] == [
        (200, b"stable:/recommend/1", None),
        (200, b"stable:/recommend/2", None),
    ]
    assert address.value[0] == live
    assert stable.connections == 1  # the second call reused the first's connection


def test_a_reused_connection_found_closed_is_retried_with_the_whole_request(
    upstreams: dict[str, RawUpstream],
) -> None:
    """The upstream closed the idle connection and the loop has not seen it yet (a busy loop):
    the request goes out on it, finds it closed, and is sent again in full on a new one."""
    stable = upstreams["stable"]
    stable.mode = "close_after"
    selector = selectors.DefaultSelector()
    loop = LoopServices(selector, threading.RLock())
    calls = LoopUpstreams({"stable": stable.url}, connect_timeout=0.5)
    answers: list[Upstream] = []
    calls.call(loop, "stable", "/recommend/1", accept=None, timeout=2.0, head=False,
               done=answers.append)  # fmt: skip
    _drive(loop, selector, lambda: len(answers) == 1)
    (idle,) = calls._idle["stable"]  # the loop is not run while the upstream closes it
    deadline = time.monotonic() + 3.0
    while not select.select([idle], [], [], 0)[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    calls.call(loop, "stable", "/recommend/2", accept=None, timeout=2.0, head=False,
               done=answers.append)  # fmt: skip
    _drive(loop, selector, lambda: len(answers) == 2)
    calls.close()
    selector.close()
    assert [(a.status, a.body, a.error) for a in answers] == [
        (200, b"stable:/recommend/1", None),
        (200, b"stable:/recommend/2", None),
    ]
    assert (stable.requests, stable.connections) == (2, 2)


def test_a_finished_call_is_freed_at_once_not_left_to_the_cycle_collector(
    upstreams: dict[str, RawUpstream],
) -> None:
    """A call, its deadline timer and the answer's callback refer to one another while the call
    is made; once it is answered nothing may keep them. Calls left in cycles made the router's
    loop stop for 40-100 ms in full collections every few seconds under load."""
    stable = upstreams["stable"]
    selector = selectors.DefaultSelector()
    loop = LoopServices(selector, threading.RLock())
    calls = LoopUpstreams({"stable": stable.url}, connect_timeout=0.5)
    answers: list[int] = []

    class Done:
        def __call__(self, up: Upstream) -> None:
            answers.append(up.status)

    refs = []
    gc.disable()  # what is freed below is freed by reference counting alone
    try:
        for n in range(1, 21):
            done = Done()
            refs.append(weakref.ref(done))
            calls.call(loop, "stable", f"/recommend/{n}", accept=None, timeout=2.0, head=False,
                       done=done)  # fmt: skip
            del done
            _drive(loop, selector, lambda n=n: len(answers) == n)
        assert answers == [200] * 20
        assert [ref() for ref in refs] == [None] * 20
    finally:
        gc.enable()
        calls.close()
        selector.close()
