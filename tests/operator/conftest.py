"""Operator test fixtures: the CRD on the real API server, a test-controlled metrics endpoint that
the real Prometheus scrapes, registered MLflow versions, and the operator running in-process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Kopf registers the timer at import time: a short tick so rollouts take seconds in tests.
os.environ.setdefault("MOVIEREC_OPERATOR_TIMER_INTERVAL_SECONDS", "0.5")

from tests.operator.support import CRD, Cluster, MetricsSource, Operator, Registry


@pytest.fixture(scope="session")
def crd_installed(kube_session: Any) -> Path:
    """The RecommenderModel CRD, applied once per session and Established."""
    cluster = kube_session
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/recommendermodels.movierec.io",
        "--timeout=60s",
    )
    return CRD


@pytest.fixture
def cluster(kube: Any, crd_installed: Path) -> Cluster:
    return Cluster(Path(kube.kubeconfig), kube.namespace, str(kube.kubectl_path))


# ---- metrics the test controls, scraped by the real Prometheus -------------------------------


@pytest.fixture
def metrics_source() -> Iterator[MetricsSource]:
    source = MetricsSource()
    source.start()
    yield source
    source.stop()


# ---- MLflow ------------------------------------------------------------------------------


@pytest.fixture
def registry(mlflow_uri: str) -> Registry:
    reg = Registry(mlflow_uri, f"movies-{uuid.uuid4().hex[:8]}")
    reg.client.create_registered_model(reg.model_name)
    return reg


# ---- the operator, in-process ------------------------------------------------------------


@pytest.fixture
def operator_factory(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str
) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def make(
        *,
        prometheus_url: str,
        kubeconfig: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Operator:
        kubeconfig = kubeconfig or cluster.kubeconfig
        env = {
            "MOVIEREC_OPERATOR_PROMETHEUS_URL": prometheus_url,
            "MOVIEREC_OPERATOR_MLFLOW_TRACKING_URI": mlflow_uri,
            "MOVIEREC_OPERATOR_KUBECONFIG": str(kubeconfig),
            "MOVIEREC_OPERATOR_NAMESPACE": cluster.namespace,
            "MOVIEREC_OPERATOR_METRICS_PORT": "0",
            "MOVIEREC_OPERATOR_IMAGE": "movierec:test",
            "MOVIEREC_OPERATOR_OUTBOUND_TIMEOUT_SECONDS": "10",
            "MOVIEREC_OPERATOR_OUTBOUND_RETRIES": "1",
            # These tests judge the rollout logic; their pods run no real image. The tests of
            # availability (test_op_availability_cluster.py) turn this back on.
            "MOVIEREC_OPERATOR_REQUIRE_AVAILABLE_DEPLOYMENTS": "false",
            **(env or {}),
        }
        op = Operator(cluster, kubeconfig, env, monkeypatch)
        started.append(op)
        return op

    yield make
    # Delete the models while an operator still runs, so Kopf releases its finalizer and the
    # namespace can go; then stop every operator.
    running = [op for op in started if op.running]
    if running:
        out = cluster.kubectl("delete", "recommendermodels", "--all", "--timeout=30s", check=False)
        if "timed out" in out:  # never leave a namespace stuck on a finalizer
            for name in cluster.kubectl("get", "rm", "-o", "name").split():
                cluster.kubectl(
                    "patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
                )
            for op in started:
                op.stop()
            pytest.fail(f"deleting the RecommenderModels hung on the finalizer: {out}")
    for op in started:
        op.stop()


@pytest.fixture
def unused_prometheus() -> str:
    """A Prometheus URL for tests whose rollouts never reach an analysis."""
    return "http://127.0.0.1:9"


@pytest.fixture
def scraping_prometheus(prometheus: Callable[..., Any], metrics_source: MetricsSource) -> str:
    """URL of a fresh real Prometheus scraping ``metrics_source`` every second."""
    server = prometheus([f"127.0.0.1:{metrics_source.port}"], scrape_interval="1s")
    server.wait_targets_up()
    return str(server.url)
