"""``status`` of a RecommenderModel: reading the rollout state back and writing it with conditions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from movierec_operator.analysis import CheckResult
from movierec_operator.constants import Phase
from movierec_operator.policy import INCONCLUSIVE_PREFIX, Action, ActionKind, RolloutState

CONDITION_TYPES = ("Ready", "Progressing", "Promoted")


def rfc3339(epoch: float, *, precise: bool = False) -> str:
    """UTC time as RFC 3339; ``precise`` keeps microseconds (analysis intervals can be seconds)."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.fromtimestamp(epoch, UTC).strftime(fmt)


def epoch(text: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time (``None`` stays ``None``)."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_state(status: Mapping[str, Any] | None) -> RolloutState:
    """The rollout state stored in ``status`` (an empty state for a new object)."""
    status = status or {}
    phase = status.get("phase")
    return RolloutState(
        phase=Phase(phase) if phase in Phase.__members__.values() else None,
        stable_version=status.get("stableVersion"),
        canary_version=status.get("canaryVersion"),
        canary_weight=int(status.get("canaryWeight") or 0),
        step_index=int(status.get("stepIndex") or 0),
        failed_checks=int(status.get("failedChecks") or 0),
        rolled_back_version=status.get("rolledBackVersion"),
        step_started=epoch(status.get("stepStartedAt")),
        force_promoted=bool(status.get("forcePromoted", False)),
        inconclusive_since=epoch(status.get("inconclusiveSince")),
    )


def state_fields(state: RolloutState) -> dict[str, Any]:
    """The rollout state as ``status`` fields (``None`` deletes a field in a merge patch)."""
    return {
        "phase": str(state.phase) if state.phase else None,
        "stableVersion": state.stable_version,
        "canaryVersion": state.canary_version,
        "canaryWeight": state.canary_weight,
        "stepIndex": state.step_index,
        "failedChecks": state.failed_checks,
        "rolledBackVersion": state.rolled_back_version,
        "stepStartedAt": rfc3339(state.step_started, precise=True) if state.step_started else None,
        "forcePromoted": state.force_promoted,
        "inconclusiveSince": rfc3339(state.inconclusive_since, precise=True)
        if state.inconclusive_since is not None
        else None,
    }


def _condition_values(state: RolloutState, action: Action) -> dict[str, tuple[str, str, str]]:
    """type -> (status, reason, message) for the state after ``action``."""
    phase = state.phase
    stable = state.stable_version
    reason = action.reason
    ready = (
        ("True", "StableServing", f"version {stable} serves as stable")
        if stable
        else ("False", "NoStableVersion", reason)
    )
    if phase == Phase.FAILED:
        ready = ("False", "Failed", reason)
    if phase in (Phase.PROGRESSING, Phase.HOLDING):
        progressing = (
            "True",
            "Holding" if phase == Phase.HOLDING else "CanaryProgressing",
            f"canary {state.canary_version} at {state.canary_weight}% "
            f"(step {state.step_index + 1}, {state.failed_checks} failed analyses): {reason}",
        )
    elif phase == Phase.PROMOTING:
        progressing = ("True", "Promoting", reason)
    elif phase == Phase.ROLLED_BACK and reason.startswith(INCONCLUSIVE_PREFIX):
        progressing = (
            "False",
            "RolledBack",
            f"{reason}. Too little data to judge: give the canary more traffic (higher steps) "
            "or time (inconclusiveDeadline), or lower minSamples; then publish a new version, "
            "or set forcePromote: true",
        )
    elif phase == Phase.ROLLED_BACK:
        progressing = (
            "False",
            "RolledBack",
            f"{reason}. Fix the model and publish a new version, or set forcePromote: true",
        )
    else:
        progressing = ("False", "NoCanary", "no canary running")
    if phase == Phase.STABLE and action.kind in (ActionKind.PROMOTE, ActionKind.FORCE_PROMOTE):
        promoted = ("True", "ForcePromoted" if state.force_promoted else "Promoted", reason)
    elif phase == Phase.ROLLED_BACK:
        promoted = ("False", "RolledBack", reason)
    else:
        promoted = None  # unchanged: the last promotion stays on record
    values = {"Ready": ready, "Progressing": progressing}
    if promoted:
        values["Promoted"] = promoted
    return values


def build_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    state: RolloutState,
    action: Action,
    *,
    now: float,
    generation: int | None,
    overrides: Mapping[str, tuple[str, str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Ready, Progressing and Promoted; lastTransitionTime moves only when a status flips.
    ``overrides`` (type -> status, reason, message) say what blocks the state machine: an
    unavailable Deployment or registry."""
    old = {c.get("type"): dict(c) for c in previous or []}
    out = []
    values = {**_condition_values(state, action), **(overrides or {})}
    for ctype in CONDITION_TYPES:
        if ctype not in values:
            if ctype in old:
                out.append(old[ctype])
            continue
        cstatus, reason, message = values[ctype]
        before = old.get(ctype, {})
        changed = before.get("status") != cstatus
        out.append(
            {
                "type": ctype,
                "status": cstatus,
                "reason": reason,
                "message": message,
                "lastTransitionTime": rfc3339(now)
                if changed or "lastTransitionTime" not in before
                else before["lastTransitionTime"],
                "observedGeneration": generation,
            }
        )
    return out


def analysis_fields(
    results: Sequence[CheckResult], now: float, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The analysis as a merge patch over ``previous``: what did not come back now is nulled,
    or the merge would keep it (a rolled-back canary's `deployment` check, a stale stableValue)."""
    current = {r.name: r.to_status() for r in results}
    return {"lastAnalysis": merge_patch(previous or {}, current), "lastAnalysisAt": rfc3339(now)}


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: keys ``new`` lacks are
    null, objects on both sides are patched key by key."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    return patch


def apply_merge_patch(old: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``old`` after a JSON merge patch (RFC 7386): null removes a key, objects merge deeply."""
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = apply_merge_patch(out[key], value)
        else:
            out[key] = value
    return out
