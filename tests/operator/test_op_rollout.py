"""Rollouts end to end: the operator in-process (KopfRunner) against the real API server, a real
Prometheus scraping metrics this test controls, and a real MLflow server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.operator.support import (
    Cluster,
    MetricsSource,
    Operator,
    Registry,
    TrackBehaviour,
    sa_kubeconfig,
    wait_for,
)

pytestmark = [pytest.mark.k8s, pytest.mark.prometheus, pytest.mark.mlflow]

HEALTHY = TrackBehaviour()
FAILING = TrackBehaviour(error_ratio=0.5)
THIN = TrackBehaviour(requests_per_second=2)
NAME = "movies"


def model(registry: Registry, **spec: Any) -> dict[str, Any]:
    rollout = {
        "steps": [20, 50, 100],
        "interval": "2s",
        "analysisWindow": "5s",
        "minSamples": 50,
        "maxFailedChecks": 2,
    }
    rollout.update(spec.pop("rollout", {}))
    return {
        "apiVersion": "movierec.io/v1alpha1",
        "kind": "RecommenderModel",
        "metadata": {"name": NAME},
        "spec": {"modelName": registry.model_name, "replicas": 1, "rollout": rollout, **spec},
    }


def snapshot(cluster: Cluster) -> dict[str, Any]:
    """What a person would look at: status, flag weight, and both Deployments."""
    rm = cluster.read("rm", NAME) or {}
    cm = cluster.read("configmap", f"{NAME}-flags")
    weight = flag_version = None
    if cm:
        flag = json.loads(cm["data"]["flags.json"])["flags"]["movierec-track"]
        weight = flag["fallthrough"]["rollout"]["variations"][1]["weight"] // 1000
        flag_version = flag["version"]
    deps = {}
    for track in ("stable", "canary"):
        dep = cluster.read("deployment", f"{NAME}-{track}")
        deps[track] = (
            (dep["metadata"]["labels"]["movierec.io/model-version"], dep["spec"]["replicas"])
            if dep
            else None
        )
    after = cluster.read("rm", NAME) or {}
    # the operator may act between our reads: only a snapshot with the same object before and
    # after is a consistent view of one moment
    version = rm.get("metadata", {}).get("resourceVersion")
    consistent = version == after.get("metadata", {}).get("resourceVersion")
    return {
        "status": rm.get("status", {}),
        "flag_weight": weight,
        "flag_version": flag_version,
        "consistent": consistent,
        **deps,
    }


def watch_until(
    cluster: Cluster, done: Callable[[dict[str, Any]], bool], *, timeout: float = 90
) -> list[dict[str, Any]]:
    """Snapshots every 200 ms until ``done`` holds for one; fails with the last one otherwise."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = snapshot(cluster)
        seen.append(snap)
        if done(snap):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"rollout did not get there in {timeout}s; last: {seen[-1]}")


def first_appearances(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


def events(cluster: Cluster) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "events", f"--field-selector=involvedObject.name={NAME}", "-o", "json"
    )
    return json.loads(out)["items"]


