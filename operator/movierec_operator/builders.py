"""Pure builders of the children a RecommenderModel owns: Deployments, Services, the flag ConfigMap."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import kopf

from movierec_operator import constants

Owner = Mapping[
    str, Any
]  # the RecommenderModel body (apiVersion, kind, metadata.name/uid/namespace)


def child_name(owner_name: str, track: str) -> str:
    return f"{owner_name}-{track}"


def flag_configmap_name(owner_name: str) -> str:
    return f"{owner_name}-flags"


def selector_labels(owner_name: str, track: str) -> dict[str, str]:
    """Labels that pick one track's pods (immutable on a Deployment: never add versions here)."""
    return {
        constants.LABEL_NAME: constants.APP_NAME,
        constants.LABEL_INSTANCE: owner_name,
        constants.LABEL_TRACK: track,
    }


def _labels(owner_name: str, track: str | None = None) -> dict[str, str]:
    labels = {
        constants.LABEL_NAME: constants.APP_NAME,
        constants.LABEL_INSTANCE: owner_name,
        constants.LABEL_MANAGED_BY: constants.MANAGER,
    }
    if track:
        labels[constants.LABEL_TRACK] = track
    return labels


def _adopted(obj: dict[str, Any], owner: Owner) -> dict[str, Any]:
    kopf.adopt(
        obj, owner=cast(kopf.Body, owner)
    )  # ownerReference (controller, blockOwnerDeletion) + namespace
    return obj


def build_deployment(
    owner: Owner,
    *,
    track: str,
    model_name: str,
    version: str,
    image: str,
    replicas: int | None,
    tracking_uri: str,
    image_pull_policy: str = "IfNotPresent",
    kafka_bootstrap: str | None = None,
    provenance_topic: str = "recommendations",
) -> dict[str, Any]:
    """The Deployment serving ``models:/<model_name>/<version>`` as ``track``; its pods satisfy
    the ``restricted`` Pod Security Standard (ARCHITECTURE.md section 9). ``replicas=None``
    leaves the count to whoever sets it (a HorizontalPodAutoscaler)."""
    name = owner["metadata"]["name"]
    labels = {**_labels(name, track), constants.LABEL_MODEL_VERSION: version}
    pod_labels = {**selector_labels(name, track), constants.LABEL_MODEL_VERSION: version}
    probe = {"periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}
    container = {
        "name": "recommender",
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "command": ["movierec"],  # the image's entrypoint, stated: the image contract
        "args": [
            "serve",
            "--model",
            f"models:/{model_name}/{version}",
            "--host",
            "0.0.0.0",  # inside the pod: the Service and the probes reach it on the pod IP
            "--port",
            str(constants.SERVE_PORT),
            "--track",
            track,
            "--tracking-uri",
            tracking_uri,
        ],
        "env": [
            {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
            {"name": "MOVIEREC_TRACK", "value": track},
            {"name": "MOVIEREC_MODEL_VERSION", "value": version},
            # read-only root filesystem: Python, gunicorn and prometheus-client write under /tmp
            {"name": "HOME", "value": "/tmp"},
            {"name": "TMPDIR", "value": "/tmp"},
            {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
            *(
                [
                    {"name": "MOVIEREC_RECOMMENDER_KAFKA_BOOTSTRAP", "value": kafka_bootstrap},
                    {"name": "MOVIEREC_RECOMMENDER_PROVENANCE_TOPIC", "value": provenance_topic},
                ]
                if kafka_bootstrap
                else []
            ),
        ],
        "ports": [{"name": "http", "containerPort": constants.SERVE_PORT, "protocol": "TCP"}],
        # loading a model from MLflow takes a while: liveness waits for the first readiness
        "startupProbe": {
            **probe,
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 90,
        },
        "livenessProbe": {**probe, "httpGet": {"path": "/healthz", "port": "http"}},
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "http"}},
        # kube-proxy needs a moment to stop sending to a terminating pod; without the pause a
        # rolling restart under load lost requests (docs/operator.md, "Pods")
        "lifecycle": {"preStop": {"sleep": {"seconds": constants.PRESTOP_SLEEP_SECONDS}}},
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec = {
        "automountServiceAccountToken": False,  # the recommender never calls the API server
        "terminationGracePeriodSeconds": constants.TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": constants.RUN_AS,
            "runAsGroup": constants.RUN_AS,
            "fsGroup": constants.RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    return _adopted(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": child_name(name, track), "labels": labels},
            "spec": {
                **({} if replicas is None else {"replicas": replicas}),
                "selector": {"matchLabels": selector_labels(name, track)},
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(constants.SERVE_PORT),
                            "prometheus.io/path": "/metrics",
                        },
                    },
                    "spec": pod_spec,
                },
            },
        },
        owner,
    )


