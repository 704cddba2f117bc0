"""The CRD on the real API server: it installs, `kubectl get rm` shows the printer columns, invalid
objects are rejected with clear messages, the chart's operator Role grants exactly what is needed
in whatever namespace it is installed, and operator-built pods pass `restricted` admission."""

from __future__ import annotations

import json

import pytest
from movierec_operator import builders

from tests.operator.support import MANIFESTS, Cluster, chart_rbac, install_rbac

pytestmark = pytest.mark.k8s


def test_crd_is_established_and_served(cluster: Cluster) -> None:
    crd = json.loads(cluster.kubectl("get", "crd", "recommendermodels.movierec.io", "-o", "json"))
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["rm"]
    resources = cluster.kubectl("api-resources", "--api-group=movierec.io", "-o", "name")
    assert "recommendermodels.movierec.io" in resources


def test_defaults_are_applied_by_the_api_server(cluster: Cluster) -> None:
    cluster.apply(
        {
            "apiVersion": "movierec.io/v1alpha1",
            "kind": "RecommenderModel",
            "metadata": {"name": "defaults"},
            "spec": {"modelName": "movies", "followAlias": "challenger"},
        }
    )
    spec = cluster.get("rm", "defaults")["spec"]  # type: ignore[index]
    assert spec["rollout"] == {
        "steps": [10, 25, 50, 100],
        "interval": "2m",
        "maxFailedChecks": 2,
        "minSamples": 200,
        "inconclusiveDeadline": "1h",
    }
    assert (spec["replicas"], spec["forcePromote"]) == (2, False)


def test_kubectl_get_rm_shows_the_printer_columns(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(MANIFESTS / "examples" / "pinned-version.yaml"))
    cluster.kubectl(
        "patch",
        "rm",
        "movies",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "phase": "Progressing",
                    "stableVersion": "6",
                    "canaryVersion": "7",
                    "canaryWeight": 25,
                }
            }
        ),
    )
    header, row = cluster.kubectl("get", "rm").splitlines()
    assert header.split() == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "AGE"]
    assert row.split()[:5] == ["movies", "Progressing", "6", "7", "25"]
    wide = cluster.kubectl("get", "recommendermodels", "-o", "wide").splitlines()[0]
    assert "MESSAGE" in wide.split()


def test_every_example_is_accepted(cluster: Cluster) -> None:
    examples = sorted((MANIFESTS / "examples").glob("*.yaml"))
    assert examples
    for example in examples:
        cluster.kubectl("apply", "--dry-run=server", "-f", str(example))
    # the chart is the one way to install the operator: no second set of manifests to drift
    assert not (MANIFESTS / "operator").exists()


def test_operator_built_pods_are_admitted_where_restricted_is_enforced(cluster: Cluster) -> None:
    cluster.kubectl(
        "label", "namespace", cluster.namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    owner = {
        "apiVersion": "movierec.io/v1alpha1",
        "kind": "RecommenderModel",
        "metadata": {"name": "movies", "namespace": cluster.namespace, "uid": "0000"},
    }
    template = builders.build_deployment(
        owner,
        track="stable",
        model_name="movies",
        version="1",
        image="ghcr.io/movierec/movierec:0.1.0",
        replicas=1,
        tracking_uri="http://mlflow:5000",
    )["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, **template}
    pod["metadata"] = {**template["metadata"], "name": "probe"}
    out = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(pod), check=False
    )
    assert "created (server dry run)" in out and "Warning" not in out, out


INVALID = [
    ({"modelName": "movies"}, "set exactly one of spec.version"),
    (
        {"modelName": "movies", "version": "7", "followAlias": "challenger"},
        "set exactly one of spec.version",
    ),
    ({"modelName": "movies", "version": "seven"}, "spec.version"),
    (
        {"modelName": "movies", "version": "7", "rollout": {"steps": [50, 25]}},
        "spec.rollout.steps must be strictly increasing",
    ),
    ({"modelName": "movies", "version": "7", "rollout": {"steps": [10, 10]}}, "Duplicate value"),
    (
        {"modelName": "movies", "version": "7", "rollout": {"steps": [10, 150]}},
        "less than or equal to 100",
    ),
    (
        {"modelName": "movies", "version": "7", "rollout": {"interval": "two minutes"}},
        "spec.rollout.interval",
    ),
    ({"modelName": "movies", "version": "7", "replicas": 0}, "spec.replicas"),
    (
        {"modelName": "movies", "version": "7", "analysis": [{"name": "success-rate"}]},
        "needs at least one bound",
    ),
    (
        {"modelName": "movies", "version": "7", "analysis": [{"name": "custom", "max": 1}]},
        "a check without a query must be a built-in one",
    ),
    (
        {"modelName": "movies", "version": "7", "rollout": {"inconclusiveDeadline": "1 hour"}},
        "spec.rollout.inconclusiveDeadline",
    ),
]


@pytest.mark.parametrize(("spec", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_models_are_rejected_with_a_clear_message(
    cluster: Cluster, spec: dict, message: str
) -> None:
    body = {
        "apiVersion": "movierec.io/v1alpha1",
        "kind": "RecommenderModel",
        "metadata": {"name": "invalid"},
        "spec": spec,
    }
    out = cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body), check=False)
    assert "is invalid" in out and message in out, out
    assert cluster.get("rm", "invalid") is None


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("watch", "recommendermodels.movierec.io", True),
        ("patch", "recommendermodels.movierec.io/status", True),
        ("create", "deployments.apps", True),
        ("patch", "services", True),
        ("patch", "configmaps", True),
        ("create", "events", True),
        ("delete", "deployments.apps", False),
        ("delete", "recommendermodels.movierec.io", False),
        ("get", "secrets", False),
        ("list", "pods", False),
        ("create", "roles.rbac.authorization.k8s.io", False),
    ],
)
def test_role_is_least_privilege(cluster: Cluster, verb: str, resource: str, allowed: bool) -> None:
    account = install_rbac(cluster)  # what the chart installs, in this (random) namespace
    who = f"--as=system:serviceaccount:{cluster.namespace}:{account}"
    answer = cluster.kubectl("auth", "can-i", verb, resource, who, check=False).strip()
    assert answer.splitlines()[0] == ("yes" if allowed else "no")
    # and nothing beyond this namespace
    other = cluster.kubectl(
        "auth", "can-i", verb, resource, who, "--namespace=default", check=False
    ).strip()
    assert other.splitlines()[0] == "no"


def test_chart_rbac_binds_the_release_namespace() -> None:
    # the RoleBinding's subject used to be fixed to `movierec`: 403s anywhere else
    docs = chart_rbac("team-a", release="recs")
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "team-a"}
    ]
