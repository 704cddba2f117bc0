"""`movierec operator` (the image's operator command) runs the Kopf operator: healthy on its
liveness endpoint, reconciling RecommenderModels in its namespace."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from movierec.process import ServiceProcess, free_port, http_ok
from tests.operator.support import Cluster, wait_for

pytestmark = pytest.mark.k8s


def test_movierec_operator_lists_its_subcommand() -> None:
    from movierec.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["operator", "-n", "team-a", "--liveness=http://127.0.0.1:1/h"])
    assert (args.namespace, args.liveness) == (["team-a"], "http://127.0.0.1:1/h")
    assert parser.parse_args(["operator"]).liveness == "http://0.0.0.0:8080/healthz"


def test_movierec_operator_runs_the_operator(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    movierec = shutil.which("movierec", path=str(Path(sys.executable).parent))
    assert movierec, "the movierec console script is installed next to this Python"
    mlflow_port = free_port()  # nothing listens there: MLflow is down
    env = {
        **os.environ,
        "MOVIEREC_OPERATOR_KUBECONFIG": str(cluster.kubeconfig),
        "MOVIEREC_OPERATOR_NAMESPACE": cluster.namespace,
        "MOVIEREC_OPERATOR_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "MOVIEREC_OPERATOR_METRICS_PORT": "0",
        "MOVIEREC_OPERATOR_TIMER_INTERVAL_SECONDS": "1",
    }
    proc = ServiceProcess(
        "movierec operator",
        [movierec, "operator", f"--liveness=http://127.0.0.1:{port}/healthz"],
        log_path=tmp_path / "operator.log",
        marker="",
        env=env,
    )
    proc.start()
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        proc.wait_ready(lambda: http_ok(url), timeout=60, what=url)
        cluster.apply(
            {
                "apiVersion": "movierec.io/v1alpha1",
                "kind": "RecommenderModel",
                "metadata": {"name": "cli"},
                "spec": {"modelName": "movies", "version": "1"},
            }
        )
        wait_for(
            "the operator's status on the object",
            lambda: "MLflowUnavailable" in json.dumps(cluster.read("rm", "cli") or {}),
            timeout=60,
        )
        cluster.kubectl("delete", "rm", "cli", "--timeout=30s")  # finalizer released
    finally:
        proc.stop()


def test_namespaces_on_the_command_line_are_the_ones_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from movierec_operator.__main__ import kopf_argv

    monkeypatch.delenv("MOVIEREC_OPERATOR_NAMESPACE", raising=False)
    argv = kopf_argv(["--namespace=team-a", "--namespace=team-b"])
    assert argv[:4] == ["run", "-m", "movierec_operator.handlers", "--standalone"]
    assert os.environ["MOVIEREC_OPERATOR_NAMESPACE"] == "team-a,team-b"
    monkeypatch.setenv("MOVIEREC_OPERATOR_NAMESPACE", "prod")
    argv = kopf_argv([])
    assert "--namespace=prod" in argv and "--liveness=http://0.0.0.0:8080/healthz" in argv
