"""`movierec retrain`, top to bottom: quality gate → data snapshot → time holdout → fit both
algorithms → offline evaluation → one MLflow run each → register the better one as `challenger`
→ re-evaluate `champion` on the same holdout → move `champion` if the rule (or a person) says so."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from movierec_ingestor.errors import BadInputError

from movierec_recommender.pipeline.config import RetrainConfig
from movierec_recommender.pipeline.promotion import Decision, decide, select_best
from movierec_recommender.pipeline.record import decision_tags

log = logging.getLogger(__name__)

CHAMPION_UNUSABLE = "champion-unusable"
SELECTION_RULE = "lowest holdout RMSE; ties: higher NDCG@10, then name"


class QualityGateError(RuntimeError):
    """The data-quality gate refused the training data; nothing was trained or registered."""

    def __init__(self, reason: str, report_id: int | None) -> None:
        super().__init__(f"quality gate failed: {reason}")
        self.reason = reason
        self.report_id = report_id


@dataclass
class RetrainSummary:
    """What one run did; printed as one JSON line by the CLI."""

    name: str
    version: str
    algo: str
    decision: str
    promoted: bool
    reason: str
    champion_before: str | None
    champion_after: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    runs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    quality_gate: str = "passed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_retrain(config: RetrainConfig) -> RetrainSummary:
    """Run the whole job; raises QualityGateError (nothing registered) or returns the summary."""
    from movierec_ingestor.db import normalize_url

    from movierec_recommender import registry
    from movierec_recommender.data import RatingsData
    from movierec_recommender.evaluation import time_split
    from movierec_recommender.models import build_model
    from movierec_recommender.pipeline.demographics import load_groups
    from movierec_recommender.pipeline.evaluate import evaluate_model
    from movierec_recommender.pipeline.lineage import snapshot, with_split

    tracking_uri = registry.resolve_tracking_uri(config.tracking_uri)

    # 1. validate: the quality gate decides whether this data may train a model at all
    gate_status, report_id = _quality_gate(config)

    # 2. lineage: what exactly we train on
    data = RatingsData.from_db(config.db_url, exclude_quarantined=True)
    if len(data) == 0:
        raise BadInputError(f"no ratings to train on in {_safe_url(config.db_url)}")
    if data.timestamps is None:
        raise BadInputError("ratings have no usable times: a time-based holdout is impossible")
    source = normalize_url(config.db_url).render_as_string(hide_password=True)
    train, test = time_split(data, config.holdout_fraction)
    if len(train) == 0 or len(test) == 0:
        raise BadInputError(
            f"{len(data)} ratings cannot be split {1 - config.holdout_fraction:.0%}/"
            f"{config.holdout_fraction:.0%} by time: need more data"
        )
    lineage = with_split(snapshot(data, source, report_id), train, test)
    groups = load_groups(config.db_url)
    log.info(
        "training on %d ratings (%s..%s), holdout %d from %s",
        lineage.train_rows,
        lineage.time_min,
        lineage.time_max,
        lineage.test_rows,
        lineage.split_time,
    )

    # 3-4. fit every algorithm on the same split, evaluate on the same holdout
    models: dict[str, Any] = {}
    metrics: dict[str, dict[str, float]] = {}
    for algo in config.algorithms:
        started = time.perf_counter()
        model = build_model(algo, _model_config(algo, config))
        model.fit(train)
        fit_seconds = time.perf_counter() - started
        models[algo] = model
        metrics[algo] = evaluate_model(
            model, train, test, groups, k=config.k, min_group_users=config.min_group_users
        )
        metrics[algo].update({"fit_seconds": fit_seconds, "model_bytes": float(model.nbytes)})
        log.info("%s: %s", algo, _fmt(metrics[algo]))

    # 5. log: one MLflow run per algorithm
    run_params = _pipeline_params(config)
    runs = {
        algo: registry.log_run(
            models[algo],
            lineage,
            metrics[algo],
            tracking_uri=tracking_uri,
            experiment=config.experiment,
            run_name=f"{config.name}-{algo}",
            tags={
                "pipeline": "retrain",
                "registered_model": config.name,
                "quality_gate": gate_status,
            },
            params=run_params,
        )
        for algo in config.algorithms
    }

    # 6. register the better one as a new version and make it the challenger
    best = select_best([(algo, metrics[algo]) for algo in config.algorithms])
    version = registry.register_version(
        runs[best],
        config.name,
        tracking_uri=tracking_uri,
        tags={
            "selection.rule": SELECTION_RULE,
            "selection.candidates": ",".join(config.algorithms),
        },
    )
    registry.set_alias(config.name, registry.CHALLENGER, version, tracking_uri)

    # 7. compare with the champion on the same holdout
    champion_before = registry.get_alias_version(config.name, registry.CHAMPION, tracking_uri)
    champion_metrics: dict[str, float] | None = None
    force_reason = config.reason if config.force_promote else None
    decision: Decision
    if champion_before is None:
        decision = decide(metrics[best], None, config.promotion, force_reason=force_reason)
    else:
        try:
            champion, _ = registry.download_model(
                f"models:/{config.name}/{champion_before}", tracking_uri
            )
        except registry.ModelDownloadError:
            raise  # perhaps a passing fault: fail the job rather than replace a good champion
        except registry.ModelArtifactError as exc:  # corrupted or unloadable: it cannot serve
            decision = decide(metrics[best], None, config.promotion, force_reason=force_reason)
            if force_reason is None:
                decision = Decision(True, CHAMPION_UNUSABLE, f"champion is unusable: {exc}")
        else:
            champion_metrics = evaluate_model(
                champion, train, test, groups, k=config.k, min_group_users=config.min_group_users
            )
            decision = decide(
                metrics[best], champion_metrics, config.promotion, force_reason=force_reason
            )

    # 8. record the decision on the version, then move `champion` if it says so
    registry.set_version_tags(
        config.name,
        version,
        _decision_tags(decision, champion_before, champion_metrics, config),
        tracking_uri,
    )
    if decision.promote:
        registry.set_alias(config.name, registry.CHAMPION, version, tracking_uri)
    champion_after = version if decision.promote else champion_before
    log.info("version %s (%s): %s: %s", version, best, decision.outcome, decision.reason)

    return RetrainSummary(
        name=config.name,
        version=version,
        algo=best,
        decision=decision.outcome,
        promoted=decision.promote,
        reason=decision.reason,
        champion_before=champion_before,
        champion_after=champion_after,
        challenger_metrics=metrics[best],
        champion_metrics=champion_metrics,
        runs={algo: run.run_id for algo, run in runs.items()},
        metrics=metrics,
        lineage=lineage.model_dump(mode="json"),
        quality_gate=gate_status,
    )


def _quality_gate(config: RetrainConfig) -> tuple[str, int | None]:
    """Run the gate; raise QualityGateError unless it passes or training is forced."""
    from movierec_ingestor.quality.gate import run_gate

    result = run_gate(config.db_url, force=config.force_gate)
    if result.report.get("forced"):  # `passed` includes the override; the report says it was one
        reason = gate_reason(result.report)
        log.warning("quality gate failed (%s); training anyway because of --force", reason)
        return f"forced: {reason}", result.report_id
    if not result.passed:
        raise QualityGateError(gate_reason(result.report), result.report_id)
    return "passed", result.report_id


def gate_reason(report: dict[str, Any]) -> str:
    """The gate's blocking findings, with the detail of each failed check."""
    details = {
        f"{c.get('name')}:{c.get('table')}": c.get("detail", "")
        for c in report.get("checks", [])
        if isinstance(c, dict) and c.get("severity") == "fail"
    }
    blocking = [
        f"{label} ({details[label]})" if details.get(label) else str(label)
        for label in report.get("blocking", [])
    ]
    return "blocking: " + ", ".join(blocking) if blocking else "see the quality report"


