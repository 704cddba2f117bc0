"""Is a Deployment the operator built serving? Read from its ``status`` like ``kubectl rollout
status`` does (pure; the reason comes from its conditions, so no pod access is needed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from movierec_operator import constants


@dataclass(frozen=True)
class Availability:
    available: bool
    message: str  # "DeploymentUnavailable: movies-stable: 0/2 pods available: <why>"


def _why(status: Mapping[str, Any]) -> str:
    """The most telling condition message (a refused pod, a missed progress deadline)."""
    by_type = {c.get("type"): c for c in status.get("conditions") or []}
    failure = by_type.get("ReplicaFailure")
    if failure and failure.get("status") == "True":
        return str(failure.get("message") or failure.get("reason") or "")
    progressing = by_type.get("Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return str(progressing.get("message") or "progress deadline exceeded")
    return ""


def of(deployment: Mapping[str, Any] | None, *, version: str | None = None) -> Availability:
    """Available when the controller has seen the current spec, every replica runs it and is
    available, and (when given) the Deployment runs ``version``."""
    if deployment is None:
        return Availability(False, "DeploymentUnavailable: the Deployment does not exist yet")
    meta = deployment.get("metadata") or {}
    name = meta.get("name", "?")
    status = deployment.get("status") or {}
    want = int((deployment.get("spec") or {}).get("replicas", 1))
    running = (meta.get("labels") or {}).get(constants.LABEL_MODEL_VERSION)
    prefix = f"DeploymentUnavailable: {name}"
    if version is not None and running != version:
        return Availability(False, f"{prefix}: runs version {running}, not {version} yet")
    observed, generation = status.get("observedGeneration"), meta.get("generation")
    if observed is None or (generation is not None and observed < generation):
        return Availability(False, f"{prefix}: the controller has not acted on the change yet")
    if want == 0:
        return Availability(True, f"{name}: scaled to 0")
    available = int(status.get("availableReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if available >= want and updated >= want and total <= want:
        return Availability(True, f"{name}: {available}/{want} pods available")
    why = _why(status)
    old = f", {total - updated} old pod(s) still running" if total > updated else ""
    text = f"{prefix}: {min(available, updated)}/{want} pods available{old}"
    return Availability(False, f"{text}: {why}" if why else text)
