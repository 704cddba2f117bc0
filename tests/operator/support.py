"""Helpers for the operator tests: kubectl on a test namespace, the test-controlled metrics
endpoint, MLflow versions, and the in-process operator."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "recommendermodels.movierec.io.yaml"
MANIFESTS = REPO / "manifests"
CHART = REPO / "charts" / "movierec"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding")


def wait_for(
    what: str, probe: Callable[[], Any], *, timeout: float = 30, every: float = 0.2
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail the test with ``what`` if not."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@dataclass
class Cluster:
    """kubectl on one test namespace of the real API server."""

    kubeconfig: Path
    namespace: str
    kubectl_path: str

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout if check else done.stdout + done.stderr

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.kubectl("get", kind, name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def read(self, kind: str, name: str) -> dict[str, Any] | None:
        """Like :meth:`get` through the Python client: fast enough to catch every rollout step."""
        from kubernetes.client.exceptions import ApiException

        api = self._api()
        paths = {
            "rm": f"/apis/movierec.io/v1alpha1/namespaces/{self.namespace}/recommendermodels",
            "deployment": f"/apis/apps/v1/namespaces/{self.namespace}/deployments",
            "configmap": f"/api/v1/namespaces/{self.namespace}/configmaps",
        }
        try:
            data, _, _ = api.call_api(
                f"{paths[kind]}/{name}",
                "GET",
                auth_settings=["BearerToken"],
                response_type="object",
                _return_http_data_only=False,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return data

    def _api(self) -> Any:
        if not hasattr(self, "_client"):
            import urllib3
            from kubernetes import config

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            self._client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._client

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps(obj))


@dataclass
class TrackBehaviour:
    """How one (track, model version) behaves: traffic rate and metric values."""

    requests_per_second: float = 60.0
    error_ratio: float = 0.0
    latency_seconds: float = 0.05
    online_rmse: float = 0.9
    engagement: float = 0.3
    disparity: float = 0.9
    online_requests: float = 1000.0


@dataclass
class MetricsSource:
    """A prometheus-client endpoint in the test process with the metric names of ARCHITECTURE.md
    section 8; a thread turns each track's behaviour into counter increments every 100 ms."""

    port: int = 0
    behaviours: dict[tuple[str, str], TrackBehaviour] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            start_http_server,
        )

        reg = CollectorRegistry()
        labels = ["component", "track", "model_version", "status"]
        arm = ["track", "model_version"]
        self.requests = Counter("movierec_requests", "requests", labels, registry=reg)
        # the recommender's labels and buckets (web/metrics.py): status, and 0.8 s
        self.latency = Histogram(
            "movierec_request_latency_seconds",
            "latency",
            labels,
            registry=reg,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.5),
        )
        # the online evaluator's gauges (online/exporter.py)
        self.rmse = Gauge("movierec_online_rmse", "rmse", arm, registry=reg)
        self.rmse_n = Gauge("movierec_online_rmse_samples", "n", arm, registry=reg)
        self.engagement = Gauge("movierec_engagement_rate", "e", [*arm, "group"], registry=reg)
        self.engagement_n = Gauge("movierec_engagement_samples", "n", arm, registry=reg)
        self.online_requests = Gauge("movierec_online_requests", "n", arm, registry=reg)
        self.disparity = Gauge(
            "movierec_fairness_disparity_ratio", "d", ["attribute", *arm], registry=reg
        )
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=reg)
        self.port = self.server.server_port
        self._worker = threading.Thread(target=self._run, daemon=True)
        self._worker.start()

    def set(self, track: str, version: str, behaviour: TrackBehaviour) -> None:
        self.behaviours[(track, version)] = behaviour

    def _run(self) -> None:
        tick = 0.1
        carry: dict[tuple[str, str], float] = {}
        while not self._stop.wait(tick):
            for (track, version), b in list(self.behaviours.items()):
                key = (track, version)
                carry[key] = carry.get(key, 0.0) + b.requests_per_second * tick
                n = int(carry[key])
                carry[key] -= n
                errors = round(n * b.error_ratio)
                common = ("recommender", track, version)
                for status, count in (("200", n - errors), ("500", errors)):
                    if count:
                        self.requests.labels(*common, status).inc(count)
                    for _ in range(count):
                        self.latency.labels(*common, status).observe(b.latency_seconds)
                self.rmse.labels(track, version).set(b.online_rmse)
                self.rmse_n.labels(track, version).set(b.online_requests)
                self.engagement.labels(track, version, "all").set(b.engagement)
                self.engagement_n.labels(track, version).set(b.online_requests)
                self.online_requests.labels(track, version).set(b.online_requests)
                self.disparity.labels("gender", track, version).set(b.disparity)

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5)
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Registry:
    """Registered versions of one freshly named model on the real MLflow server."""

    tracking_uri: str
    model_name: str

    @property
    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def register(self, count: int) -> list[str]:
        client = self.client
        run = client.create_run(experiment_id="0")
        versions = [
            str(
                client.create_model_version(
                    self.model_name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
                ).version
            )
            for _ in range(count)
        ]
        client.set_terminated(run.info.run_id)
        return versions

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(self.model_name, version).tags)

    def alias(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException:
            return None


@dataclass
class Operator:
    """Starts and stops Kopf (``kopf.testing.KopfRunner``) on the test namespace."""

    cluster: Cluster
    kubeconfig: Path
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    runner: Any = None

    health_port: int = 0

    def start(self) -> None:
        from kopf.testing import KopfRunner

        from harness.ports import free_port

        for key, value in self.env.items():
            self.monkeypatch.setenv(key, value)
        self.monkeypatch.setenv("KUBECONFIG", str(self.kubeconfig))
        # the operator bounds MLflow's HTTP calls through these; undone after the test
        for key in ("TIMEOUT", "MAX_RETRIES", "BACKOFF_FACTOR", "BACKOFF_JITTER"):
            self.monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{key}", raising=False)
        self.health_port = free_port()
        self.runner = KopfRunner(
            [
                "run",
                "-m",
                "movierec_operator.handlers",
                "--standalone",
                f"--namespace={self.cluster.namespace}",
                f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
            ],
            timeout=60,
            reraise=False,
        )
        self.runner.__enter__()

    def health(self) -> tuple[int, str]:
        """(HTTP status, body) of the operator's liveness endpoint; (0, error) when closed."""
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError as err:
            return 0, str(err)

    def exited(self, timeout: float) -> Any:
        """The CLI result once the operator stopped by itself (fails if it keeps running)."""
        assert self.runner is not None
        result = self.runner.future.result(timeout=timeout)
        runner, self.runner = self.runner, None
        runner.__exit__(None, None, None)
        return result

    def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            runner.__exit__(None, None, None)
            assert runner.exit_code == 0, runner.output

    @property
    def running(self) -> bool:
        return self.runner is not None


def chart_rbac(namespace: str, release: str = "movierec") -> list[dict[str, Any]]:
    """The operator's ServiceAccount, Role and RoleBinding as the chart renders them for a
    release in ``namespace`` (the chart is the one way to install the operator)."""
    import yaml

    from harness.helm_build import ensure_installed

    out = subprocess.run(
        [str(ensure_installed()), "template", release, str(CHART), "--namespace", namespace],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    rbac = [
        d
        for d in docs
        if d["kind"] in RBAC_KINDS
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "operator"
    ]
    assert sorted(d["kind"] for d in rbac) == sorted(RBAC_KINDS), [d["kind"] for d in rbac]
    return rbac


def install_rbac(cluster: Cluster, *, release: str = "movierec") -> str:
    """Apply the chart's operator RBAC in the test namespace; the ServiceAccount's name."""
    docs = chart_rbac(cluster.namespace, release)
    for doc in docs:
        cluster.apply(doc)
    (account,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    return account


def sa_kubeconfig(cluster: Cluster, tmp_path: Path, *, rbac: bool = True) -> Path:
    """A kubeconfig for the operator's ServiceAccount (the chart's RBAC, nothing more; with
    ``rbac=False`` the ServiceAccount alone, bound to nothing)."""
    if rbac:
        account = install_rbac(cluster)
    else:
        (account,) = [
            d["metadata"]["name"]
            for d in chart_rbac(cluster.namespace)
            if d["kind"] == "ServiceAccount"
        ]
        cluster.kubectl("create", "serviceaccount", account)
    token = cluster.kubectl("create", "token", account, "--duration=1h").strip()
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    server = admin["clusters"][0]["cluster"]["server"]
    path = tmp_path / "operator-kubeconfig.json"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "operator",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "operator",
                        "context": {
                            "cluster": "c",
                            "user": "operator",
                            "namespace": cluster.namespace,
                        },
                    }
                ],
            }
        )
    )
    return path
