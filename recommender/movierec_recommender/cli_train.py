"""`movierec train` and `movierec predict`: fit a kNN model with offline metrics, score rating pairs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from movierec_ingestor.errors import BadInputError

log = logging.getLogger(__name__)

ALGO_NAMES = ("user-user", "item-item")


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="fit a kNN model, evaluate it on a time split, save it (and register it)",
        description="Prints the offline metrics as one JSON line on stdout.",
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", metavar="URL", help="SQLAlchemy URL of the ingestor's database")
    source.add_argument("--ratings", metavar="CSV", help="user_id,movie_id,rating[,timestamp]")
    # no `choices=` here: an unknown algo is bad input reported by our own message (exit 2)
    train.add_argument("--algo", required=True, help="user-user | item-item")
    train.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    train.add_argument("--register", metavar="NAME", help="log to MLflow and register as NAME")
    train.add_argument("--config", metavar="JSON", help="KNNConfig as JSON text or a JSON file")
    train.add_argument("--test-fraction", type=float, default=0.2, help="latest share held out")
    train.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)"
    )
    train.add_argument(
        "--include-quarantined", action="store_true", help="with --db: keep quarantined ratings"
    )
    train.set_defaults(func=run_train)

    predict = sub.add_parser("predict", help="predict ratings for user,movie pairs")
    predict.add_argument("--model", required=True, metavar="DIR", help="a directory from train")
    predict.add_argument("--pairs", required=True, metavar="CSV", help="header user_id,movie_id")
    predict.add_argument("--out", required=True, metavar="CSV", help="user_id,movie_id,prediction")
    predict.set_defaults(func=run_predict)


def load_config(text: str | None) -> Any:
    """KNNConfig from JSON text or a path to a JSON file; BadInputError on anything invalid."""
    from pydantic import ValidationError

    from movierec_recommender.models import KNNConfig

    if not text:
        return KNNConfig()
    raw = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise BadInputError(f"--config: not JSON and no such file: {text}")
        raw = path.read_text()
    try:
        return KNNConfig.model_validate_json(raw)
    except ValidationError as exc:
        raise BadInputError(f"--config: invalid model config: {exc}") from exc


def run_train(args: argparse.Namespace) -> int:
    if args.algo not in ALGO_NAMES:
        raise BadInputError(f"unknown --algo {args.algo!r}; choose user-user or item-item")
    if not 0 < args.test_fraction < 1:
        raise BadInputError("--test-fraction must be between 0 and 1")
    config = load_config(args.config)

    from movierec_recommender.data import RatingsData
    from movierec_recommender.evaluation import evaluate, time_split
    from movierec_recommender.models import build_model

    # validate -> lineage -> fit -> evaluate -> fit on everything -> save -> register
    if args.ratings:
        data = RatingsData.from_csv(args.ratings)
        source = {"source": "csv", "path": str(Path(args.ratings).resolve())}
    else:
        data = RatingsData.from_db(args.db, exclude_quarantined=not args.include_quarantined)
        source = {"source": "db", "url": _redact(args.db)}
    if len(data) < 2:
        raise BadInputError("need at least 2 ratings to train and evaluate")
    lineage = {**source, **data.lineage(), "test_fraction": args.test_fraction}

    train, test = time_split(data, args.test_fraction)
    started = time.perf_counter()
    model = build_model(args.algo, config).fit(train)
    eval_fit_seconds = time.perf_counter() - started
    metrics = evaluate(model, train, test)

    started = time.perf_counter()
    model = build_model(args.algo, config).fit(data)
    fit_seconds = time.perf_counter() - started
    model.save(args.out)
    metrics.update(
        fit_seconds=fit_seconds, eval_fit_seconds=eval_fit_seconds, model_bytes=model.nbytes
    )

    result: dict[str, Any] = {
        "algo": args.algo,
        "out": str(args.out),
        "n_ratings": len(data),
        "train_ratings": len(train),
        "test_ratings": len(test),
        **{k: _round(v) for k, v in metrics.items()},
    }
    if args.register:
        try:
            from movierec_recommender import registry
        except ModuleNotFoundError as exc:
            if exc.name != "movierec_recommender.registry":
                raise
            raise RuntimeError(
                "--register needs movierec_recommender.registry, which this install lacks; "
                f"the model is saved in {args.out}"
            ) from exc
        tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        # positional, as in docs/CONTRACTS-internal.md: (model, data_lineage, metrics, name, uri)
        version = registry.log_and_register(
            model, lineage, {k: float(v) for k, v in metrics.items()}, args.register, tracking_uri
        )
        result.update(registered=args.register, version=str(version))
    print(json.dumps(result), file=sys.stdout, flush=True)
    return 0


PAIRS_HEADER = ["user_id", "movie_id"]
# a cell starting with one of these is a formula to spreadsheet programs (CSV injection, OWASP)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(values: Any) -> Any:
    """Text cells with a leading apostrophe where a spreadsheet would read a formula."""
    import numpy as np

    values = np.asarray(values, dtype=str)
    risky = np.char.startswith(values, FORMULA_START[0])
    for start in FORMULA_START[1:]:
        risky |= np.char.startswith(values, start)
    return np.where(risky, np.char.add("'", values), values)


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from movierec_recommender.data import drop_repeated_headers, read_header
    from movierec_recommender.models import load_model

    model_dir = Path(args.model)
    if not (model_dir / "meta.json").is_file():
        raise BadInputError(f"--model: no model in {model_dir} (meta.json missing)")
    pairs_path = Path(args.pairs)
    if not pairs_path.is_file():
        raise BadInputError(f"--pairs: file not found: {pairs_path}")
    header = read_header(pairs_path)
    if header != PAIRS_HEADER:
        raise BadInputError(
            f"{pairs_path}: line 1: expected header 'user_id,movie_id', got {','.join(header)!r}"
        )
    try:
        frame = pd.read_csv(pairs_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{pairs_path}: cannot parse CSV: {exc}") from exc
    frame.columns = PAIRS_HEADER
    frame, _ = drop_repeated_headers(frame, PAIRS_HEADER, pairs_path)
    model = load_model(model_dir)
    users = frame["user_id"].str.strip().to_numpy(dtype=str)
    movies = frame["movie_id"].str.strip().to_numpy(dtype=str)
    pred = model.predict(users, movies) if len(frame) else np.empty(0)
    out = pd.DataFrame(
        {
            "user_id": csv_safe(users),
            "movie_id": csv_safe(movies),
            "prediction": np.round(pred, 6),
        }
    )
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(out_path, index=False)
    log.info("wrote %d predictions to %s", len(out), out_path)
    return 0


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def _redact(url: str) -> str:
    """Drop a password from a database URL before it is logged."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL fails later with its own message
        return url
