"""One reconciliation of a RecommenderModel, read fresh from the API server: resolve the version,
analyse the canary when due, decide, apply the children, record the outcome, write ``status``."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import kopf

from movierec_operator import availability, builders, constants, images, status
from movierec_operator.analysis import (
    CheckResult,
    Prometheus,
    PrometheusError,
    run_analysis,
    threshold_text,
)
from movierec_operator.constants import DEPLOYMENT_CHECK, Outcome, Phase, Verdict
from movierec_operator.k8s import Kube
from movierec_operator.metrics import RolloutMetrics
from movierec_operator.mlflow_client import Registry, RegistryUnavailableError, VersionNotFoundError
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
from movierec_operator.settings import Settings
from movierec_operator.spec import ModelSpec, SpecError, parse_spec, promql_duration

log = logging.getLogger(__name__)

WARNING_ACTIONS = {ActionKind.RECORD_FAILURE, ActionKind.ROLL_BACK, ActionKind.FORCE_PROMOTE}
EVENT_REASONS = {
    ActionKind.INITIALIZE: "Initialized",
    ActionKind.START_CANARY: "CanaryStarted",
    ActionKind.STEP_UP: "CanaryStepUp",
    ActionKind.RECORD_FAILURE: "AnalysisFailed",
    ActionKind.HOLD: "Holding",
    ActionKind.PROMOTE: "Promoted",
    ActionKind.FORCE_PROMOTE: "ForcePromoted",
    ActionKind.ROLL_BACK: "RolledBack",
    ActionKind.SETTLE: "Stable",
}


@dataclass
class Deps:
    """The adapters a reconciliation talks to (built once at operator start-up)."""

    settings: Settings
    kube: Kube
    registry: Registry
    prometheus: Prometheus
    metrics: RolloutMetrics


def policy_of(spec: ModelSpec, settings: Settings) -> Policy:
    return Policy(
        steps=spec.rollout.steps,
        interval_seconds=settings.analysis_interval_override or spec.rollout.interval_seconds,
        max_failed_checks=spec.rollout.max_failed_checks,
        force_promote=spec.force_promote,
        inconclusive_deadline_seconds=spec.rollout.inconclusive_deadline_seconds,
    )


def retry_delay(retry: int) -> float:
    """Backoff for an outage (MLflow down): 15 s, 30 s, 60 s ... at most 5 minutes."""
    return float(min(300, 15 * 2 ** min(retry, 5)))


def reconcile(
    deps: Deps, namespace: str, name: str, *, now: float | None = None, retry: int = 0
) -> None:
    """Bring one RecommenderModel a step closer to its spec. Idempotent and restart-safe: every
    decision is made from the object's current ``status``, written back before side effects
    that must not repeat."""
    now = time.time() if now is None else now
    body = deps.kube.get_model(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    meta, raw_status = body["metadata"], body.get("status") or {}
    generation = meta.get("generation")
    settings = deps.settings
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError as exc:
        _fail(deps, body, "InvalidSpec", f"{exc}. Fix the RecommenderModel spec.", now)
        return
    refused = images.refusal(spec.image, settings.allowed_image_prefixes, settings.image)
    if refused:
        _fail(deps, body, "ImageNotAllowed", refused, now)
        return

    state = status.read_state(raw_status)
    try:
        desired = deps.registry.resolve(
            spec.model_name, version=spec.version, alias=spec.follow_alias
        )
    except RegistryUnavailableError as exc:
        _blocked(deps, body, state, exc.reason, now)
        raise kopf.TemporaryError(str(exc), delay=retry_delay(retry)) from exc
    except VersionNotFoundError as exc:
        source = f"alias {spec.follow_alias!r}" if spec.follow_alias else f"version {spec.version}"
        message = (
            f"{source} of model {spec.model_name!r} not found in MLflow ({exc}); register it "
            "or fix the spec"
        )
        if state.stable_version is None:
            _fail(deps, body, "VersionNotFound", message, now)
            return
        desired = None  # keep serving what runs; say why nothing moves
        log.warning("%s/%s: %s", namespace, name, message)

    policy = policy_of(spec, settings)
    gate = _Gate(deps, body, raw_status, now)
    results: list[CheckResult] | None = None
    if (
        desired is not None
        and desired == state.canary_version
        and not spec.force_promote
        and analysis_due(policy, state, now)
    ):
        # a canary whose pods are not serving has nothing to judge: hold (fail after the deadline)
        blocked = gate.check(constants.TRACK_CANARY, state.canary_version)
        results = [blocked] if blocked else _analyse(deps, spec, state, policy)
    outcomes = (
        [
            CheckOutcome(r.name, r.verdict, r.detail, r.samples, _min_samples(r, spec))
            for r in results
        ]
        if results is not None
        else None
    )
    action = decide(policy, state, Observations(desired, now, outcomes))
    new_state = transition(policy, state, action, now)
    log.info("%s/%s: %s (%s)", namespace, name, action.kind, action.reason)
    promoting = action.kind in (ActionKind.PROMOTE, ActionKind.FORCE_PROMOTE)
    # a restart (or an unavailable Deployment) may finish a promotion later: keep its reason
    promotion_reason = (
        raw_status.get("promotionReason") or action.reason
        if promoting and state.phase == Phase.PROMOTING
        else action.reason
    )
    if promoting:
        # persist "Promoting" first: a restart from here finishes the promotion, never re-judges
        _write_status(
            deps, body, new_state, action=action, results=results, now=now,
            generation=generation, desired=desired,
            extra={"promotionReason": promotion_reason, **gate.fields()},
        )  # fmt: skip
        finished = finish_promotion(new_state, now)
        _apply_children(deps, body, spec, finished)
        unavailable = gate.check(constants.TRACK_STABLE, finished.stable_version)
        if unavailable is not None:
            _hold(
                deps, body, new_state, action=action, gate=gate, unavailable=unavailable,
                generation=generation, desired=desired,
            )  # fmt: skip
            return
        outcome = Outcome.FORCE_PROMOTED if new_state.force_promoted else Outcome.PROMOTED
        _record(
            deps, spec, new_state.canary_version, outcome=outcome, reason=promotion_reason, now=now
        )
        new_state = finished
        action = Action(action.kind, promotion_reason, action.version)
    else:
        _apply_children(deps, body, spec, new_state)
        if new_state.phase == Phase.STABLE:
            unavailable = gate.check(constants.TRACK_STABLE, new_state.stable_version)
            if unavailable is not None:
                waiting = dataclasses.replace(new_state, phase=Phase.PROGRESSING)
                _hold(
                    deps, body, waiting, action=action, gate=gate, unavailable=unavailable,
                    generation=generation, desired=desired,
                )  # fmt: skip
                if action.kind == ActionKind.INITIALIZE:
                    deps.kube.event(
                        body, type_="Normal", reason="Initialized", message=action.reason
                    )
                return

    if action.kind in (ActionKind.START_CANARY, ActionKind.ROLL_BACK):
        gate.restart()
    _write_status(
        deps, body, new_state, action=action, results=results, now=now,
        generation=generation, desired=desired,
        extra={"promotionReason": None, **gate.fields()},
    )  # fmt: skip
    if action.kind == ActionKind.ROLL_BACK and action.version:
        # after the status: a rollback must stand even when MLflow is down for the tag
        try:
            _record(
                deps,
                spec,
                action.version,
                outcome=Outcome.ROLLED_BACK,
                reason=action.reason,
                now=now,
            )
        except kopf.TemporaryError as exc:
            log.warning("%s/%s: %s", namespace, name, exc)
            deps.kube.event(body, type_="Warning", reason="RegistryTagFailed", message=str(exc))
    if action.kind != ActionKind.NOTHING and not (
        action.kind == ActionKind.HOLD and state.phase == Phase.HOLDING
    ):
        deps.kube.event(
            body,
            type_="Warning" if action.kind in WARNING_ACTIONS else "Normal",
            reason=EVENT_REASONS[action.kind],
            message=action.reason,
        )
    deps.metrics.observe(f"{namespace}/{name}", new_state.phase, new_state.canary_weight)


class _Gate:
    """Availability of the operator's Deployments, and since when one has not been available
    (``status.unavailableSince``: the deadline counts from there)."""

    def __init__(self, deps: Deps, body: dict[str, Any], raw_status: dict[str, Any], now: float):
        self.deps, self.body, self.now = deps, body, now
        since = raw_status.get("unavailableSince")
        self.since: float | None = status.epoch(since) if since else None
        self.warned = bool(raw_status.get("unavailableWarned"))
        self.checked = False
        self.blocked = False

    @property
    def waited(self) -> float:
        return 0.0 if self.since is None else self.now - self.since

    def should_warn(self) -> bool:
        """A Warning Event once a Deployment has been unavailable for a while: pods starting
        during every rollout are normal, pods that do not come up are news."""
        grace = min(60.0, self.deps.settings.deployment_deadline_seconds / 2)
        if self.waited < grace or self.warned:
            return False
        self.warned = True
        return True

    def check(self, track: str, version: str | None) -> CheckResult | None:
        """``None`` when ``track``'s Deployment serves ``version``; else a check result that
        holds (inconclusive) or, past the deadline, fails."""
        settings = self.deps.settings
        if not settings.require_available_deployments or version is None:
            return None
        meta = self.body["metadata"]
        found = self.deps.kube.get_child(
            "Deployment", meta["namespace"], builders.child_name(meta["name"], track)
        )
        seen = availability.of(found, version=version)
        self.checked = True
        if seen.available:
            return None
        self.blocked = True
        if self.since is None:
            self.since = self.now
        deadline = settings.deployment_deadline_seconds
        if self.waited > deadline:
            # no counting seconds in the text: the same failure must read the same every tick
            detail = f"{seen.message} (not available within the deadline of {deadline:g}s)"
            return CheckResult(
                DEPLOYMENT_CHECK, Verdict.FAIL, None, None, "available", None, detail
            )
        return CheckResult(DEPLOYMENT_CHECK, Verdict.INCONCLUSIVE, None, None, "available", None,
                           seen.message)  # fmt: skip

    def restart(self) -> None:
        """A new canary, or none: the deadline of the Deployment that went does not carry over
        (a rolled-back canary's clock failed the next canary at its first analysis)."""
        self.since, self.warned, self.blocked = None, False, False

    def fields(self) -> dict[str, Any]:
        if self.checked and not self.blocked:
            self.since, self.warned = None, False
        return {
            "unavailableSince": status.rfc3339(self.since, precise=True) if self.since else None,
            "unavailableWarned": True if self.warned else None,
        }


def _hold(
    deps: Deps,
    body: dict[str, Any],
    state: RolloutState,
    *,
    action: Action,
    gate: _Gate,
    unavailable: CheckResult,
    generation: int | None,
    desired: str | None,
) -> None:
    """The Deployment that should serve is not available: say so (status, one Warning Event
    per distinct message); past the deadline the object fails."""
    message = unavailable.detail
    if unavailable.verdict == Verdict.FAIL:
        _fail(deps, body, "DeploymentUnavailable", message, gate.now, extra=gate.fields())
        return
    warn = gate.should_warn()
    overrides = {
        "Ready": ("False", "DeploymentUnavailable", message),
        "Progressing": ("True", "DeploymentUnavailable", message),
    }
    _write_status(
        deps, body, state, action=action, results=None, now=gate.now, generation=generation,
        desired=desired, message=message, overrides=overrides, extra=gate.fields(),
    )  # fmt: skip
    if warn:
        deps.kube.event(body, type_="Warning", reason="DeploymentUnavailable", message=message)
    deps.metrics.observe(
        f"{body['metadata']['namespace']}/{body['metadata']['name']}", state.phase, 0
    )


def _min_samples(result: CheckResult, spec: ModelSpec) -> int | None:
    """minSamples for a check that measured something; ``None`` for one that could not (an
    unavailable Deployment, Prometheus down): its detail, not a sample count, says why."""
    if result.value is None and result.samples is None:
        return None
    own = next((c.min_samples for c in spec.checks if c.name == result.name), None)
    return spec.rollout.min_samples if own is None else own


def _analyse(deps: Deps, spec: ModelSpec, state: RolloutState, policy: Policy) -> list[CheckResult]:
    window = (
        spec.rollout.window_seconds if spec.rollout.analysis_window else policy.interval_seconds
    )
    assert state.canary_version is not None and state.stable_version is not None
    try:
        return run_analysis(
            spec.checks,
            deps.prometheus.query,
            canary_version=state.canary_version,
            stable_version=state.stable_version,
            window=promql_duration(window),
            min_samples=spec.rollout.min_samples,
        )
    except PrometheusError as exc:
        # no data is no verdict: hold the canary where it is rather than judge it blind
        log.warning("analysis skipped: %s", exc)
        return [
            CheckResult(c.name, Verdict.INCONCLUSIVE, None, None, threshold_text(c), None, str(exc))
            for c in spec.checks[:1]
        ]


def _apply_children(deps: Deps, body: dict[str, Any], spec: ModelSpec, state: RolloutState) -> None:
    if state.stable_version is None:
        return
    settings = deps.settings
    meta = body["metadata"]
    common = {
        "model_name": spec.model_name,
        "image": spec.image or settings.image,
        "image_pull_policy": settings.image_pull_policy,
        "tracking_uri": settings.serving_tracking_uri or settings.mlflow_tracking_uri,
        "kafka_bootstrap": settings.serving_kafka_bootstrap,
        "provenance_topic": settings.serving_provenance_topic,
    }
    canary_on = state.canary_active and state.canary_version is not None
    canary_now = (
        deps.kube.get_child(
            "Deployment",
            meta["namespace"],
            builders.child_name(meta["name"], constants.TRACK_CANARY),
        )
        if canary_on and settings.require_available_deployments
        else None
    )
    weight = flag_weight(
        state, canary_now, require_available=settings.require_available_deployments
    )
    current_flags = deps.kube.get_child(
        "ConfigMap", meta["namespace"], builders.flag_configmap_name(meta["name"])
    )
    stable_replicas: int | None = spec.replicas
    autoscaled = (meta.get("annotations") or {}).get(constants.AUTOSCALED_ANNOTATION) == "true"
    stable_name = builders.child_name(meta["name"], constants.TRACK_STABLE)
    if autoscaled and deps.kube.get_child("Deployment", meta["namespace"], stable_name):
        stable_replicas = None  # the HorizontalPodAutoscaler's count stands
    objects = [
        builders.build_deployment(
            body,
            track=constants.TRACK_STABLE,
            version=state.stable_version,
            replicas=stable_replicas,
            **common,
        ),
        builders.build_deployment(
            body,
            track=constants.TRACK_CANARY,
            version=state.canary_version
            if canary_on and state.canary_version
            else state.stable_version,
            replicas=spec.replicas if canary_on else 0,
            **common,
        ),
        builders.build_service(body, track=constants.TRACK_STABLE),
        builders.build_service(body, track=constants.TRACK_CANARY),
        builders.build_flag_configmap(
            body,
            canary_weight=weight,
            version=builders.next_flag_version(current_flags, weight, now=time.time()),
        ),
    ]
    for obj in objects:
        deps.kube.apply(obj)


def flag_weight(
    state: RolloutState, canary: dict[str, Any] | None, *, require_available: bool
) -> int:
    """The canary's share of users in the flag data: its step's weight once its Deployment
    serves the canary version, 0 before (users sent to pods still loading the model only get
    the router's fallback, and count against the canary)."""
    if not state.canary_active or state.canary_version is None:
        return 0
    if require_available and not availability.of(canary, version=state.canary_version).available:
        return 0
    return state.canary_weight


def _record(
    deps: Deps, spec: ModelSpec, version: str | None, *, outcome: Outcome, reason: str, now: float
) -> None:
    if version is None:
        return
    try:
        deps.registry.record_outcome(spec.model_name, version, outcome, reason, now)
    except (RegistryUnavailableError, VersionNotFoundError) as exc:
        raise kopf.TemporaryError(f"recording {outcome} in MLflow: {exc}", delay=15) from exc


def _write_status(
    deps: Deps,
    body: dict[str, Any],
    state: RolloutState,
    *,
    action: Action,
    results: list[CheckResult] | None,
    now: float,
    generation: int | None,
    desired: str | None,
    message: str | None = None,
    overrides: dict[str, tuple[str, str, str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    old = body.get("status") or {}
    fields: dict[str, Any] = {
        **status.state_fields(state),
        "observedGeneration": generation,
        **(extra or {}),
    }
    if desired is not None:
        fields["desiredVersion"] = desired
    quiet = (
        action.kind == ActionKind.NOTHING
        and action.reason == "waiting for the next analysis"
        and not overrides
    )
    if not quiet or not old.get("conditions"):
        fields["message"] = message or action.reason
        fields["conditions"] = status.build_conditions(
            old.get("conditions"),
            state,
            action,
            now=now,
            generation=generation,
            overrides=overrides,
        )
    if results is not None:
        fields.update(status.analysis_fields(results, now, old.get("lastAnalysis")))
    patched = status.apply_merge_patch(old, fields)
    if patched == old:
        return  # nothing new: no write, no watch event, no resourceVersion churn
    # conditions keep lastTransitionTime when nothing flipped, so equal lists mean "no change"
    deps.kube.patch_status(body["metadata"]["namespace"], body["metadata"]["name"], fields)
    body["status"] = patched


def _blocked(
    deps: Deps, body: dict[str, Any], state: RolloutState, reason: str, now: float
) -> None:
    """MLflow cannot be reached: the reason in ``status`` (a new object shows ``Holding``, a
    running one keeps its phase) and one Warning Event per distinct reason."""
    old = body.get("status") or {}
    if old.get("message") == reason:
        return
    generation = body["metadata"].get("generation")
    phase = state.phase or Phase.HOLDING
    ready = (
        ("True", "MLflowUnavailable", f"version {state.stable_version} keeps serving; {reason}")
        if state.stable_version
        else ("False", "MLflowUnavailable", reason)
    )
    fields = {
        "phase": str(phase),
        "message": reason,
        "observedGeneration": generation,
        "conditions": status.build_conditions(
            old.get("conditions"),
            dataclasses.replace(state, phase=phase),
            Action(ActionKind.NOTHING, reason),
            now=now,
            generation=generation,
            overrides={"Ready": ready},
        ),
    }
    deps.kube.patch_status(body["metadata"]["namespace"], body["metadata"]["name"], fields)
    deps.kube.event(body, type_="Warning", reason="MLflowUnavailable", message=reason)


def _fail(
    deps: Deps,
    body: dict[str, Any],
    reason: str,
    message: str,
    now: float,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Phase Failed with a message a person can act on; one Event per distinct message."""
    old = body.get("status") or {}
    generation = body["metadata"].get("generation")
    if old.get("phase") == Phase.FAILED and old.get("message") == message:
        return
    state = status.read_state(old)
    failed = RolloutState(**{**state.__dict__, "phase": Phase.FAILED})
    action = Action(ActionKind.NOTHING, message)
    fields = {
        "phase": str(Phase.FAILED),
        "message": message,
        "observedGeneration": generation,
        "conditions": status.build_conditions(
            old.get("conditions"), failed, action, now=now, generation=generation
        ),
        **(extra or {}),
    }
    deps.kube.patch_status(body["metadata"]["namespace"], body["metadata"]["name"], fields)
    deps.kube.event(body, type_="Warning", reason=reason, message=message)
    deps.metrics.observe(
        f"{body['metadata']['namespace']}/{body['metadata']['name']}", Phase.FAILED, 0
    )
