"""Table tests of the pure rollout policy: every transition of the state machine."""

from __future__ import annotations

import pytest
from movierec_operator.constants import DEPLOYMENT_CHECK, Phase, Verdict
from movierec_operator.policy import (
    Action,
    ActionKind,
    CheckOutcome,
    Observations,
    Policy,
    RolloutState,
    analysis_due,
    decide,
    finish_promotion,
    transition,
)

POLICY = Policy(steps=(10, 50, 100), interval_seconds=60, max_failed_checks=2)
FORCE = Policy(steps=(10, 50, 100), interval_seconds=60, max_failed_checks=2, force_promote=True)
NOW = 10_000.0

PASS = [CheckOutcome("success-rate", Verdict.PASS), CheckOutcome("latency", Verdict.PASS)]
FAIL = [
    CheckOutcome("success-rate", Verdict.FAIL, "0.9 < min 0.99"),
    CheckOutcome("latency", Verdict.PASS),
]
THIN = [
    CheckOutcome("success-rate", Verdict.INCONCLUSIVE, "12 samples < minSamples 200", 12, 200),
    CheckOutcome("latency", Verdict.PASS),
]
# inconclusiveDeadline 5 minutes
DEADLINE = Policy(
    steps=(10, 50, 100), interval_seconds=60, max_failed_checks=2, inconclusive_deadline_seconds=300
)
MIXED = [
    CheckOutcome("success-rate", Verdict.FAIL, "bad"),
    CheckOutcome("latency", Verdict.INCONCLUSIVE, "no data"),
]

EMPTY = RolloutState()
STABLE = RolloutState(phase=Phase.STABLE, stable_version="1", step_started=0)


def canary(
    step: int = 0,
    failed: int = 0,
    phase: Phase = Phase.PROGRESSING,
    *,
    started: float = NOW - 61,
    inconclusive_since: float | None = None,
) -> RolloutState:
    return RolloutState(
        phase=phase,
        stable_version="1",
        canary_version="2",
        canary_weight=POLICY.steps[step],
        step_index=step,
        failed_checks=failed,
        step_started=started,
        inconclusive_since=inconclusive_since,
    )


ROLLED_BACK = RolloutState(
    phase=Phase.ROLLED_BACK, stable_version="1", rolled_back_version="2", failed_checks=2
)
PROMOTING = RolloutState(
    phase=Phase.PROMOTING,
    stable_version="1",
    canary_version="2",
    canary_weight=100,
    step_index=2,
)

