"""The operator's calls to MLflow and Prometheus are bounded: a timeout per attempt, a few
retries, then an error naming the service and the failure (real sockets, no mocks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from movierec_operator.analysis import Prometheus, PrometheusError
from movierec_operator.mlflow_client import Registry, RegistryUnavailableError


class SilentServer:
    """Accepts TCP connections and never answers: a hung MLflow or Prometheus."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def connections(self, expected: int, wait: float = 3.0) -> int:
        """How many connections arrived, once ``expected`` did or ``wait`` ran out.

        The accept thread may lag the client on a loaded machine; a short settle after the
        expected count catches an extra, unexpected retry.
        """
        deadline = time.monotonic() + wait
        while len(self.accepted) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        return len(self.accepted)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture(autouse=True)
def _restore_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registry bounds MLflow's client through process-wide variables: undo them afterwards
    for key in ("TIMEOUT", "MAX_RETRIES", "BACKOFF_FACTOR", "BACKOFF_JITTER"):
        monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{key}", raising=False)


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_prometheus_query_times_out_and_retries_a_bounded_number_of_times(
    silent: SilentServer,
) -> None:
    prom = Prometheus(f"http://127.0.0.1:{silent.port}", timeout=0.5, retries=2)
    started = time.monotonic()
    with pytest.raises(PrometheusError, match=r"PrometheusUnavailable: .*ReadTimeoutError"):
        prom.query("up")
    elapsed = time.monotonic() - started
    assert silent.connections(3) == 3  # one try and two retries
    assert 1.5 <= elapsed < 8  # bounded: seconds, whatever the machine's load


def test_prometheus_refused_connection_names_the_cause() -> None:
    prom = Prometheus(f"http://127.0.0.1:{closed_port()}", timeout=0.5, retries=1)
    with pytest.raises(PrometheusError, match=r"NewConnectionError"):
        prom.query("up")


def test_mlflow_calls_time_out_and_retry_a_bounded_number_of_times(silent: SilentServer) -> None:
    url = f"http://127.0.0.1:{silent.port}"
    registry = Registry(url, timeout=1, retries=1)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as caught:
        registry.resolve("movies", version=None, alias="challenger")
    elapsed = time.monotonic() - started
    assert silent.connections(2) == 2
    assert elapsed < 10  # MLflow's own default would be minutes (120 s x 7 tries)
    assert caught.value.reason == f"MLflowUnavailable: {url}: TimeoutError"


def test_mlflow_refused_connection_is_a_reason_a_person_can_act_on() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(RegistryUnavailableError) as caught:
        Registry(url, timeout=1, retries=0).resolve("movies", version="1", alias=None)
    assert caught.value.reason == f"MLflowUnavailable: {url}: ConnectionRefusedError"
