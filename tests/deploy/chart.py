"""Helpers for the chart tests: where the chart is, which helm to run, rendering to objects."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from harness import envfile

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "movierec"
LOCAL_VALUES = CHART / "ci" / "local-values.yaml"
KUBE_VERSION = "1.34.0"  # what `helm template` assumes without a cluster


def helm_binary() -> str:
    """$HELM, else HELM from .services.env, else the harness's own build of helm."""
    for candidate in (os.environ.get("HELM"), envfile.read().get("HELM")):
        if candidate and Path(candidate).is_file():
            return candidate
    from harness import helm_build

    return str(helm_build.ensure_installed())


def render(
    helm: str,
    *,
    release: str = "rel",
    namespace: str = "ns",
    values: Sequence[Path] = (),
    set_values: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """``helm template`` output as objects (test hooks included); raises CalledProcessError."""
    args = [helm, "template", release, str(CHART), "--namespace", namespace]
    args += ["--kube-version", KUBE_VERSION]
    for path in values:
        args += ["-f", str(path)]
    for item in set_values:
        args += ["--set", item]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec(s) inside a workload object ([] for other kinds)."""
    kind = doc.get("kind")
    if kind == "Pod":
        return [doc["spec"]]
    if kind in {"Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"}:
        return [doc["spec"]["template"]["spec"]]
    if kind == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []
