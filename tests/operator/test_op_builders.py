"""Pure builders: children carry owner references and labels; the flag data is what the router's
LaunchDarkly SDK evaluates (checked with the real SDK, offline, from a file)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from movierec_operator import builders, constants

OWNER: dict[str, Any] = {
    "apiVersion": "movierec.io/v1alpha1",
    "kind": "RecommenderModel",
    "metadata": {"name": "movies", "namespace": "prod", "uid": "uid-1"},
}


def _owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    (ref,) = obj["metadata"]["ownerReferences"]
    return ref


def test_deployment_sends_provenance_only_when_given_kafka() -> None:
    def env(**kwargs: Any) -> dict[str, str]:
        dep = builders.build_deployment(
            OWNER,
            track="stable",
            model_name="movies",
            version="3",
            image="img:1",
            replicas=1,
            tracking_uri="http://mlflow:5000",
            **kwargs,
        )
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e["value"] for e in container["env"]}

    assert "MOVIEREC_RECOMMENDER_KAFKA_BOOTSTRAP" not in env()
    given = env(kafka_bootstrap="kafka.prod.svc:9092", provenance_topic="served")
    assert given["MOVIEREC_RECOMMENDER_KAFKA_BOOTSTRAP"] == "kafka.prod.svc:9092"
    assert given["MOVIEREC_RECOMMENDER_PROVENANCE_TOPIC"] == "served"


def test_deployment_serves_the_version_on_its_track() -> None:
    dep = builders.build_deployment(
        OWNER,
        track="canary",
        model_name="movies",
        version="7",
        image="img:1",
        replicas=3,
        tracking_uri="http://mlflow:5000",
    )
    assert dep["metadata"]["name"] == "movies-canary"
    assert dep["metadata"]["namespace"] == "prod"
    assert _owner_ref(dep) == {
        "apiVersion": "movierec.io/v1alpha1",
        "kind": "RecommenderModel",
        "name": "movies",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert dep["spec"]["replicas"] == 3
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "movierec-recommender",
        "app.kubernetes.io/instance": "movies",
        "movierec.io/track": "canary",
    }
    pod = dep["spec"]["template"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["movierec.io/model-version"] == "7"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "img:1"
    assert container["imagePullPolicy"] == "IfNotPresent"
    # the image contract: ENTRYPOINT movierec, and `movierec serve` flags as the CLI has them
    assert container["command"] == ["movierec"]
    assert container["args"] == [
        "serve",
        "--model",
        "models:/movies/7",
        "--host",
        "0.0.0.0",
        "--port",
        "8082",
        "--track",
        "canary",
        "--tracking-uri",
        "http://mlflow:5000",
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MOVIEREC_TRACK": "canary",
        "MOVIEREC_MODEL_VERSION": "7",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def _deployment(**kwargs: Any) -> dict[str, Any]:
    args = {
        "track": "stable",
        "model_name": "movies",
        "version": "3",
        "image": "img:1",
        "replicas": 2,
        "tracking_uri": "http://mlflow:5000",
        **kwargs,
    }
    return builders.build_deployment(OWNER, **args)


def test_pods_satisfy_the_restricted_pod_security_standard() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # a read-only root needs one writable temp dir (gunicorn heartbeats, metrics, answer cache)
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_pods_drain_before_they_stop() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep == 5
    assert pod["terminationGracePeriodSeconds"] > sleep + 10  # gunicorn's own graceful stop


def test_image_pull_policy_is_configurable() -> None:
    (container,) = _deployment(image_pull_policy="Always")["spec"]["template"]["spec"]["containers"]
    assert container["imagePullPolicy"] == "Always"


def test_default_image_is_the_released_application_image() -> None:
    from movierec_operator.settings import Settings

    assert constants.DEFAULT_IMAGE == "ghcr.io/movierec/movierec:0.1.0"
    assert Settings().image == constants.DEFAULT_IMAGE
    assert Settings().image_pull_policy == "IfNotPresent"


def test_selector_never_depends_on_the_version() -> None:
    # Deployment selectors are immutable: a new version must patch, not fail with 422
    a, b = (
        builders.build_deployment(
            OWNER,
            track="stable",
            model_name="m",
            version=v,
            image="i",
            replicas=1,
            tracking_uri="u",
        )
        for v in ("1", "2")
    )
    assert a["spec"]["selector"] == b["spec"]["selector"]


def test_service_selects_its_track() -> None:
    svc = builders.build_service(OWNER, track="stable")
    assert svc["metadata"]["name"] == "movies-stable"
    assert svc["spec"]["selector"]["movierec.io/track"] == "stable"
    assert svc["spec"]["ports"][0]["port"] == 8082
    assert _owner_ref(svc)["uid"] == "uid-1"


@pytest.mark.parametrize("weight", [0, 10, 25, 100])
def test_flag_configmap_carries_the_weight(weight: int) -> None:
    cm = builders.build_flag_configmap(OWNER, canary_weight=weight)
    assert cm["metadata"]["name"] == "movies-flags"
    assert _owner_ref(cm)["kind"] == "RecommenderModel"
    flags = json.loads(cm["data"]["flags.json"])["flags"]
    track = flags["movierec-track"]
    assert track["on"] is True
    assert track["variations"][track["offVariation"]] == "stable"
    weights = {
        track["variations"][v["variation"]]: v["weight"]
        for v in track["fallthrough"]["rollout"]["variations"]
    }
    assert weights == {"stable": 100_000 - weight * 1000, "canary": weight * 1000}
    assert track["salt"] == constants.FLAG_SALT
    kill = flags["movierec-kill-switch"]
    assert kill["variations"] == [False, True] and kill["fallthrough"] == {"variation": 0}


def test_flag_data_rejects_weights_outside_0_to_100() -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        builders.build_flag_data(101)


GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "flagdata"


@pytest.mark.parametrize(
    "golden", sorted(GOLDEN.glob("canary-*-version-*.json")), ids=lambda p: p.stem
)
def test_operator_writes_the_golden_flag_data(golden: Path) -> None:
    # the router's writer is held to the same files (tests/recommender/test_flagdata_contract.py)
    _, weight, _, version = golden.stem.split("-")
    built = builders.build_flag_data(int(weight), version=int(version))
    assert built == json.loads(golden.read_text())


def test_flag_version_grows_with_every_weight_change() -> None:
    now = 1_800_000_000.0
    first = builders.next_flag_version(None, 0, now=now)
    cm = builders.build_flag_configmap(OWNER, canary_weight=0, version=first)
    assert json.loads(cm["data"]["flags.json"])["flags"]["movierec-track"]["version"] == first
    assert builders.next_flag_version(cm, 0, now=now + 60) == first  # no change: no new version
    versions = [first]
    for weight in (10, 25, 100, 0, 10):
        versions.append(builders.next_flag_version(cm, weight, now=now))  # same second
        cm = builders.build_flag_configmap(OWNER, canary_weight=weight, version=versions[-1])
    assert versions == sorted(set(versions))  # strictly increasing, even back to a weight seen
    # a deleted and recreated ConfigMap still moves forward for routers that saw the old one
    assert builders.next_flag_version(None, 10, now=now + 3600) > versions[-1]


@pytest.fixture
def ld_client_for(tmp_path: Path) -> Iterator[Any]:
    ldclient = pytest.importorskip("ldclient")
    from ldclient.config import Config
    from ldclient.integrations import Files

    clients = []

    def make(weight: int) -> Any:
        path = tmp_path / f"flags-{weight}.json"
        path.write_text(json.dumps(builders.build_flag_data(weight)))
        config = Config(
            "sdk-key",
            update_processor_class=Files.new_data_source(paths=[str(path)]),
            send_events=False,
        )
        client = ldclient.LDClient(config=config, start_wait=5)
        clients.append(client)
        assert client.is_initialized()
        return client

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize("weight", [0, 25, 100])
def test_launchdarkly_sdk_splits_users_by_the_weight(ld_client_for: Any, weight: int) -> None:
    from ldclient import Context

    client = ld_client_for(weight)
    users = [str(u) for u in range(4000)]
    tracks = [client.variation("movierec-track", Context.create(u), "none") for u in users]
    share = tracks.count("canary") / len(users)
    assert set(tracks) <= {"stable", "canary"}
    assert share == pytest.approx(weight / 100, abs=0.03)
    assert client.variation("movierec-kill-switch", Context.create("1"), True) is False
    # sticky: users on the canary at 25% stay on it at 100% and the same users are asked again
    again = [client.variation("movierec-track", Context.create(u), "none") for u in users]
    assert again == tracks


def test_canary_users_at_a_lower_weight_stay_canary_at_a_higher_one(ld_client_for: Any) -> None:
    from ldclient import Context

    low, high = ld_client_for(10), ld_client_for(50)
    users = [str(u) for u in range(2000)]
    canary_low = {
        u for u in users if low.variation("movierec-track", Context.create(u), "") == "canary"
    }
    canary_high = {
        u for u in users if high.variation("movierec-track", Context.create(u), "") == "canary"
    }
    assert canary_low and canary_low <= canary_high


def test_an_autoscaled_deployment_leaves_replicas_to_the_autoscaler() -> None:
    assert "replicas" not in _deployment(replicas=None)["spec"]
    assert _deployment(replicas=3)["spec"]["replicas"] == 3
