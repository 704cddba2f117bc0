"""`movierec serve` (the recommender service) and `movierec route` (the router), under gunicorn."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_PORT = 8082
# In a pod the probes and Services reach the pod IP: a loopback bind would fail them both.
DEFAULT_HOST = "0.0.0.0"
CONF = "python:movierec_recommender.web.gunicorn_conf"


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve recommendations over HTTP (gunicorn)")
    serve.add_argument(
        "--model", required=True, help="model folder, models:/NAME/VERSION or models:/NAME@ALIAS"
    )
    _common(serve)
    serve.add_argument(
        "--track",
        # MOVIEREC_TRACK: what the operator's Deployments set
        default=os.environ.get("MOVIEREC_RECOMMENDER_TRACK")
        or os.environ.get("MOVIEREC_TRACK")
        or "stable",
        help="track name reported in X-Track (default: $MOVIEREC_RECOMMENDER_TRACK, "
        "$MOVIEREC_TRACK, stable)",
    )
    serve.add_argument("--tracking-uri", help="MLflow tracking URI (for models:/ URIs)")
    serve.add_argument("--kafka", metavar="HOST:PORT", help="send provenance events to Kafka")
    serve.add_argument("--users-csv", help="users.csv for the demographic cold-start fallback")
    serve.add_argument("--db", help="database URL with a users table (cold-start fallback)")
    serve.add_argument(
        "--poll-interval", type=float, help="seconds between checks of a followed alias"
    )
    serve.set_defaults(func=run_serve)

    route = sub.add_parser("route", help="public entry point: assign tracks and forward")
    route.add_argument("--flags", required=True, help="LaunchDarkly flag-data file")
    route.add_argument(
        "--tracks",
        required=True,
        help='JSON track -> URL, e.g. {"stable": "http://127.0.0.1:8083"}',
    )
    _common(route)
    route.add_argument("--rate-limit", type=float, help="requests/s per client and worker (0: off)")
    route.set_defaults(func=run_route)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="bind address (default 0.0.0.0; 127.0.0.1 for local only)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")


def _bad(message: str) -> Exception:
    from movierec_ingestor.errors import BadInputError

    return BadInputError(message)


def _check_server_args(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise _bad(f"--port {args.port}: expected 1..65535")
    if args.workers < 1 or args.threads < 1:
        raise _bad("--workers and --threads must be at least 1")


def _gunicorn(app: str, args: argparse.Namespace, env: dict[str, str]) -> int:
    env = {
        **os.environ,
        **env,
        "MOVIEREC_EDGE_BIND": f"{args.host}:{args.port}",
        "MOVIEREC_EDGE_WORKERS": str(args.workers),
        "MOVIEREC_EDGE_THREADS": str(args.threads),
    }
    argv = [sys.executable, "-m", "gunicorn", "-c", CONF, app]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # gunicorn owns the process (and its signals) from here
    return 1  # not reached


def run_serve(args: argparse.Namespace) -> int:
    _check_server_args(args)
    model = args.model
    env: dict[str, str] = {"MOVIEREC_RECOMMENDER_TRACK": args.track}
    if model.startswith("models:/"):
        from movierec_recommender.registry.versions import parse_model_uri

        parse_model_uri(model)  # BadInputError on a malformed URI
    else:
        folder = Path(model)
        if not folder.is_dir():
            raise _bad(f"--model {model}: no such model folder")
        model = str(folder.resolve())
    env["MOVIEREC_RECOMMENDER_MODEL"] = model
    if args.tracking_uri:
        env["MOVIEREC_RECOMMENDER_TRACKING_URI"] = args.tracking_uri
    if args.kafka:
        env["MOVIEREC_RECOMMENDER_KAFKA_BOOTSTRAP"] = args.kafka
    if args.users_csv:
        if not Path(args.users_csv).is_file():
            raise _bad(f"--users-csv {args.users_csv}: no such file")
        env["MOVIEREC_RECOMMENDER_USERS_CSV"] = str(Path(args.users_csv).resolve())
    if args.db:
        env["MOVIEREC_RECOMMENDER_DB_URL"] = args.db
    if args.poll_interval:
        env["MOVIEREC_RECOMMENDER_POLL_INTERVAL_SECONDS"] = str(args.poll_interval)
    return _gunicorn("movierec_recommender.serving.wsgi:create()", args, env)


def run_route(args: argparse.Namespace) -> int:
    _check_server_args(args)
    try:
        tracks = json.loads(args.tracks)
    except ValueError as exc:
        raise _bad(f"--tracks is not JSON: {exc}") from exc
    if not isinstance(tracks, dict) or not all(isinstance(v, str) for v in tracks.values()):
        raise _bad("--tracks must be a JSON object of track name -> URL strings")
    from pydantic import ValidationError

    from movierec_recommender.router.settings import RouterSettings

    try:
        RouterSettings(tracks=tracks, flags_file=args.flags)
    except ValidationError as exc:
        raise _bad(f"--tracks: {exc.errors()[0]['msg']}") from exc
    if not tracks:
        raise _bad("--tracks names no track")
    flags = Path(args.flags)
    if not flags.parent.is_dir():
        raise _bad(f"--flags {args.flags}: folder does not exist")
    env = {
        "MOVIEREC_ROUTER_TRACKS": json.dumps(tracks),
        # absolute, but through the symlinks as given: a ConfigMap volume's flags.json points
        # at a `..<timestamp>` folder that the next update deletes (Path.resolve() pinned the
        # router to that folder, and it never saw a new weight after a restart)
        "MOVIEREC_ROUTER_FLAGS_FILE": os.path.abspath(flags),
    }
    if args.rate_limit is not None:
        env["MOVIEREC_ROUTER_RATE_LIMIT_RPS"] = str(args.rate_limit)
    return _gunicorn("movierec_recommender.router.wsgi:create()", args, env)
