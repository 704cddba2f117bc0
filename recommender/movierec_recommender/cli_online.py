"""`movierec evaluate-online`: online metrics per track from provenance events and ingested outcomes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from movierec_ingestor.errors import BadInputError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate-online",
        help="online RMSE, engagement, A/B significance and fairness per track",
    )
    p.add_argument("--db", required=True, help="store URL holding the outcomes (watches, ratings)")
    p.add_argument("--exposures", required=True, type=Path, help="provenance events, JSON lines")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="TRACK=DIR",
        help="model folder per track, for online RMSE (repeatable)",
    )
    p.add_argument("--window-minutes", type=float, default=120.0)
    p.add_argument("--pushgateway", help="push the gauges to this Pushgateway URL")
    p.set_defaults(func=run_evaluate_online)


def run_evaluate_online(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from movierec_recommender.online.evaluate import evaluate
    from movierec_recommender.online.exposures import read_exposures

    if not args.exposures.is_file():
        raise BadInputError(f"exposures file not found: {args.exposures}")
    predictors = {}
    for spec in args.model:
        track, sep, folder = spec.partition("=")
        if not sep or not Path(folder).is_dir():
            raise BadInputError(f"--model wants TRACK=DIR with an existing folder, got {spec!r}")
        from movierec_recommender.models import load_model

        predictors[track] = load_model(Path(folder)).predict
    try:
        exposures = list(read_exposures(args.exposures))
    except ValueError as exc:
        raise BadInputError(str(exc)) from exc
    if not exposures:
        raise BadInputError(f"no exposures in {args.exposures}")
    report = evaluate(exposures, args.db, predictors, window=timedelta(minutes=args.window_minutes))
    if args.pushgateway:
        from prometheus_client import push_to_gateway

        from movierec_recommender.online.metrics import report_registry

        push_to_gateway(
            args.pushgateway, job="movierec-online-eval", registry=report_registry(report)
        )
    print(json.dumps(report.to_dict(), sort_keys=True))
    return 0
