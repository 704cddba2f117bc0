"""Each real service from the harness answers the way the rest of the test suite relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness import alertmanager, kafka, postgres
from harness.kube_build import KUBERNETES_VERSION
from harness.node_images import PAUSE_IMAGE
from harness.ports import HOST, free_port
from harness.process import pid_alive
from harness.prometheus import PrometheusServer
from harness.session import KubeNamespace, MlflowNames
from harness.smtp import Mailbox

REPO = Path(__file__).resolve().parents[2]


# ---- Kafka ---------------------------------------------------------------------------------------


def _consume(bootstrap: str, topic: str, count: int, group: str | None = None) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group or f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    values: list[bytes] = []
    try:
        for message in consumer:
            values.append(message.value)
            if len(values) == count:
                break
    finally:
        consumer.close()
    return values


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for value in values:
            producer.send(topic, value=value, key=value[:1]).get(timeout=30)
    finally:
        producer.close()


def test_kafka_message_round_trip(kafka_bootstrap: str, kafka_topic: str) -> None:
    from kafka import KafkaConsumer

    lines = [
        f"2025-10-17T01:33:45,{user},GET /rate/the+green+mile+1999=4".encode() for user in range(9)
    ]
    _produce(kafka_bootstrap, kafka_topic, lines)

    assert sorted(_consume(kafka_bootstrap, kafka_topic, len(lines))) == sorted(lines)
    probe = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert probe.partitions_for_topic(kafka_topic) == {0, 1, 2}
    finally:
        probe.close()


def test_kafka_creates_unknown_topics_with_three_partitions(kafka_bootstrap: str) -> None:
    from kafka import KafkaConsumer

    topic = f"auto-{uuid.uuid4().hex[:10]}"
    _produce(kafka_bootstrap, topic, [b"first"])
    probe = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert probe.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        probe.close()
        kafka.delete_topic(kafka_bootstrap, topic)


def test_broker_restart_keeps_messages(broker_control: kafka.KafkaBroker) -> None:
    topic = kafka.create_topic(broker_control.bootstrap, partitions=1)
    _produce(broker_control.bootstrap, topic, [b"before"])

    broker_control.restart()
    _produce(broker_control.bootstrap, topic, [b"after"])

    assert _consume(broker_control.bootstrap, topic, 2) == [b"before", b"after"]


def test_a_cluster_id_starting_with_a_dash_formats_and_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A random KRaft id starts with "-" one time in 32; "-t ID" made the format step fail."""
    monkeypatch.setattr(kafka, "_cluster_id", lambda: "-xLtU23OQOeLlxB59-LQNw")
    broker = kafka.start(tmp_path / "kafka", partitions=1)
    try:
        topic = kafka.create_topic(broker.bootstrap, partitions=1)
        _produce(broker.bootstrap, topic, [b"dash"])
        assert _consume(broker.bootstrap, topic, 1) == [b"dash"]
    finally:
        broker.stop()
    meta = next((tmp_path / "kafka").rglob("meta.properties")).read_text()
    assert "cluster.id=-xLtU23OQOeLlxB59-LQNw" in meta


# ---- PostgreSQL -----------------------------------------------------------------------------------


def test_postgres_sql_round_trip(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE ratings (user_id int, movie_id text)"))
            connection.execute(sa.text("INSERT INTO ratings VALUES (7, 'the+green+mile+1999')"))
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT user_id, movie_id FROM ratings")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [(7, "the+green+mile+1999")]
    assert pg_url.startswith("postgresql+psycopg2://")


def test_postgres_restart_keeps_rows(pg_control: postgres.PostgresServer) -> None:
    url = pg_control.create_database()
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE t AS SELECT 42 AS answer"))
        old_pid = pg_control.pid

        pg_control.restart()

        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT answer FROM t")).scalar() == 42
    finally:
        engine.dispose()
    assert pg_control.pid != old_pid


# ---- MLflow -----------------------------------------------------------------------------------------


def test_mlflow_tracks_runs_and_registers_models(
    mlflow_uri: str, mlflow_names: MlflowNames, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    experiment_id = client.create_experiment(mlflow_names.experiment)
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "rmse", 0.91)
    artifact = tmp_path / "notes.txt"
    artifact.write_text("artifact store works")
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)

    client.create_registered_model(mlflow_names.model)
    version = client.create_model_version(
        mlflow_names.model, f"runs:/{run.info.run_id}/notes.txt", run.info.run_id
    )
    client.set_registered_model_alias(mlflow_names.model, "challenger", version.version)

    assert client.get_run(run.info.run_id).data.metrics == {"rmse": 0.91}
    assert [item.path for item in client.list_artifacts(run.info.run_id)] == ["notes.txt"]
    found = client.get_model_version_by_alias(mlflow_names.model, "challenger")
    assert found.version == version.version


# ---- Prometheus, Pushgateway, Alertmanager, SMTP ----------------------------------------------------


