"""The pure rollout policy: from the spec's policy, the current status and fresh observations to
the next action, and from an action to the next status. No I/O, no clock: table-tested."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from movierec_operator.constants import DEPLOYMENT_CHECK, Phase, Verdict
from movierec_operator.spec import format_duration

CANARY_PHASES = frozenset({Phase.PROGRESSING, Phase.HOLDING})
INCONCLUSIVE_PREFIX = "Inconclusive: "  # a rollback reason: the inconclusiveDeadline passed


class ActionKind(StrEnum):
    """What the operator does next."""

    INITIALIZE = "Initialize"  # first version ever: it becomes stable, nothing to compare with
    START_CANARY = "StartCanary"
    STEP_UP = "StepUp"
    RECORD_FAILURE = "RecordFailure"  # a check failed, below maxFailedChecks: stay at this weight
    HOLD = "Hold"  # inconclusive (too few samples or no data): neither judge nor move
    PROMOTE = "Promote"
    FORCE_PROMOTE = "ForcePromote"
    ROLL_BACK = "RollBack"
    SETTLE = "Settle"  # the spec points at the stable version again after a rollback
    NOTHING = "Nothing"


@dataclass(frozen=True)
class Policy:
    """The parts of the spec the decision depends on."""

    steps: tuple[int, ...]
    interval_seconds: float
    max_failed_checks: int
    force_promote: bool = False
    inconclusive_deadline_seconds: float = 3600.0


@dataclass(frozen=True)
class RolloutState:
    """The rollout fields of ``status`` (everything the operator must remember lives here)."""

    phase: Phase | None = None
    stable_version: str | None = None
    canary_version: str | None = None
    canary_weight: int = 0
    step_index: int = 0
    failed_checks: int = 0
    rolled_back_version: str | None = None
    step_started: float | None = None  # epoch seconds the current step (or hold) began
    force_promoted: bool = False
    # since when every analysis of this step has been inconclusive (the first such analysis
    # counts from the step's start); None after a conclusive one
    inconclusive_since: float | None = None

    @property
    def canary_active(self) -> bool:
        return self.canary_version is not None and self.phase in CANARY_PHASES


@dataclass(frozen=True)
class CheckOutcome:
    """The part of a check result the policy reads."""

    name: str
    verdict: Verdict
    detail: str = ""
    samples: float | None = None
    min_samples: int | None = None

    def shortfall(self) -> str:
        """Why an inconclusive check is: ``engagement had 12/200 samples`` or ``name (detail)``."""
        if self.min_samples is not None and (self.samples or 0) < self.min_samples:
            return f"{self.name} had {self.samples or 0:.0f}/{self.min_samples} samples"
        return f"{self.name} ({self.detail})" if self.detail else self.name


@dataclass(frozen=True)
class Observations:
    """What the world looks like now: the version the spec asks for and, when an analysis ran,
    its outcomes (``None``: no analysis this time)."""

    desired_version: str | None
    now: float
    checks: Sequence[CheckOutcome] | None = None


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    reason: str
    version: str | None = None
    counts_failure: bool = False  # this action is caused by one more failed analysis


def analysis_due(policy: Policy, state: RolloutState, now: float) -> bool:
    """True when a canary has been at its step (or hold) for a whole interval."""
    if not state.canary_active:
        return False
    return state.step_started is None or now - state.step_started >= policy.interval_seconds


def decide(policy: Policy, state: RolloutState, obs: Observations) -> Action:
    """The next action. Total: every (policy, state, observations) gives exactly one action."""
    desired = obs.desired_version
    if state.phase == Phase.PROMOTING and state.canary_version is not None:
        return Action(
            ActionKind.PROMOTE,
            f"finishing the promotion of {state.canary_version}",
            state.canary_version,
        )
    if desired is None:
        return Action(ActionKind.NOTHING, "no model version to roll out yet")
    if state.stable_version is None:
        return Action(ActionKind.INITIALIZE, f"first version {desired} becomes stable", desired)
    if desired == state.stable_version:
        if state.canary_active:
            return Action(
                ActionKind.ROLL_BACK,
                f"the spec asks for the stable version {desired} again: "
                f"canary {state.canary_version} withdrawn",
                state.canary_version,
            )
        if state.phase != Phase.STABLE:
            return Action(ActionKind.SETTLE, f"version {desired} is stable", desired)
        return Action(ActionKind.NOTHING, f"version {desired} is stable")
    if policy.force_promote:
        return Action(
            ActionKind.FORCE_PROMOTE, f"forcePromote: {desired} promoted without analysis", desired
        )
    if desired == state.rolled_back_version:
        return Action(
            ActionKind.NOTHING,
            f"version {desired} was rolled back; pin or publish another version, "
            "or set forcePromote to override",
        )
    if not state.canary_active or state.canary_version != desired:
        return Action(
            ActionKind.START_CANARY,
            f"canary {desired} starts at {policy.steps[0]}% of users",
            desired,
        )
    if obs.checks is None:
        return Action(ActionKind.NOTHING, "waiting for the next analysis", desired)
    failed = [c for c in obs.checks if c.verdict == Verdict.FAIL]
    if failed:
        names = "; ".join(f"{c.name} {c.detail}".strip() for c in failed)
        if any(c.name == DEPLOYMENT_CHECK for c in failed):
            # pods that did not come up within the deployment deadline: that deadline was the
            # patience, and every further interval leaves the canary's users on fallbacks
            return Action(
                ActionKind.ROLL_BACK,
                f"canary {desired} is not serving: {names}",
                desired,
                counts_failure=True,
            )
        if state.failed_checks + 1 >= policy.max_failed_checks:
            return Action(
                ActionKind.ROLL_BACK,
                f"canary {desired} failed analysis {state.failed_checks + 1} time(s) "
                f"(max {policy.max_failed_checks}): {names}",
                desired,
                counts_failure=True,
            )
        return Action(
            ActionKind.RECORD_FAILURE,
            f"canary {desired} failed analysis {state.failed_checks + 1} of "
            f"{policy.max_failed_checks} allowed time(s): {names}",
            desired,
            counts_failure=True,
        )
    inconclusive = [c for c in obs.checks if c.verdict == Verdict.INCONCLUSIVE]
    if inconclusive or not obs.checks:
        since = (
            state.inconclusive_since
            if state.inconclusive_since is not None
            else (state.step_started)
        )
        waited = None if since is None else obs.now - since
        deadline = policy.inconclusive_deadline_seconds
        if waited is not None and waited >= deadline:
            # thin traffic that never fills up must not hold a canary (and its users) forever
            why = ", ".join(c.shortfall() for c in inconclusive) or "no checks"
            return Action(
                ActionKind.ROLL_BACK,
                f"{INCONCLUSIVE_PREFIX}{why} for {format_duration(waited)} "
                f"(inconclusiveDeadline {format_duration(deadline)})",
                desired,
            )
        names = "; ".join(f"{c.name} {c.detail}".strip() for c in inconclusive) or "no checks"
        return Action(
            ActionKind.HOLD, f"holding canary {desired} at {state.canary_weight}%: {names}", desired
        )
    if state.step_index + 1 >= len(policy.steps):
        return Action(
            ActionKind.PROMOTE,
            f"canary {desired} passed every check at {state.canary_weight}%",
            desired,
        )
    return Action(
        ActionKind.STEP_UP,
        f"canary {desired} passed every check: {policy.steps[state.step_index + 1]}% of users",
        desired,
    )


def transition(policy: Policy, state: RolloutState, action: Action, now: float) -> RolloutState:
    """The status after ``action`` (promotions stop in Promoting; see :func:`finish_promotion`)."""
    kind = action.kind
    replace = dataclasses.replace
    if kind == ActionKind.INITIALIZE:
        return RolloutState(phase=Phase.STABLE, stable_version=action.version, step_started=now)
    if kind == ActionKind.START_CANARY:
        return replace(
            state,
            phase=Phase.PROGRESSING,
            canary_version=action.version,
            canary_weight=policy.steps[0],
            step_index=0,
            failed_checks=0,
            rolled_back_version=None,
            step_started=now,
            inconclusive_since=None,
        )
    if kind == ActionKind.STEP_UP:
        index = state.step_index + 1
        return replace(
            state,
            phase=Phase.PROGRESSING,
            step_index=index,
            canary_weight=policy.steps[index],
            step_started=now,
            inconclusive_since=None,
        )
    if kind == ActionKind.RECORD_FAILURE:
        return replace(
            state,
            phase=Phase.PROGRESSING,
            failed_checks=state.failed_checks + 1,
            step_started=now,
            inconclusive_since=None,
        )
    if kind == ActionKind.HOLD:
        since = state.inconclusive_since
        if since is None:
            since = state.step_started if state.step_started is not None else now
        return replace(state, phase=Phase.HOLDING, step_started=now, inconclusive_since=since)
    if kind == ActionKind.PROMOTE:
        return replace(
            state,
            phase=Phase.PROMOTING,
            canary_version=action.version,
            force_promoted=state.force_promoted if state.phase == Phase.PROMOTING else False,
        )
    if kind == ActionKind.FORCE_PROMOTE:
        return replace(
            state, phase=Phase.PROMOTING, canary_version=action.version, force_promoted=True
        )
    if kind == ActionKind.ROLL_BACK:
        failed = state.failed_checks + (1 if action.counts_failure else 0)
        return replace(
            state,
            phase=Phase.ROLLED_BACK,
            canary_version=None,
            canary_weight=0,
            step_index=0,
            failed_checks=failed,
            rolled_back_version=action.version,
            step_started=now,
            inconclusive_since=None,
        )
    if kind == ActionKind.SETTLE:
        return replace(
            state,
            phase=Phase.STABLE,
            canary_version=None,
            canary_weight=0,
            step_index=0,
            rolled_back_version=None,
            step_started=now,
            inconclusive_since=None,
        )
    return state


def finish_promotion(state: RolloutState, now: float) -> RolloutState:
    """The status once the promoted version serves as stable everywhere."""
    return dataclasses.replace(
        state,
        phase=Phase.STABLE,
        stable_version=state.canary_version,
        canary_version=None,
        canary_weight=0,
        step_index=0,
        failed_checks=0,
        rolled_back_version=None,
        step_started=now,
        inconclusive_since=None,
    )