TABLE = [
    # id, policy, state, desired, checks, expected action, expected phase after, weight after
    ("nothing-to-roll-out", POLICY, EMPTY, None, None, ActionKind.NOTHING, None, 0),
    ("first-version-is-stable", POLICY, EMPTY, "1", None, ActionKind.INITIALIZE, Phase.STABLE, 0),
    ("stable-is-desired", POLICY, STABLE, "1", None, ActionKind.NOTHING, Phase.STABLE, 0),
    (
        "new-version-starts-canary",
        POLICY,
        STABLE,
        "2",
        None,
        ActionKind.START_CANARY,
        Phase.PROGRESSING,
        10,
    ),
    (
        "waiting-for-analysis",
        POLICY,
        canary(0),
        "2",
        None,
        ActionKind.NOTHING,
        Phase.PROGRESSING,
        10,
    ),
    ("pass-steps-up", POLICY, canary(0), "2", PASS, ActionKind.STEP_UP, Phase.PROGRESSING, 50),
    (
        "pass-steps-up-again",
        POLICY,
        canary(1),
        "2",
        PASS,
        ActionKind.STEP_UP,
        Phase.PROGRESSING,
        100,
    ),
    (
        "pass-at-last-step-promotes",
        POLICY,
        canary(2),
        "2",
        PASS,
        ActionKind.PROMOTE,
        Phase.PROMOTING,
        100,
    ),
    ("thin-data-holds", POLICY, canary(1), "2", THIN, ActionKind.HOLD, Phase.HOLDING, 50),
    ("no-checks-hold", POLICY, canary(1), "2", [], ActionKind.HOLD, Phase.HOLDING, 50),
    (
        "holding-then-pass-steps-up",
        POLICY,
        canary(1, phase=Phase.HOLDING),
        "2",
        PASS,
        ActionKind.STEP_UP,
        Phase.PROGRESSING,
        100,
    ),
    (
        "thin-data-at-last-step-never-promotes",
        POLICY,
        canary(2),
        "2",
        THIN,
        ActionKind.HOLD,
        Phase.HOLDING,
        100,
    ),
    (
        "first-failure-is-recorded",
        POLICY,
        canary(1),
        "2",
        FAIL,
        ActionKind.RECORD_FAILURE,
        Phase.PROGRESSING,
        50,
    ),
    (
        "failure-beats-inconclusive",
        POLICY,
        canary(1),
        "2",
        MIXED,
        ActionKind.RECORD_FAILURE,
        Phase.PROGRESSING,
        50,
    ),
    (
        "max-failures-roll-back",
        POLICY,
        canary(1, failed=1),
        "2",
        FAIL,
        ActionKind.ROLL_BACK,
        Phase.ROLLED_BACK,
        0,
    ),
    (
        "rolled-back-version-is-not-retried",
        POLICY,
        ROLLED_BACK,
        "2",
        None,
        ActionKind.NOTHING,
        Phase.ROLLED_BACK,
        0,
    ),
    (
        "rolled-back-then-newer-version",
        POLICY,
        ROLLED_BACK,
        "3",
        None,
        ActionKind.START_CANARY,
        Phase.PROGRESSING,
        10,
    ),
    (
        "rolled-back-then-stable-pinned",
        POLICY,
        ROLLED_BACK,
        "1",
        None,
        ActionKind.SETTLE,
        Phase.STABLE,
        0,
    ),
    (
        "spec-back-to-stable-withdraws-canary",
        POLICY,
        canary(1),
        "1",
        PASS,
        ActionKind.ROLL_BACK,
        Phase.ROLLED_BACK,
        0,
    ),
    (
        "another-version-replaces-canary",
        POLICY,
        canary(1),
        "3",
        PASS,
        ActionKind.START_CANARY,
        Phase.PROGRESSING,
        10,
    ),
    (
        "promoting-is-finished-after-restart",
        POLICY,
        PROMOTING,
        "2",
        None,
        ActionKind.PROMOTE,
        Phase.PROMOTING,
        100,
    ),
    (
        "force-promote-from-stable",
        FORCE,
        STABLE,
        "2",
        None,
        ActionKind.FORCE_PROMOTE,
        Phase.PROMOTING,
        0,
    ),
    (
        "force-promote-mid-canary",
        FORCE,
        canary(0),
        "2",
        FAIL,
        ActionKind.FORCE_PROMOTE,
        Phase.PROMOTING,
        10,
    ),
    (
        "force-promote-a-rolled-back-version",
        FORCE,
        ROLLED_BACK,
        "2",
        None,
        ActionKind.FORCE_PROMOTE,
        Phase.PROMOTING,
        0,
    ),
    (
        "force-promote-when-already-stable",
        FORCE,
        STABLE,
        "1",
        None,
        ActionKind.NOTHING,
        Phase.STABLE,
        0,
    ),
    (
        "inconclusive-within-the-deadline-holds",
        DEADLINE,
        canary(1, phase=Phase.HOLDING, inconclusive_since=NOW - 299),
        "2",
        THIN,
        ActionKind.HOLD,
        Phase.HOLDING,
        50,
    ),
    (
        "inconclusive-past-the-deadline-rolls-back",
        DEADLINE,
        canary(1, phase=Phase.HOLDING, inconclusive_since=NOW - 301),
        "2",
        THIN,
        ActionKind.ROLL_BACK,
        Phase.ROLLED_BACK,
        0,
    ),
    (
        # the first inconclusive analysis of a step counts from the step's start
        "first-inconclusive-analysis-past-the-deadline-rolls-back",
        DEADLINE,
        canary(1, started=NOW - 301),
        "2",
        THIN,
        ActionKind.ROLL_BACK,
        Phase.ROLLED_BACK,
        0,
    ),
    (
        "pass-past-the-deadline-steps-up",
        DEADLINE,
        canary(1, phase=Phase.HOLDING, inconclusive_since=NOW - 1000),
        "2",
        PASS,
        ActionKind.STEP_UP,
        Phase.PROGRESSING,
        100,
    ),
    (
        "failure-past-the-deadline-is-a-failure",
        DEADLINE,
        canary(1, phase=Phase.HOLDING, inconclusive_since=NOW - 1000),
        "2",
        FAIL,
        ActionKind.RECORD_FAILURE,
        Phase.PROGRESSING,
        50,
    ),
    (
        "waiting-past-the-deadline-does-nothing",
        DEADLINE,
        canary(1, phase=Phase.HOLDING, inconclusive_since=NOW - 1000),
        "2",
        None,
        ActionKind.NOTHING,
        Phase.HOLDING,
        50,
    ),
    (
        "alias-unresolvable-keeps-canary",
        POLICY,
        canary(1),
        None,
        None,
        ActionKind.NOTHING,
        Phase.PROGRESSING,
        50,
    ),
]