def build_service(owner: Owner, *, track: str) -> dict[str, Any]:
    """The Service in front of one track (the router's upstream for that track name)."""
    name = owner["metadata"]["name"]
    return _adopted(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": child_name(name, track), "labels": _labels(name, track)},
            "spec": {
                "type": "ClusterIP",
                "selector": selector_labels(name, track),
                "ports": [
                    {
                        "name": "http",
                        "port": constants.SERVE_PORT,
                        "targetPort": "http",
                        "protocol": "TCP",
                    },
                ],
            },
        },
        owner,
    )


def build_flag_data(canary_weight: int, *, version: int = 1) -> dict[str, Any]:
    """LaunchDarkly flag data (file data source format) sending ``canary_weight`` % to canary.

    ``version`` must be higher than the last file's whenever the weight changes: the SDK only
    announces a change (and the router only drops its per-user cache) when it grows."""
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"canary weight must be 0..100, got {canary_weight}")
    if version < 1:
        raise ValueError(f"flag data version must be >= 1, got {version}")
    canary = canary_weight * constants.WEIGHT_SCALE
    variations = [constants.TRACK_STABLE, constants.TRACK_CANARY]
    common = {
        "version": version,
        "targets": [],
        "contextTargets": [],
        "rules": [],
        "prerequisites": [],
        "trackEvents": False,
        "trackEventsFallthrough": False,
        "clientSide": False,
        "deleted": False,
    }
    return {
        "flags": {
            constants.FLAG_KEY: {
                **common,
                "key": constants.FLAG_KEY,
                "on": True,
                "salt": constants.FLAG_SALT,
                "variations": variations,
                "offVariation": variations.index(constants.TRACK_STABLE),
                "fallthrough": {
                    "rollout": {
                        "variations": [
                            {"variation": 0, "weight": 100 * constants.WEIGHT_SCALE - canary},
                            {"variation": 1, "weight": canary},
                        ],
                        "bucketBy": "key",
                    },
                },
            },
            constants.KILL_SWITCH_KEY: {
                **common,
                "key": constants.KILL_SWITCH_KEY,
                "on": True,
                "salt": constants.KILL_SWITCH_KEY,
                "variations": [False, True],
                "offVariation": 0,
                "fallthrough": {"variation": 0},
            },
        },
    }


def next_flag_version(current: Mapping[str, Any] | None, canary_weight: int, *, now: float) -> int:
    """The flag-data version for ``canary_weight`` given the ConfigMap as it is (``None``: none).

    Same weight: the same version (no change, no write). Another weight: one more than before,
    and never below the clock in seconds, so a ConfigMap deleted and recreated still moves the
    version forward for routers that remember the old one."""
    annotations = (current or {}).get("metadata", {}).get("annotations") or {}
    try:
        old_version = int(annotations.get(constants.FLAG_VERSION_ANNOTATION, "0"))
        old_weight = int(annotations.get("movierec.io/canary-weight", "-1"))
    except ValueError:
        old_version, old_weight = 0, -1
    if current is not None and old_weight == canary_weight and old_version >= 1:
        return old_version
    return max(old_version + 1, int(now))


def build_flag_configmap(owner: Owner, *, canary_weight: int, version: int = 1) -> dict[str, Any]:
    """The ConfigMap the router mounts as its LaunchDarkly flag-data file."""
    name = owner["metadata"]["name"]
    return _adopted(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": flag_configmap_name(name),
                "labels": _labels(name),
                "annotations": {
                    "movierec.io/canary-weight": str(canary_weight),
                    constants.FLAG_VERSION_ANNOTATION: str(version),
                },
            },
            "data": {
                constants.FLAG_FILE: json.dumps(
                    build_flag_data(canary_weight, version=version), indent=2, sort_keys=True
                ),
            },
        },
        owner,
    )
