"""What a person sees when something outside the operator is wrong: MLflow down, an image that is
not allowed, pods that never become available, RBAC that does not let the operator watch. Each
shows in `kubectl get rm` (phase, message), a condition and a Warning Event, or in the operator's
health endpoint, against the real API server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.operator.support import Cluster, Operator, Registry, sa_kubeconfig, wait_for

pytestmark = pytest.mark.k8s
NAME = "movies"


def model(model_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "movierec.io/v1alpha1",
        "kind": "RecommenderModel",
        "metadata": {"name": NAME},
        "spec": {"modelName": model_name, "replicas": 1, **spec},
    }


def status(cluster: Cluster) -> dict[str, Any]:
    return (cluster.read("rm", NAME) or {}).get("status") or {}


def warnings(cluster: Cluster, reason: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "events", f"--field-selector=involvedObject.name={NAME}", "-o", "json"
    )
    return [e for e in json.loads(out)["items"] if e["reason"] == reason and e["type"] == "Warning"]


def conditions(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st.get("conditions") or []}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_mlflow_down_shows_in_status_and_events(
    cluster: Cluster, operator_factory: Callable[..., Operator], unused_prometheus: str
) -> None:
    mlflow = f"http://127.0.0.1:{closed_port()}"
    operator_factory(
        prometheus_url=unused_prometheus,
        env={"MOVIEREC_OPERATOR_MLFLOW_TRACKING_URI": mlflow},
    ).start()
    cluster.apply(model("movies", version="1"))

    reason = f"MLflowUnavailable: {mlflow}: ConnectionRefusedError"
    st = wait_for("the reason in status", lambda: status(cluster).get("message") == reason and
                  status(cluster), timeout=30)  # fmt: skip
    assert st["phase"] == "Holding"
    ready = conditions(st)["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False", "MLflowUnavailable", reason,
    )  # fmt: skip
    (event,) = wait_for("a Warning Event", lambda: warnings(cluster, "MLflowUnavailable"))
    assert event["message"] == reason
    # `kubectl get rm` shows it without -o yaml
    row = cluster.kubectl("get", "rm", NAME, "-o", "wide").splitlines()[1]
    assert "Holding" in row and "MLflowUnavailable" in row


def test_an_image_outside_the_allowed_prefixes_is_refused(
    cluster: Cluster,
    registry: Registry,
    operator_factory: Callable[..., Operator],
    unused_prometheus: str,
) -> None:
    (v1,) = registry.register(1)
    operator_factory(
        prometheus_url=unused_prometheus,
        env={"MOVIEREC_OPERATOR_ALLOWED_IMAGE_PREFIXES": "ghcr.io/movierec/,movierec"},
    ).start()
    cluster.apply(model(registry.model_name, version=v1, image="docker.io/evil/miner:1"))

    st = wait_for("phase Failed", lambda: status(cluster).get("phase") == "Failed" and
                  status(cluster), timeout=30)  # fmt: skip
    assert "spec.image 'docker.io/evil/miner:1' is not allowed" in st["message"]
    assert "ghcr.io/movierec/, movierec" in st["message"]
    assert conditions(st)["Ready"]["reason"] == "Failed"
    assert wait_for("a Warning Event", lambda: warnings(cluster, "ImageNotAllowed"))
    assert cluster.get("deployment", f"{NAME}-stable") is None  # nothing ran

    # an allowed image is taken (the same object, fixed)
    cluster.apply(model(registry.model_name, version=v1, image="ghcr.io/movierec/movierec:0.2"))
    wait_for("phase Stable", lambda: status(cluster).get("phase") == "Stable", timeout=30)
    dep = cluster.get("deployment", f"{NAME}-stable")
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/movierec/movierec:0.2"
    )


def test_pods_that_never_become_available_hold_then_fail(
    cluster: Cluster,
    registry: Registry,
    operator_factory: Callable[..., Operator],
    unused_prometheus: str,
) -> None:
    (v1,) = registry.register(1)
    operator_factory(
        prometheus_url=unused_prometheus,
        env={
            "MOVIEREC_OPERATOR_REQUIRE_AVAILABLE_DEPLOYMENTS": "true",
            "MOVIEREC_OPERATOR_DEPLOYMENT_DEADLINE_SECONDS": "8",
            # an image no node can pull: its pods never become available
            "MOVIEREC_OPERATOR_IMAGE": "movierec.invalid/none:0",
        },
    ).start()
    cluster.apply(model(registry.model_name, version=v1))

    held = wait_for(
        "DeploymentUnavailable in status",
        lambda: "DeploymentUnavailable" in status(cluster).get("message", "") and status(cluster),
        timeout=30,
    )
    assert held["phase"] == "Progressing"  # never "Stable" with 0 pods
    assert held["stableVersion"] == v1
    ready = conditions(held)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "DeploymentUnavailable")
    assert "movies-stable" in ready["message"]
    start = time.monotonic()
    failed = wait_for("phase Failed after the deadline",
                      lambda: status(cluster).get("phase") == "Failed" and status(cluster),
                      timeout=40)  # fmt: skip
    assert time.monotonic() - start < 35
    assert "0/1 pods available" in failed["message"]
    assert "not available within the deadline of 8s" in failed["message"]
    time.sleep(3)  # several ticks: it stays Failed, and says so once (no Event per tick)
    assert status(cluster)["phase"] == "Failed"
    assert 1 <= len(warnings(cluster, "DeploymentUnavailable")) <= 2  # after the grace, at failure


def test_operator_without_rbac_fails_loudly(
    cluster: Cluster,
    operator_factory: Callable[..., Operator],
    unused_prometheus: str,
    tmp_path: Path,
) -> None:
    # a ServiceAccount bound to nothing here: what a RoleBinding naming another namespace gives
    op = operator_factory(
        prometheus_url=unused_prometheus, kubeconfig=sa_kubeconfig(cluster, tmp_path, rbac=False)
    )
    op.start()
    result = op.exited(timeout=60)
    assert result.exit_code != 0
    text = f"{result.output}\n{result.exception}"
    assert "cannot list recommendermodels.movierec.io" in text
    assert f"namespace {cluster.namespace!r}" in text and "403" in text


def test_health_fails_when_the_operator_loses_its_rbac(
    cluster: Cluster,
    operator_factory: Callable[..., Operator],
    unused_prometheus: str,
    tmp_path: Path,
) -> None:
    op = operator_factory(
        prometheus_url=unused_prometheus, kubeconfig=sa_kubeconfig(cluster, tmp_path)
    )
    op.start()
    code, body = wait_for("healthy", lambda: (h := op.health())[0] == 200 and h, timeout=30)
    assert json.loads(body) == {"watch": "ok"}
    cluster.kubectl("delete", "rolebinding", "--all")
    code, body = wait_for("unhealthy", lambda: (h := op.health())[0] == 500 and h, timeout=40)
    assert code == 500
