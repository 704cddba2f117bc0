"""`movierec retrain` and `movierec promote`: the training pipeline's command line (one JSON
summary line on stdout)."""

from __future__ import annotations

import argparse
import json
import sys

EXIT_GATE_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "retrain",
        help="gate, train both algorithms, evaluate, register the better one, maybe promote it",
        description=(
            "Quality gate -> snapshot -> time holdout -> fit user-user and item-item -> offline "
            "evaluation -> one MLflow run each -> register the better one as `challenger` -> "
            "compare with `champion` on the same holdout -> move `champion` if it wins."
        ),
    )
    parser.add_argument(
        "--db", required=True, help="ratings database URL (sqlite:/// or postgresql://)"
    )
    parser.add_argument("--name", required=True, help="MLflow registered model name")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///var/mlflow.db)",
    )
    parser.add_argument(
        "--force", action="store_true", help="train even if the data-quality gate fails"
    )
    parser.add_argument(
        "--force-promote",
        action="store_true",
        help="make the new version champion whatever the comparison says (needs --reason)",
    )
    parser.add_argument("--reason", help="why the promotion is forced (recorded as a tag)")
    parser.add_argument(
        "--min-rmse-gain",
        type=float,
        default=None,
        help="RMSE the challenger must gain over the champion to replace it (default 0.001)",
    )
    parser.add_argument(
        "--holdout-fraction",
        type=float,
        default=None,
        help="latest share of ratings held out for evaluation (default 0.2)",
    )
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default movierec)")
    parser.set_defaults(func=run_retrain)

    promote = sub.add_parser(
        "promote",
        help="point `champion` at a version by hand (roll back, or overrule the rule)",
        description=(
            "Move the `champion` alias to --version after checking it downloads, loads and "
            "answers; records who, why and when as tags on that version."
        ),
    )
    promote.add_argument("--name", required=True, help="MLflow registered model name")
    promote.add_argument("--version", required=True, help="version number to make champion")
    promote.add_argument("--reason", required=True, help="why (recorded as a tag)")
    promote.add_argument("--tracking-uri", help="MLflow tracking URI (default as for retrain)")
    promote.set_defaults(func=run_promote)


def run_retrain(args: argparse.Namespace) -> int:
    from movierec_ingestor.errors import BadInputError
    from pydantic import ValidationError

    from movierec_recommender.pipeline.config import PromotionRule, RetrainConfig
    from movierec_recommender.pipeline.job import QualityGateError, run_retrain
    from movierec_recommender.pipeline.summary import StoppedSummary

    options: dict[str, object] = {
        "db_url": args.db,
        "name": args.name,
        "tracking_uri": args.tracking_uri,
        "force_gate": args.force,
        "force_promote": args.force_promote,
        "reason": args.reason,
    }
    if args.holdout_fraction is not None:
        options["holdout_fraction"] = args.holdout_fraction
    if args.experiment:
        options["experiment"] = args.experiment
    try:
        if args.min_rmse_gain is not None:
            options["promotion"] = PromotionRule(min_rmse_gain=args.min_rmse_gain)
        config = RetrainConfig.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
            for err in exc.errors()
        )
        raise BadInputError(problems) from exc

    try:
        summary = run_retrain(config)
    except QualityGateError as exc:
        stopped = StoppedSummary(name=config.name, reason=str(exc), quality_report_id=exc.report_id)
        print(stopped.model_dump_json())
        print(f"movierec retrain: {exc} (use --force to train anyway)", file=sys.stderr)
        return EXIT_GATE_FAILED
    print(summary.model_dump_json())
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from movierec_recommender.pipeline.record import promote_version

    summary = promote_version(args.name, args.version, args.reason, args.tracking_uri)
    print(json.dumps(summary, sort_keys=True))
    return 0