def phase_is(phase: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    def check(snap: dict[str, Any]) -> bool:
        status = snap["status"]
        return status.get("phase") == phase and all(status.get(k) == v for k, v in fields.items())

    return check


def test_healthy_alias_version_walks_every_step_and_is_promoted(
    *,
    cluster: Cluster,
    registry: Registry,
    metrics_source: MetricsSource,
    scraping_prometheus: str,
    operator_factory: Callable[..., Operator],
    tmp_path: Path,
) -> None:
    v1, v2 = registry.register(2)
    registry.client.set_registered_model_alias(registry.model_name, "challenger", v1)
    metrics_source.set("stable", v1, HEALTHY)
    metrics_source.set("canary", v2, HEALTHY)
    # run as the chart's operator ServiceAccount: its Role must be enough for a whole rollout
    op = operator_factory(
        prometheus_url=scraping_prometheus, kubeconfig=sa_kubeconfig(cluster, tmp_path)
    )
    op.start()
    cluster.apply(model(registry, followAlias="challenger"))

    first = watch_until(cluster, phase_is("Stable", stableVersion=v1), timeout=30)[-1]
    assert first["stable"] == (v1, 1) and first["canary"] == (v1, 0) and first["flag_weight"] == 0
    for svc in ("stable", "canary"):
        assert cluster.get("service", f"{NAME}-{svc}") is not None

    registry.client.set_registered_model_alias(registry.model_name, "challenger", v2)  # polled
    seen = watch_until(cluster, phase_is("Stable", stableVersion=v2))

    progressing = [s for s in seen if s["status"].get("phase") == "Progressing"]
    assert first_appearances([s["status"]["canaryWeight"] for s in progressing]) == [20, 50, 100]
    assert first_appearances([s["flag_weight"] for s in seen]) == [0, 20, 50, 100, 0]
    # every weight change came with a higher flag version: the router's SDK sees each one
    changes = first_appearances([(s["flag_weight"], s["flag_version"]) for s in seen])
    versions = [v for _, v in changes]
    assert len(changes) == 5 and versions == sorted(set(versions)), changes
    consistent = [s for s in progressing if s["consistent"]]
    assert {s["status"]["canaryWeight"] for s in consistent} == {20, 50, 100}
    for snap in consistent:
        assert snap["flag_weight"] == snap["status"]["canaryWeight"]
        assert snap["status"]["canaryVersion"] == v2
        assert snap["canary"] == (v2, 1)  # the canary serves v2 at every step
        assert snap["stable"] == (v1, 1)
    final = seen[-1]
    assert final["stable"] == (v2, 1) and final["canary"][1] == 0 and final["flag_weight"] == 0
    status = final["status"]
    assert status["forcePromoted"] is False and "canaryVersion" not in status
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Promoted"]["status"], conditions["Promoted"]["reason"]) == (
        "True",
        "Promoted",
    )
    assert conditions["Ready"]["status"] == "True"
    assert {r["verdict"] for r in status["lastAnalysis"].values()} == {"pass"}
    assert set(status["lastAnalysis"]) == {
        "success-rate",
        "latency-p95-seconds",
        "online-rmse",
        "engagement",
        "fairness-disparity-ratio",
    }
    assert status["lastAnalysis"]["success-rate"]["value"] == pytest.approx(1.0)

    assert registry.alias("champion") == v2
    tags = registry.tags(v2)
    assert tags["movierec.rollout.outcome"] == "promoted"
    assert "passed every check" in tags["movierec.rollout.reason"]
    assert tags["movierec.rollout.time"].endswith("Z")
    reasons = [e["reason"] for e in events(cluster)]
    for reason in ("Initialized", "CanaryStarted", "CanaryStepUp", "Promoted"):
        assert reason in reasons