def _model_config(algo: str, config: RetrainConfig) -> Any:
    overrides = config.model_configs.get(algo)
    if not overrides:
        return None
    from movierec_recommender.models.config import KNNConfig

    return KNNConfig(**overrides)


def _pipeline_params(config: RetrainConfig) -> dict[str, Any]:
    """The job's settings worth seeing next to a run (no URLs, which may carry credentials)."""
    return {
        "pipeline": {
            "holdout_fraction": config.holdout_fraction,
            "k": config.k,
            "min_group_users": config.min_group_users,
            "force_gate": config.force_gate,
            "promotion": config.promotion.model_dump(),
        }
    }


def _decision_tags(
    decision: Decision,
    champion_before: str | None,
    champion_metrics: dict[str, float] | None,
    config: RetrainConfig,
) -> dict[str, str]:
    from movierec_recommender.registry import metric_key

    tags = decision_tags(
        decision.outcome,
        decision.promote,
        decision.reason,
        previous_champion=champion_before,
        forced_reason=config.reason if config.force_promote else None,
    )
    tags["promotion.min_rmse_gain"] = repr(config.promotion.min_rmse_gain)
    for key, value in (champion_metrics or {}).items():
        tags[f"promotion.champion.{metric_key(key)}"] = repr(float(value))
    return tags


def _safe_url(url: str) -> str:
    from movierec_ingestor.db import normalize_url

    try:
        return normalize_url(url).render_as_string(hide_password=True)
    except BadInputError:
        return "<database>"


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
