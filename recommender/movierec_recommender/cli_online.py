"""`movierec evaluate-online`: online metrics per track, once from a provenance file or as a
service (`--follow`) that evaluates the store every interval and serves them on /metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from movierec_ingestor.errors import BadInputError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate-online",
        help="online RMSE, engagement, A/B significance and fairness per track",
        description=(
            "Without --follow: one report (JSON on stdout) from a provenance file. With --follow: "
            "every --interval seconds, join the store's recent exposures (table recommendations) "
            "with later watches and ratings and serve the metrics on /metrics (--port)."
        ),
    )
    p.add_argument(
        "--db",
        help="store URL holding exposures and outcomes (--follow: else MOVIEREC_EVALUATOR_DB_URL)",
    )
    p.add_argument("--exposures", type=Path, help="provenance events, JSON lines (one-shot mode)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="KEY=DIR",
        help="model folder for online RMSE: TRACK=DIR one-shot, MODEL_VERSION=DIR with --follow",
    )
    p.add_argument(
        "--window-minutes",
        type=float,
        default=None,
        help="engagement window (--follow: 30, else 120)",
    )
    p.add_argument("--pushgateway", help="push the gauges to this Pushgateway URL (one-shot)")
    p.add_argument("--follow", action="store_true", help="run as a service")
    p.add_argument("--interval", type=float, default=None, help="seconds between rounds (60)")
    p.add_argument("--port", type=int, default=None, help="/metrics port with --follow (9108)")
    p.add_argument(
        "--lookback-minutes", type=float, default=None, help="exposures evaluated (last 360)"
    )
    p.add_argument("--tracking-uri", help="MLflow, to load each served version (online RMSE)")
    p.add_argument("--baseline-track", help="track the A/B comparisons are against (stable)")
    p.set_defaults(func=run_evaluate_online)


def _models(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        key, sep, folder = spec.partition("=")
        if not sep or not key or not Path(folder).is_dir():
            raise BadInputError(f"--model wants KEY=DIR with an existing folder, got {spec!r}")
        out[key] = folder
    return out


def run_evaluate_online(args: argparse.Namespace) -> int:
    if args.follow:
        return _follow(args)
    if args.exposures is None or args.db is None:
        raise BadInputError("--db URL and --exposures FILE are required without --follow")
    return _once(args)


def _follow(args: argparse.Namespace) -> int:
    import signal
    import threading

    from pydantic import ValidationError

    from movierec_recommender.online.service import run
    from movierec_recommender.online.settings import EvaluatorSettings

    overrides = {
        "db_url": args.db,
        "interval_seconds": args.interval,
        "port": args.port,
        "lookback_minutes": args.lookback_minutes,
        "window_minutes": args.window_minutes,
        "tracking_uri": args.tracking_uri,
        "models": _models(args.model) or None,
        "baseline_track": args.baseline_track,
    }
    try:
        settings = EvaluatorSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise BadInputError(
            f"bad evaluator settings (flags or MOVIEREC_EVALUATOR_*): {exc}"
        ) from exc
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(settings, stop=stop)
    return 0


def _once(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from movierec_recommender.online.evaluate import evaluate
    from movierec_recommender.online.exposures import read_exposures

    if not args.exposures.is_file():
        raise BadInputError(f"exposures file not found: {args.exposures}")
    predictors = {}
    for track, folder in _models(args.model).items():
        from movierec_recommender.models import load_model

        predictors[track] = load_model(Path(folder)).predict
    try:
        exposures = list(read_exposures(args.exposures))
    except ValueError as exc:
        raise BadInputError(str(exc)) from exc
    if not exposures:
        raise BadInputError(f"no exposures in {args.exposures}")
    window = timedelta(minutes=args.window_minutes or 120.0)
    report = evaluate(exposures, args.db, predictors, window=window)
    if args.pushgateway:
        from prometheus_client import push_to_gateway

        from movierec_recommender.online.metrics import report_registry

        push_to_gateway(
            args.pushgateway, job="movierec-online-eval", registry=report_registry(report)
        )
    print(json.dumps(report.to_dict(), sort_keys=True))
    return 0