def test_failing_canary_is_rolled_back_with_a_reason_and_an_event(
    cluster: Cluster,
    registry: Registry,
    metrics_source: MetricsSource,
    scraping_prometheus: str,
    operator_factory: Callable[..., Operator],
) -> None:
    v1, v2 = registry.register(2)
    metrics_source.set("stable", v1, HEALTHY)
    metrics_source.set("canary", v2, FAILING)
    operator_factory(prometheus_url=scraping_prometheus).start()
    cluster.apply(model(registry, version=v1))
    watch_until(cluster, phase_is("Stable", stableVersion=v1), timeout=30)
    cluster.apply(model(registry, version=v2))

    seen = watch_until(cluster, phase_is("RolledBack"))
    status = seen[-1]["status"]
    assert max(s["status"].get("canaryWeight", 0) for s in seen) == 20  # never stepped up
    assert status["stableVersion"] == v1 and status["failedChecks"] == 2
    assert status["rolledBackVersion"] == v2
    assert "success-rate" in status["message"] and "< min 0.99" in status["message"]
    assert status["lastAnalysis"]["success-rate"]["verdict"] == "fail"
    assert status["lastAnalysis"]["success-rate"]["value"] == pytest.approx(0.5, abs=0.1)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Progressing"]["reason"] == "RolledBack"
    assert "forcePromote" in conditions["Progressing"]["message"]  # what a person can do
    assert seen[-1]["flag_weight"] == 0 and seen[-1]["canary"][1] == 0
    assert seen[-1]["stable"] == (v1, 1)

    rolled = wait_for(
        "the RolledBack event",
        lambda: [e for e in events(cluster) if e["reason"] == "RolledBack"],
        timeout=10,
    )
    assert rolled and rolled[0]["type"] == "Warning" and "success-rate" in rolled[0]["message"]
    assert registry.tags(v2)["movierec.rollout.outcome"] == "rolled-back"
    assert registry.alias("champion") is None

    time.sleep(4)  # more than an interval: the rolled-back version is not tried again
    assert snapshot(cluster)["status"]["phase"] == "RolledBack"

    # deleting the model removes every child through owner references (no finalizer left)
    cluster.kubectl("delete", "rm", NAME, "--timeout=30s")
    wait_for(
        "children garbage-collected",
        lambda: all(
            cluster.get(kind, name) is None
            for kind, name in (
                ("deployment", f"{NAME}-stable"),
                ("deployment", f"{NAME}-canary"),
                ("service", f"{NAME}-stable"),
                ("configmap", f"{NAME}-flags"),
            )
        ),
        timeout=60,
    )


