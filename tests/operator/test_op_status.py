"""Status round trip and conditions a person can act on."""

from __future__ import annotations

import json

from movierec_operator import status
from movierec_operator.analysis import CheckResult
from movierec_operator.constants import DEPLOYMENT_CHECK, Phase, Verdict
from movierec_operator.policy import Action, ActionKind, RolloutState

from tests.operator.support import Cluster

NOW = 1_800_000_000.0


def test_state_round_trips_through_status_fields() -> None:
    state = RolloutState(
        phase=Phase.HOLDING,
        stable_version="3",
        canary_version="4",
        canary_weight=25,
        step_index=1,
        failed_checks=1,
        rolled_back_version=None,
        step_started=NOW + 0.25,
        force_promoted=False,
        inconclusive_since=NOW - 60.5,
    )
    fields = {k: v for k, v in status.state_fields(state).items() if v is not None}
    assert status.read_state(fields) == state


def test_empty_status_is_an_empty_state() -> None:
    assert status.read_state(None) == RolloutState()
    assert status.read_state({"phase": "Bogus"}).phase is None


def test_rollback_conditions_say_what_to_do() -> None:
    state = RolloutState(phase=Phase.ROLLED_BACK, stable_version="3", rolled_back_version="4")
    action = Action(
        ActionKind.ROLL_BACK, "canary 4 failed analysis 2 time(s): success-rate 0.9 < min 0.99"
    )
    conds = {
        c["type"]: c for c in status.build_conditions(None, state, action, now=NOW, generation=2)
    }
    assert conds["Ready"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "RolledBack"
    assert "success-rate 0.9 < min 0.99" in conds["Progressing"]["message"]
    assert "publish a new version, or set forcePromote" in conds["Progressing"]["message"]
    assert conds["Promoted"] == {
        "type": "Promoted",
        "status": "False",
        "reason": "RolledBack",
        "message": action.reason,
        "lastTransitionTime": "2027-01-15T08:00:00Z",
        "observedGeneration": 2,
    }


def test_transition_time_moves_only_when_the_status_flips() -> None:
    progressing = RolloutState(
        phase=Phase.PROGRESSING, stable_version="1", canary_version="2", canary_weight=10
    )
    first = status.build_conditions(
        None, progressing, Action(ActionKind.START_CANARY, "start"), now=NOW, generation=1
    )
    stepped = RolloutState(**{**progressing.__dict__, "canary_weight": 50, "step_index": 1})
    second = status.build_conditions(
        first, stepped, Action(ActionKind.STEP_UP, "up"), now=NOW + 60, generation=1
    )
    by_type = {c["type"]: c for c in second}
    assert by_type["Progressing"]["lastTransitionTime"] == status.rfc3339(NOW)
    assert "at 50% (step 2" in by_type["Progressing"]["message"]
    assert "Promoted" not in by_type  # nothing promoted yet: no claim either way
    promoted = RolloutState(phase=Phase.STABLE, stable_version="2")
    third = {
        c["type"]: c
        for c in status.build_conditions(
            second, promoted, Action(ActionKind.PROMOTE, "passed"), now=NOW + 120, generation=1
        )
    }
    assert third["Progressing"]["status"] == "False"
    assert third["Progressing"]["lastTransitionTime"] == status.rfc3339(NOW + 120)
    assert (third["Promoted"]["status"], third["Promoted"]["reason"]) == ("True", "Promoted")


def test_force_promotion_is_visible_in_the_promoted_condition() -> None:
    state = RolloutState(phase=Phase.STABLE, stable_version="2", force_promoted=True)
    conds = status.build_conditions(
        None, state, Action(ActionKind.FORCE_PROMOTE, "forcePromote"), now=NOW, generation=3
    )
    assert {c["type"]: c["reason"] for c in conds}["Promoted"] == "ForcePromoted"


def test_inconclusive_rollback_says_what_to_change() -> None:
    state = RolloutState(phase=Phase.ROLLED_BACK, stable_version="3", rolled_back_version="4")
    reason = "Inconclusive: engagement had 12/200 samples for 1h0m5s (inconclusiveDeadline 1h)"
    action = Action(ActionKind.ROLL_BACK, reason, "4")
    conds = {
        c["type"]: c for c in status.build_conditions(None, state, action, now=NOW, generation=2)
    }
    assert conds["Progressing"]["reason"] == "RolledBack"
    assert conds["Progressing"]["message"].startswith(reason + ". Too little data to judge")
    assert "lower minSamples" in conds["Progressing"]["message"]
    assert conds["Promoted"]["message"] == reason


def test_a_check_that_did_not_run_leaves_the_stored_analysis(cluster: Cluster) -> None:
    # A merge patch keeps keys it does not name: the rolled-back canary's `deployment` check
    # must not sit beside the next canary's checks as if it had just run.
    cluster.apply(
        {
            "apiVersion": "movierec.io/v1alpha1",
            "kind": "RecommenderModel",
            "metadata": {"name": "analysed"},
            "spec": {"modelName": "movies", "version": "1", "replicas": 1},
        }
    )
    success = CheckResult("success-rate", Verdict.PASS, 1.0, 100, ">= 0.95")
    unavailable = CheckResult(DEPLOYMENT_CHECK, Verdict.FAIL, 0, None, "available", detail="0/1")

    def patch(fields: dict[str, object]) -> dict[str, object]:
        cluster.kubectl(
            "patch", "rm", "analysed", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": fields}),
        )  # fmt: skip
        stored: dict[str, object] = (cluster.get("rm", "analysed") or {})["status"]["lastAnalysis"]
        return stored

    first = patch(status.analysis_fields([success, unavailable], NOW))
    assert set(first) == {"success-rate", DEPLOYMENT_CHECK}
    second = patch(status.analysis_fields([success], NOW + 10, first))
    assert second == {"success-rate": success.to_status()}


def test_merge_patch_turns_the_old_status_into_the_new() -> None:
    old = {
        "engagement": {"verdict": "pass", "value": 0.08, "stableValue": 0.09},
        DEPLOYMENT_CHECK: {"verdict": "fail"},
    }
    new = {"engagement": {"verdict": "inconclusive", "value": None}}
    patch = status.merge_patch(old, new)
    assert patch == {
        DEPLOYMENT_CHECK: None,
        "engagement": {"verdict": "inconclusive", "value": None, "stableValue": None},
    }
    # what the API server stores: nulls remove keys
    assert status.apply_merge_patch(old, patch) == {"engagement": {"verdict": "inconclusive"}}