@pytest.mark.parametrize(
    ("policy", "state", "desired", "checks", "kind", "phase", "weight"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decide_and_transition(
    *,
    policy: Policy,
    state: RolloutState,
    desired: str | None,
    checks: list[CheckOutcome] | None,
    kind: ActionKind,
    phase: Phase | None,
    weight: int,
) -> None:
    action = decide(policy, state, Observations(desired, NOW, checks))
    assert action.kind == kind, action.reason
    assert action.reason
    after = transition(policy, state, action, NOW)
    assert after.phase == phase
    assert after.canary_weight == weight


def test_every_action_kind_is_reachable_in_the_table() -> None:
    assert {row[5] for row in TABLE} == set(ActionKind)


def test_failed_checks_count_up_and_the_reason_names_the_check() -> None:
    action = decide(POLICY, canary(1, failed=1), Observations("2", NOW, FAIL))
    assert "success-rate 0.9 < min 0.99" in action.reason
    assert transition(POLICY, canary(1, failed=1), action, NOW).failed_checks == 2
    assert transition(POLICY, canary(1, failed=1), action, NOW).rolled_back_version == "2"


def test_a_canary_not_serving_past_its_deployment_deadline_is_rolled_back_at_once() -> None:
    """Unlike a noisy metric, pods that never came up are not judged again: the deployment
    deadline was the patience (the first failure rolls back, not the max_failed_checks-th)."""
    unavailable = [
        CheckOutcome(DEPLOYMENT_CHECK, Verdict.FAIL, "movies-canary: 0/1 pods available"),
        CheckOutcome("success-rate", Verdict.INCONCLUSIVE),
    ]
    action = decide(POLICY, canary(1), Observations("2", NOW, unavailable))
    assert action.kind == ActionKind.ROLL_BACK
    assert "not serving" in action.reason and "0/1 pods available" in action.reason
    assert transition(POLICY, canary(1), action, NOW).rolled_back_version == "2"


def test_withdrawn_canary_does_not_count_as_a_failed_analysis() -> None:
    action = decide(POLICY, canary(1), Observations("1", NOW, None))
    assert transition(POLICY, canary(1), action, NOW).failed_checks == 0


def test_promotion_finishes_with_the_canary_as_stable() -> None:
    promoting = transition(
        POLICY, canary(2), decide(POLICY, canary(2), Observations("2", NOW, PASS)), NOW
    )
    done = finish_promotion(promoting, NOW)
    assert (done.phase, done.stable_version, done.canary_version, done.canary_weight) == (
        Phase.STABLE,
        "2",
        None,
        0,
    )
    assert not done.force_promoted


def test_force_promotion_is_recorded_through_a_restart() -> None:
    forced = transition(FORCE, STABLE, decide(FORCE, STABLE, Observations("2", NOW)), NOW)
    assert forced.force_promoted
    again = decide(FORCE, forced, Observations("2", NOW))  # operator restarted mid-promotion
    assert finish_promotion(transition(FORCE, forced, again, NOW), NOW).force_promoted


def test_new_canary_resets_failures_and_rollback_memory() -> None:
    action = decide(POLICY, ROLLED_BACK, Observations("3", NOW))
    after = transition(POLICY, ROLLED_BACK, action, NOW)
    assert (after.failed_checks, after.rolled_back_version, after.step_started) == (0, None, NOW)


@pytest.mark.parametrize(
    ("state", "now", "due"),
    [
        (STABLE, NOW, False),
        (canary(0), NOW, True),  # started 61 s ago, interval 60 s
        (canary(0), NOW - 2, False),
        (RolloutState(phase=Phase.HOLDING, stable_version="1", canary_version="2"), NOW, True),
        (ROLLED_BACK, NOW, False),
    ],
)
def test_analysis_due(state: RolloutState, now: float, due: bool) -> None:
    assert analysis_due(POLICY, state, now) is due


def test_decide_never_promotes_or_rolls_back_on_inconclusive_data() -> None:
    for step in range(len(POLICY.steps)):
        for failed in range(POLICY.max_failed_checks):
            action = decide(POLICY, canary(step, failed), Observations("2", NOW, THIN))
            assert action == Action(ActionKind.HOLD, action.reason, "2")


@pytest.mark.parametrize(
    ("checks", "reason"),
    [
        (
            THIN,
            "Inconclusive: success-rate had 12/200 samples for 5m1s (inconclusiveDeadline 5m)",
        ),
        (
            [
                CheckOutcome("engagement", Verdict.INCONCLUSIVE, "no samples < minSamples 200",
                             None, 200),
                CheckOutcome("online-rmse", Verdict.INCONCLUSIVE, "no data", 500, 200),
            ],
            "Inconclusive: engagement had 0/200 samples, online-rmse (no data) for 5m1s "
            "(inconclusiveDeadline 5m)",
        ),
        ([], "Inconclusive: no checks for 5m1s (inconclusiveDeadline 5m)"),
    ],
)  # fmt: skip
def test_inconclusive_deadline_reason_names_the_checks_and_their_samples(
    checks: list[CheckOutcome], reason: str
) -> None:
    state = canary(1, phase=Phase.HOLDING, inconclusive_since=NOW - 301)
    action = decide(DEADLINE, state, Observations("2", NOW, checks))
    assert (action.kind, action.reason, action.version) == (ActionKind.ROLL_BACK, reason, "2")
    after = transition(DEADLINE, state, action, NOW)
    assert (after.rolled_back_version, after.failed_checks, after.inconclusive_since) == (
        "2",
        0,
        None,
    )


def test_inconclusive_since_starts_with_the_step_and_ends_with_a_conclusive_analysis() -> None:
    state = canary(1, started=NOW - 61)
    hold = decide(DEADLINE, state, Observations("2", NOW, THIN))
    held = transition(DEADLINE, state, hold, NOW)
    # the hold restarts the interval, but the deadline still counts from the step's start
    assert (held.step_started, held.inconclusive_since) == (NOW, NOW - 61)
    again = transition(DEADLINE, held, decide(DEADLINE, held, Observations("2", NOW + 60, THIN)),
                       NOW + 60)  # fmt: skip
    assert again.inconclusive_since == NOW - 61
    for checks in (PASS, FAIL):
        action = decide(DEADLINE, again, Observations("2", NOW + 120, checks))
        assert transition(DEADLINE, again, action, NOW + 120).inconclusive_since is None