def test_thin_data_holds_and_never_judges(
    cluster: Cluster,
    registry: Registry,
    metrics_source: MetricsSource,
    scraping_prometheus: str,
    operator_factory: Callable[..., Operator],
) -> None:
    v1, v2 = registry.register(2)
    metrics_source.set("stable", v1, HEALTHY)
    metrics_source.set("canary", v2, TrackBehaviour(requests_per_second=2, error_ratio=0.5))
    operator_factory(prometheus_url=scraping_prometheus).start()
    cluster.apply(model(registry, version=v1))
    watch_until(cluster, phase_is("Stable", stableVersion=v1), timeout=30)
    cluster.apply(model(registry, version=v2))

    watch_until(cluster, phase_is("Holding"), timeout=30)
    held: list[dict[str, Any]] = []
    deadline = time.monotonic() + 8  # four intervals: still holding, still at 20 %
    while time.monotonic() < deadline:
        held.append(snapshot(cluster))
        time.sleep(0.5)
    assert {s["status"]["phase"] for s in held} == {"Holding"}
    assert {s["status"]["canaryWeight"] for s in held} == {20}
    assert {s["flag_weight"] for s in held} == {20}
    status = held[-1]["status"]
    assert status["failedChecks"] == 0
    success = status["lastAnalysis"]["success-rate"]
    assert success["verdict"] == "inconclusive" and success["samples"] < 50
    assert "minSamples 50" in success["detail"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Progressing"] == "Holding"

    # enough healthy traffic later: the hold ends and the canary moves on
    metrics_source.set("canary", v2, HEALTHY)
    watch_until(cluster, lambda s: s["status"].get("canaryWeight") == 50, timeout=40)


def test_inconclusive_past_the_deadline_is_rolled_back_with_the_reason(
    cluster: Cluster,
    registry: Registry,
    metrics_source: MetricsSource,
    scraping_prometheus: str,
    operator_factory: Callable[..., Operator],
) -> None:
    v1, v2 = registry.register(2)
    metrics_source.set("stable", v1, HEALTHY)
    metrics_source.set("canary", v2, THIN)  # healthy, but never 50 requests in a 5 s window
    operator_factory(prometheus_url=scraping_prometheus).start()
    cluster.apply(model(registry, version=v1))
    watch_until(cluster, phase_is("Stable", stableVersion=v1), timeout=30)
    cluster.apply(model(registry, version=v2, rollout={"inconclusiveDeadline": "8s"}))

    seen = watch_until(cluster, phase_is("RolledBack"), timeout=60)
    holding = [s["status"] for s in seen if s["status"].get("phase") == "Holding"]
    assert holding and all(h.get("inconclusiveSince") for h in holding)
    assert len({h["inconclusiveSince"] for h in holding}) == 1  # counts from the step's start
    status = seen[-1]["status"]
    message = status["message"]
    assert message.startswith("Inconclusive: success-rate had "), message
    assert "/50 samples" in message and message.endswith("(inconclusiveDeadline 8s)"), message
    assert status["rolledBackVersion"] == v2 and status["failedChecks"] == 0
    assert "inconclusiveSince" not in status
    assert max(s["status"].get("canaryWeight", 0) for s in seen) == 20
    assert seen[-1]["flag_weight"] == 0 and seen[-1]["stable"] == (v1, 1)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert "Too little data to judge" in conditions["Progressing"]["message"]
    tags = wait_for(
        "the rolled-back tag",
        lambda: "movierec.rollout.time" in (t := registry.tags(v2)) and t,  # the last one set
        timeout=10,
    )
    assert tags["movierec.rollout.outcome"] == "rolled-back"
    assert tags["movierec.rollout.reason"] == message
    rolled = [e for e in events(cluster) if e["reason"] == "RolledBack"]
    assert rolled and rolled[0]["message"] == message


def test_restarted_operator_resumes_where_it_was(
    cluster: Cluster,
    registry: Registry,
    metrics_source: MetricsSource,
    scraping_prometheus: str,
    operator_factory: Callable[..., Operator],
) -> None:
    v1, v2 = registry.register(2)
    metrics_source.set("stable", v1, HEALTHY)
    metrics_source.set("canary", v2, HEALTHY)
    first = operator_factory(prometheus_url=scraping_prometheus)
    first.start()
    cluster.apply(model(registry, version=v1))
    watch_until(cluster, phase_is("Stable", stableVersion=v1), timeout=30)
    cluster.apply(model(registry, version=v2))
    watch_until(cluster, lambda s: s["status"].get("canaryWeight") == 50)
    first.stop()

    frozen = snapshot(cluster)
    time.sleep(4)  # longer than an interval: with no operator, nothing moves
    assert snapshot(cluster) == frozen and frozen["consistent"]
    assert frozen["status"]["phase"] == "Progressing" and frozen["flag_weight"] == 50

    operator_factory(prometheus_url=scraping_prometheus).start()
    seen = watch_until(cluster, phase_is("Stable", stableVersion=v2))
    assert first_appearances([s["flag_weight"] for s in seen]) == [50, 100, 0]  # no restart at 20
    assert registry.alias("champion") == v2


def test_force_promote_skips_analysis_and_is_recorded(
    cluster: Cluster,
    registry: Registry,
    metrics_source: MetricsSource,
    scraping_prometheus: str,
    operator_factory: Callable[..., Operator],
) -> None:
    v1, v2 = registry.register(2)
    metrics_source.set("stable", v1, HEALTHY)
    metrics_source.set("canary", v2, TrackBehaviour(error_ratio=1.0))  # would fail every check
    operator_factory(prometheus_url=scraping_prometheus).start()
    cluster.apply(model(registry, version=v1))
    watch_until(cluster, phase_is("Stable", stableVersion=v1), timeout=30)
    cluster.apply(model(registry, version=v2, forcePromote=True))

    final = watch_until(cluster, phase_is("Stable", stableVersion=v2), timeout=30)[-1]
    status = final["status"]
    assert status["forcePromoted"] is True
    promoted = {c["type"]: c for c in status["conditions"]}["Promoted"]
    assert (promoted["status"], promoted["reason"]) == ("True", "ForcePromoted")
    assert final["stable"] == (v2, 1) and final["flag_weight"] == 0
    assert registry.alias("champion") == v2
    tags = registry.tags(v2)
    assert tags["movierec.rollout.outcome"] == "force-promoted"
    assert "forcePromote" in tags["movierec.rollout.reason"]
    forced = wait_for(
        "the ForcePromoted event",
        lambda: [e for e in events(cluster) if e["reason"] == "ForcePromoted"],
        timeout=10,
    )
    assert forced and forced[0]["type"] == "Warning"
