"""Fixtures for the real services: reuse `make services-up`'s, or start them for this session."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness import alertmanager, kafka, mlflow_server, postgres, smtp
from harness import kube as kube_service
from harness import prometheus as prometheus_service
from harness.session import KubeNamespace, MlflowNames, ServiceSession, private_dir

# A test using one of these fixtures (directly or through another fixture) gets the marker,
# so `-m "not k8s"` and friends select by the services a test really needs.
FIXTURE_MARKERS = {
    "kafka_bootstrap": "kafka",
    "kafka_topic": "kafka",
    "kafka_topic_factory": "kafka",
    "broker_control": "kafka",
    "pg_server": "postgres",
    "pg_url": "postgres",
    "pg_control": "postgres",
    "mlflow_uri": "mlflow",
    "mlflow_names": "mlflow",
    "prometheus": "prometheus",
    "prometheus_url": "prometheus",
    "prometheus_server": "prometheus",
    "pushgateway_url": "prometheus",
    "alertmanager_url": "prometheus",
    "alertmanager_server": "prometheus",
    "smtp_sink": "prometheus",
    "kube_session": "k8s",
    "kube": "k8s",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by the real services its fixtures need."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for marker in sorted({FIXTURE_MARKERS[name] for name in names & FIXTURE_MARKERS.keys()}):
            item.add_marker(marker)


# ---- session: one of each service, shared ----------------------------------------------------


@pytest.fixture(scope="session")
def harness_services() -> Iterator[ServiceSession]:
    """The session's services: those in .services.env if alive, others started on demand."""
    session = ServiceSession()
    yield session
    session.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(harness_services: ServiceSession) -> str:
    """Bootstrap servers of the shared broker, ``127.0.0.1:PORT``."""
    return harness_services.require_as("kafka", kafka.KafkaBroker).bootstrap


@pytest.fixture(scope="session")
def pg_server(harness_services: ServiceSession) -> postgres.PostgresServer:
    """The shared PostgreSQL server (use ``pg_url`` for a database of your own)."""
    return harness_services.require_as("postgres", postgres.PostgresServer)


@pytest.fixture(scope="session")
def mlflow_uri(harness_services: ServiceSession) -> str:
    """Tracking URI of the shared MLflow server, ``http://127.0.0.1:PORT``."""
    return harness_services.require_as("mlflow", mlflow_server.MlflowServer).url


@pytest.fixture(scope="session")
def prometheus_server(harness_services: ServiceSession) -> prometheus_service.PrometheusServer:
    """The shared Prometheus: scrapes the Pushgateway every 5s, alerts to the Alertmanager."""
    return harness_services.require_as("prometheus", prometheus_service.PrometheusServer)


@pytest.fixture(scope="session")
def prometheus_url(prometheus_server: prometheus_service.PrometheusServer) -> str:
    """URL of the shared Prometheus."""
    return prometheus_server.url


@pytest.fixture(scope="session")
def pushgateway_url(harness_services: ServiceSession) -> str:
    """The shared Pushgateway, scraped by the shared Prometheus."""
    return harness_services.require("pushgateway").env()["MOVIEREC_PUSHGATEWAY_URL"]


@pytest.fixture(scope="session")
def alertmanager_server(harness_services: ServiceSession) -> alertmanager.AlertmanagerServer:
    """The shared Alertmanager; it e-mails every alert to the shared SMTP sink."""
    return harness_services.require_as("alertmanager", alertmanager.AlertmanagerServer)


@pytest.fixture(scope="session")
def alertmanager_url(alertmanager_server: alertmanager.AlertmanagerServer) -> str:
    """URL of the shared Alertmanager."""
    return alertmanager_server.url


@pytest.fixture(scope="session")
def kube_session(harness_services: ServiceSession) -> kube_service.KubeCluster:
    """The shared single-node cluster (control plane, kubelet, kube-proxy, containerd, CoreDNS)."""
    return harness_services.require_as("cluster", kube_service.KubeCluster)


# ---- per test: isolation on the shared services ------------------------------------------------


@pytest.fixture
def kafka_topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """``make(partitions=3, prefix="test") -> name``: fresh topics, deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 3, prefix: str = "test") -> str:
        created.append(kafka.create_topic(kafka_bootstrap, partitions=partitions, prefix=prefix))
        return created[-1]

    yield make
    for topic in created:
        kafka.delete_topic(kafka_bootstrap, topic)


@pytest.fixture
def kafka_topic(kafka_topic_factory: Callable[..., str]) -> str:
    """A fresh topic with 3 partitions, ready (every partition has a leader)."""
    return kafka_topic_factory(partitions=3)


@pytest.fixture
def pg_url(pg_server: postgres.PostgresServer) -> Iterator[str]:
    """A fresh database's SQLAlchemy URL (``postgresql+psycopg2://...``), dropped afterwards."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def mlflow_names(mlflow_uri: str) -> MlflowNames:
    """Unique experiment and registered-model names for this test on the shared server."""
    return MlflowNames.fresh()


@pytest.fixture
def smtp_sink(harness_services: ServiceSession) -> smtp.Mailbox:
    """The shared sink's mail from now on: ``.messages()``, ``.wait_for(pred)``, ``.port``."""
    return harness_services.require_as("smtp", smtp.SmtpSink).mailbox()


@pytest.fixture
def kube(kube_session: kube_service.KubeCluster) -> Iterator[KubeNamespace]:
    """A fresh namespace: ``.namespace``, ``.kubeconfig``, ``.kubectl(...)``; deleted afterwards."""
    namespace = kube_session.create_namespace()
    yield KubeNamespace(
        namespace=namespace,
        kubeconfig=kube_session.kubeconfig,
        api_url=kube_session.api_url,
        token=kube_session.token,
        kubectl_path=kube_session.kubectl_path,
    )
    kube_session.delete_namespace(namespace)


# ---- per test: private instances --------------------------------------------------------------


@pytest.fixture
def prometheus() -> Iterator[Callable[..., prometheus_service.PrometheusServer]]:
    """``start(scrape_targets | config_text=..., scrape_interval="1s", rules={name: yaml},
    alertmanagers=[url])``: a fresh Prometheus for this test, stopped and deleted afterwards.
    Targets are ``host:port`` or URLs; the result has ``.url``, ``.query()``,
    ``.query_value()``, ``.wait_targets_up()``, ``.reload()``."""
    started: list[prometheus_service.PrometheusServer] = []

    def start(*args: Any, **kwargs: Any) -> prometheus_service.PrometheusServer:
        started.append(prometheus_service.start_prometheus(*args, **kwargs))
        return started[-1]

    yield start
    for server in reversed(started):
        server.close()


@pytest.fixture
def broker_control() -> Iterator[kafka.KafkaBroker]:
    """A private broker for fault tests: ``.bootstrap``, ``.restart()``, ``.stop()``,
    ``.start()``, ``.kill()``; data survives restarts. Stopped afterwards."""
    folder = private_dir("kafka")
    broker = kafka.start(folder / "kafka")
    yield broker
    broker.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_control() -> Iterator[postgres.PostgresServer]:
    """A private PostgreSQL for fault tests: ``.url()``, ``.create_database()``,
    ``.restart()``, ``.stop()``, ``.start()``; data survives restarts. Stopped afterwards."""
    folder = private_dir("postgres")
    server = postgres.start(folder / "postgres")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)
