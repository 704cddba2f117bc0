"""`movierec train` and `movierec predict`: fit a kNN model with offline metrics, score rating pairs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from movierec_ingestor.errors import BadInputError

log = logging.getLogger(__name__)

ALGO_NAMES = ("user-user", "item-item")


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="fit a kNN model, evaluate it on a time split, save it (and register it)",
        description=(
            "The training pipeline of `movierec retrain` without the quality gate and the "
            "promotion: snapshot -> time holdout -> fit -> evaluate -> refit on all ratings -> "
            "save (-> log and register). Prints a TrainSummary as one JSON line on stdout."
        ),
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
    """The training pipeline without the quality gate and the promotion (pipeline/job.py)."""
    from pydantic import ValidationError

    from movierec_recommender.pipeline.config import PipelineConfig
    from movierec_recommender.pipeline.job import run_train as run_pipeline_train

    if args.algo not in ALGO_NAMES:
        raise BadInputError(f"unknown --algo {args.algo!r}; choose user-user or item-item")
    if not 0 < args.test_fraction < 1:
        raise BadInputError("--test-fraction must be between 0 and 1")
    model_config = load_config(args.config)
    try:
        config = PipelineConfig(
            db_url=args.db,
            ratings_csv=args.ratings,
            include_quarantined=args.include_quarantined,
            name=args.register,
            tracking_uri=args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"),
            gate=False,
            promote=False,
            out=args.out,
            refit_full=True,
            holdout_fraction=args.test_fraction,
            algorithms=(args.algo,),
            model_configs={args.algo: model_config.model_dump(exclude_unset=True)},
        )
    except ValidationError as exc:
        raise BadInputError(f"invalid options: {exc}") from exc
    summary = run_pipeline_train(config)
    print(summary.model_dump_json(), file=sys.stdout, flush=True)
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
