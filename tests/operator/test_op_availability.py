"""A Deployment counts as serving only when its controller has acted on the current spec and every
replica is available; otherwise the reason says why (from the Deployment's own conditions)."""

from __future__ import annotations

from typing import Any

import pytest
from movierec_operator.availability import of


def deployment(
    *,
    replicas: int = 2,
    generation: int = 3,
    observed: int | None = 3,
    available: int = 2,
    updated: int = 2,
    total: int = 2,
    version: str = "7",
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "replicas": total,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "conditions": conditions or [],
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "metadata": {
            "name": "movies-stable",
            "generation": generation,
            "labels": {"movierec.io/model-version": version},
        },
        "spec": {"replicas": replicas},
        "status": status,
    }


REFUSED = {
    "type": "ReplicaFailure",
    "status": "True",
    "reason": "FailedCreate",
    "message": 'pods "movies-stable-5d9f-abcde" is forbidden: violates PodSecurity '
    '"restricted:latest": seccompProfile (pod or container "recommender" must set '
    'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
}


@pytest.mark.parametrize(
    ("dep", "ok", "text"),
    [
        (deployment(), True, "2/2 pods available"),
        (deployment(replicas=0, available=0, updated=0, total=0), True, "scaled to 0"),
        (None, False, "does not exist"),
        (deployment(observed=2), False, "has not acted on the change"),
        (deployment(observed=None), False, "has not acted on the change"),
        (deployment(version="6"), False, "runs version 6, not 7"),
        (deployment(available=0), False, "0/2 pods available"),
        (
            deployment(available=0, updated=0, total=0, conditions=[REFUSED]),
            False,
            '0/2 pods available: pods "movies-stable-5d9f-abcde" is forbidden: violates '
            "PodSecurity",
        ),
        (
            deployment(available=2, updated=1, total=3),
            False,
            "1/2 pods available, 2 old pod(s) still running",
        ),
        (
            deployment(
                available=1,
                conditions=[
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": 'ReplicaSet "movies-stable-5d9f" has timed out progressing.',
                    }
                ],
            ),
            False,
            "1/2 pods available: ReplicaSet",
        ),
    ],
)
def test_availability_of_a_deployment(dep: dict[str, Any] | None, ok: bool, text: str) -> None:
    seen = of(dep, version="7")
    assert seen.available is ok
    assert text in seen.message
    if not ok:
        assert seen.message.startswith("DeploymentUnavailable: ")


@pytest.mark.parametrize(
    ("canary", "require", "weight"),
    [
        (deployment(version="8"), True, 25),  # serving the canary version: its step's share
        (deployment(version="8", available=0), True, 0),  # pods still loading: nobody yet
        (deployment(version="7"), True, 0),  # still the previous version's pods
        (None, True, 0),  # not created yet
        (None, False, 25),  # availability not required (no controllers): weight at once
    ],
)
def test_the_canary_gets_users_only_once_it_serves(
    canary: dict[str, Any] | None, require: bool, weight: int
) -> None:
    from movierec_operator.constants import Phase
    from movierec_operator.policy import RolloutState
    from movierec_operator.reconcile import flag_weight

    state = RolloutState(
        phase=Phase.PROGRESSING, stable_version="7", canary_version="8", canary_weight=25
    )
    assert flag_weight(state, canary, require_available=require) == weight
    stable_only = RolloutState(phase=Phase.STABLE, stable_version="7")
    assert flag_weight(stable_only, canary, require_available=require) == 0