@pytest.fixture
def metrics_endpoint() -> Iterator[tuple[str, Callable[[float], None]]]:
    """A /metrics endpoint in this process exposing movierec_harness_probe; yields (target, set)."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    gauge = Gauge("movierec_harness_probe", "set by the harness test", registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr=HOST, registry=registry)
    yield f"{HOST}:{port}", gauge.set
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_prometheus_scrapes_a_test_target(
    prometheus: Callable[..., PrometheusServer],
    metrics_endpoint: tuple[str, Callable[[float], None]],
) -> None:
    target, set_value = metrics_endpoint
    set_value(42)

    server = prometheus([target], scrape_interval="1s")
    server.wait_targets_up()

    assert server.query_value("movierec_harness_probe") == 42
    set_value(7)
    deadline = time.monotonic() + 15
    while server.query_value("movierec_harness_probe") != 7 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert server.query_value("movierec_harness_probe") == 7


def test_shared_prometheus_scrapes_the_pushgateway(
    pushgateway_url: str, prometheus_server: PrometheusServer
) -> None:
    job = f"harness-{uuid.uuid4().hex[:8]}"
    request = urllib.request.Request(
        f"{pushgateway_url}/metrics/job/{job}",
        data=b"movierec_harness_pushed 3.5\n",
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 202)

    assert (
        prometheus_server.query_value(f'movierec_harness_pushed{{job="{job}"}}', timeout=30) == 3.5
    )


def test_alertmanager_emails_an_alert(
    alertmanager_server: alertmanager.AlertmanagerServer, smtp_sink: Mailbox
) -> None:
    name = f"HarnessDirect{uuid.uuid4().hex[:6]}"
    alertmanager_server.post_alerts(
        [{"labels": {"alertname": name, "severity": "page"}, "annotations": {"summary": "hi"}}]
    )

    mail = smtp_sink.wait_for(lambda message: name in str(message["Subject"]), timeout=30)

    assert mail["To"] == alertmanager.ALERT_TO
    assert any(alert["labels"]["alertname"] == name for alert in alertmanager_server.alerts())


def test_prometheus_rule_fires_through_alertmanager_to_email(
    prometheus: Callable[..., PrometheusServer],
    alertmanager_url: str,
    smtp_sink: Mailbox,
) -> None:
    name = f"HarnessRule{uuid.uuid4().hex[:6]}"
    rules = (
        f"groups:\n- name: harness\n  rules:\n  - alert: {name}\n    expr: vector(1)\n"
        "    labels: {severity: page}\n    annotations: {summary: rule fired}\n"
    )

    prometheus(rules={"harness.rules.yml": rules}, alertmanagers=[alertmanager_url])

    mail = smtp_sink.wait_for(lambda message: name in str(message["Subject"]), timeout=60)
    assert "FIRING" in str(mail["Subject"])


# ---- Kubernetes -------------------------------------------------------------------------------------

DEPLOYMENT = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, labels: {{app: web}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: web, image: "{PAUSE_IMAGE}", imagePullPolicy: Never}}]
"""


def _wait_json(kube_ns: KubeNamespace, *args: str, ready: Callable[[dict], bool]) -> dict:
    deadline = time.monotonic() + 60
    while True:
        found = json.loads(kube_ns.kubectl("get", *args, "-o", "json"))
        if ready(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_controller_manager_gives_deployments_replicasets_and_pods(kube: KubeNamespace) -> None:
    kube.kubectl("apply", "-f", "-", stdin=DEPLOYMENT)

    replicasets = _wait_json(kube, "replicasets", "-l", "app=web", ready=lambda f: bool(f["items"]))
    pods = _wait_json(
        kube,
        "pods",
        "-l",
        "app=web",
        ready=lambda f: [p["status"]["phase"] for p in f["items"]] == ["Running"] * 2,
    )

    assert len(replicasets["items"]) == 1
    assert replicasets["items"][0]["metadata"]["ownerReferences"][0]["name"] == "web"
    assert {pod["status"]["phase"] for pod in pods["items"]} == {"Running"}


def test_python_client_and_kubectl_reach_the_api_server(kube: KubeNamespace) -> None:
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kube.kubeconfig)))
    try:
        api.create_namespaced_config_map(
            kube.namespace, {"metadata": {"name": "probe"}, "data": {"answer": "42"}}
        )
    finally:
        api.api_client.close()

    listed = kube.kubectl("get", "configmap", "probe", "-o", "jsonpath={.data.answer}")
    version = json.loads(kube.kubectl("version", "-o", "json"))

    assert listed == "42"
    assert version["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert version["clientVersion"]["gitVersion"] == KUBERNETES_VERSION


# ---- the command line ---------------------------------------------------------------------------


def _harness(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=REPO,
        env={**os.environ, "MOVIEREC_SERVICES_ENV": str(env_file)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _values(env_file: Path) -> dict[str, str]:
    lines = env_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_cli_up_and_down_are_idempotent(tmp_path: Path) -> None:
    env_file = tmp_path / "services.env"

    first = _harness(env_file, "up", "--only", "smtp")
    started = _values(env_file)
    again = _harness(env_file, "up", "--only", "smtp")
    status = _harness(env_file, "status")
    down = _harness(env_file, "down")
    down_again = _harness(env_file, "down")

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert status.returncode == 0, status.stdout
    assert "smtp" in status.stdout
    assert down.returncode == 0, down.stderr
    assert down_again.returncode == 0, down_again.stderr
    assert "nothing to stop" in down_again.stdout
    assert started["MOVIEREC_SERVICES"] == "smtp"
    assert not pid_alive(int(started["MOVIEREC_SMTP_PID"]))
    assert not Path(started["MOVIEREC_SERVICES_DIR"]).exists()
    assert not env_file.exists()


def test_cli_up_twice_keeps_the_running_services(tmp_path: Path) -> None:
    env_file = tmp_path / "services.env"
    try:
        assert _harness(env_file, "up", "--only", "pushgateway").returncode == 0
        before = _values(env_file)
        assert _harness(env_file, "up", "--only", "pushgateway").returncode == 0
        after = _values(env_file)
    finally:
        _harness(env_file, "down")
    assert after == before
