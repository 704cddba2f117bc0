"""The training pipeline, top to bottom, shared by `movierec train` and `movierec retrain`:
quality gate → data snapshot → holdout → fit each algorithm → offline evaluation (rating error,
ranking, coverage, popularity share, fairness) → one MLflow run each → register the better one →
alias `challenger` → re-evaluate `champion` on the same holdout → move `champion` if the rule (or
a person) says so. `train` runs it with the gate and the promotion steps off."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from movierec_ingestor.errors import BadInputError

from movierec_recommender.pipeline.config import PipelineConfig, RetrainConfig
from movierec_recommender.pipeline.promotion import Decision, decide, select_best
from movierec_recommender.pipeline.record import decision_tags
from movierec_recommender.pipeline.summary import RetrainSummary, TrainSummary

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
class PipelineResult:
    """What one pipeline run produced; the commands turn it into their typed summary."""

    best: str
    model: Any
    metrics: dict[str, dict[str, float]]
    lineage: Any
    n_ratings: int
    runs: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    decision: Decision | None = None
    champion_before: str | None = None
    champion_metrics: dict[str, float] | None = None
    quality_gate: str = "skipped"


def run_pipeline(config: PipelineConfig) -> PipelineResult:
    """Run the steps `config` asks for; raises QualityGateError (nothing logged) when the gate
    blocks, BadInputError for unusable data."""
    from movierec_recommender.data import RatingsData
    from movierec_recommender.evaluation import time_split
    from movierec_recommender.models import build_model
    from movierec_recommender.pipeline.demographics import load_groups
    from movierec_recommender.pipeline.evaluate import evaluate_model
    from movierec_recommender.pipeline.lineage import snapshot, with_split

    # 1. validate: the quality gate decides whether this data may train a model at all
    gate_status, report_id = _quality_gate(config) if config.gate else ("skipped", None)

    # 2. lineage: what exactly we train on
    if config.db_url is not None:
        data = RatingsData.from_db(
            config.db_url, exclude_quarantined=not config.include_quarantined
        )
        source = _safe_url(config.db_url)
        if len(data) and data.timestamps is None:
            raise BadInputError("ratings have no usable times: a time-based holdout is impossible")
    else:
        from pathlib import Path

        assert config.ratings_csv is not None  # the config's validator: exactly one source
        data = RatingsData.from_csv(config.ratings_csv)
        source = str(Path(config.ratings_csv).resolve())
    if len(data) < 2:
        raise BadInputError(
            f"{len(data)} ratings in {source}: need at least 2 to train and evaluate"
        )
    train, test = time_split(data, config.holdout_fraction)
    lineage = with_split(snapshot(data, source, report_id), train, test)
    groups = load_groups(config.db_url) if config.db_url is not None else {}
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
    best = select_best([(algo, metrics[algo]) for algo in config.algorithms])

    # the artifact: the evaluated model, or (train's default) a refit on every rating
    if config.refit_full:
        started = time.perf_counter()
        models[best] = build_model(best, _model_config(best, config)).fit(data)
        metrics[best]["refit_seconds"] = time.perf_counter() - started
        metrics[best]["model_bytes"] = float(models[best].nbytes)
    if config.out:
        models[best].save(config.out)
    result = PipelineResult(
        best=best,
        model=models[best],
        metrics=metrics,
        lineage=lineage,
        n_ratings=len(data),
        quality_gate=gate_status,
    )
    if config.name is None:
        return result

    # 5. log: one MLflow run per algorithm
    from movierec_recommender import registry

    tracking_uri = registry.resolve_tracking_uri(config.tracking_uri)
    run_params = _pipeline_params(config)
    pipeline = "retrain" if config.promote else "train"
    runs = {
        algo: registry.log_run(
            models[algo],
            lineage,
            metrics[algo],
            tracking_uri=tracking_uri,
            experiment=config.experiment,
            run_name=f"{config.name}-{algo}",
            tags={
                "pipeline": pipeline,
                "registered_model": config.name,
                "quality_gate": gate_status,
            },
            params=run_params,
        )
        for algo in config.algorithms
    }
    result.runs = {algo: run.run_id for algo, run in runs.items()}

    # 6. register the better one as a new version
    version = registry.register_version(
        runs[best],
        config.name,
        tracking_uri=tracking_uri,
        tags={
            "selection.rule": SELECTION_RULE,
            "selection.candidates": ",".join(config.algorithms),
        },
    )
    result.version = version
    if not config.promote:
        return result
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
    log.info("version %s (%s): %s: %s", version, best, decision.outcome, decision.reason)
    result.decision = decision
    result.champion_before = champion_before
    result.champion_metrics = champion_metrics
    return result


def run_retrain(config: RetrainConfig) -> RetrainSummary:
    """`movierec retrain`: the whole pipeline; raises QualityGateError or returns the summary.
    A run that registered a version records its time on the Pushgateway (when one is set)."""
    from movierec_recommender.pipeline.metrics import record_success

    result = run_pipeline(config)
    assert result.decision is not None and result.version is not None and config.name
    record_success(config.name)
    return RetrainSummary(
        name=config.name,
        version=result.version,
        algo=result.best,
        decision=result.decision.outcome,
        promoted=result.decision.promote,
        reason=result.decision.reason,
        champion_before=result.champion_before,
        champion_after=result.version if result.decision.promote else result.champion_before,
        challenger_metrics=result.metrics[result.best],
        champion_metrics=result.champion_metrics,
        runs=result.runs,
        metrics=result.metrics,
        lineage=result.lineage.model_dump(mode="json"),
        quality_gate=result.quality_gate,
    )


def run_train(config: PipelineConfig) -> TrainSummary:
    """`movierec train`: the pipeline without gate and promotion (`config` says so)."""
    result = run_pipeline(config)
    lineage = result.lineage
    return TrainSummary(
        algo=result.best,
        out=str(config.out),
        n_ratings=result.n_ratings,
        train_ratings=int(lineage.train_rows or 0),
        test_ratings=int(lineage.test_rows or 0),
        metrics=result.metrics[result.best],
        registered=config.name,
        version=result.version,
        run_id=result.runs.get(result.best),
        lineage=lineage.model_dump(mode="json"),
    )


def _quality_gate(config: PipelineConfig) -> tuple[str, int | None]:
    """Run the gate; raise QualityGateError unless it passes or training is forced."""
    from movierec_ingestor.quality.gate import run_gate

    assert config.db_url is not None  # the config's validator: the gate needs the database
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


def _model_config(algo: str, config: PipelineConfig) -> Any:
    overrides = config.model_configs.get(algo)
    if not overrides:
        return None
    from movierec_recommender.models.config import KNNConfig

    return KNNConfig(**overrides)


def _pipeline_params(config: PipelineConfig) -> dict[str, Any]:
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
    config: PipelineConfig,
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
