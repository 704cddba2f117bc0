"""`movierec simulate` and `movierec simulator-api`: the simulator's command line (light imports only)."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from movierec_ingestor.errors import BadInputError

log = logging.getLogger(__name__)

_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}(,[A-Za-z0-9_.\-\[\]:]+:\d{1,5})*$")


def register(subparsers: Any) -> None:
    """Add `simulate` and `simulator-api` to the root parser."""
    sim = subparsers.add_parser(
        "simulate",
        help="generate a synthetic movielog stream (or a ratings CSV) from a seeded world",
        description="Generate course-format event lines from a seeded synthetic world.",
    )
    _world_args(sim)
    sim.add_argument("--hours", type=float, default=48.0, help="simulated hours (default 48)")
    sim.add_argument(
        "--start",
        default=None,
        help="simulated start, ISO 8601 without zone (default: stream 2025-10-01T00:00:00; "
        "ratings-csv spans ten years from 2015-01-01)",
    )
    sim.add_argument("--out", type=Path, help="append lines (or write the CSV) to this file")
    sim.add_argument("--kafka", metavar="HOST:PORT", help="produce lines to this Kafka broker")
    sim.add_argument("--topic", default="movielog", help="Kafka topic (default movielog)")
    sim.add_argument(
        "--malformed-share", type=float, default=0.01, help="share of malformed lines (0.01)"
    )
    sim.add_argument(
        "--sessions-per-day",
        type=float,
        default=1.0,
        help="viewing sessions per user per day at average activity (1.0)",
    )
    sim.add_argument(
        "--max-minutes-per-view",
        type=int,
        default=30,
        help="cap on minute lines per viewing session (30)",
    )
    sim.add_argument(
        "--metadata-out", type=Path, metavar="DIR", help="also write DIR/users.csv, DIR/movies.csv"
    )
    sim.add_argument(
        "--drift", action="store_true", help="a new cohort shifts ratings in the newest window"
    )
    sim.add_argument(
        "--shilling-users", type=int, default=0, metavar="N", help="inject N fake raters"
    )
    sim.add_argument(
        "--shilling-target",
        default="auto",
        metavar="MOVIE|auto",
        help="movie id the fake raters target (default: auto)",
    )
    sim.add_argument(
        "--shilling-nuke", action="store_true", help="fake raters give 1 star instead of 5"
    )
    sim.add_argument(
        "--format",
        choices=("stream", "ratings-csv"),
        default="stream",
        help="stream: course-format lines; ratings-csv: user_id,movie_id,rating,timestamp",
    )
    sim.add_argument(
        "--ratings", type=int, default=100_000, help="rows for --format ratings-csv (100000)"
    )
    sim.set_defaults(func=run_simulate)

    api = subparsers.add_parser(
        "simulator-api",
        help="serve the world's metadata API (/user/<id>, /movie/<id>) on 127.0.0.1",
    )
    _world_args(api)
    api.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="port (default 8083)")
    api.set_defaults(func=run_api)


def _world_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=2000, help="users in the world (2000)")
    parser.add_argument("--movies", type=int, default=500, help="movies in the world (500)")
    parser.add_argument("--seed", type=int, default=0, help="world and stream seed (0)")


def _check_world(args: argparse.Namespace) -> None:
    if args.users < 1 or args.movies < 1:
        raise BadInputError(f"--users and --movies must be >= 1, got {args.users}, {args.movies}")


def _check_simulate(args: argparse.Namespace) -> datetime | None:
    _check_world(args)
    if args.hours <= 0:
        raise BadInputError(f"--hours must be > 0, got {args.hours}")
    if not 0.0 <= args.malformed_share < 1.0:
        raise BadInputError(f"--malformed-share must be in [0, 1), got {args.malformed_share}")
    if args.shilling_users < 0:
        raise BadInputError(f"--shilling-users must be >= 0, got {args.shilling_users}")
    if args.sessions_per_day <= 0 or args.max_minutes_per_view < 1:
        raise BadInputError("--sessions-per-day must be > 0 and --max-minutes-per-view >= 1")
    if args.ratings < 0:
        raise BadInputError(f"--ratings must be >= 0, got {args.ratings}")
    if (args.out is None) == (args.kafka is None):
        raise BadInputError("give exactly one of --out FILE or --kafka HOST:PORT")
    if args.kafka is not None and not _HOST_PORT.match(args.kafka):
        raise BadInputError(f"--kafka must be HOST:PORT, got {args.kafka!r}")
    if args.format == "ratings-csv" and args.out is None:
        raise BadInputError("--format ratings-csv writes a file: give --out FILE")
    if args.start is None:
        return None
    try:
        return datetime.fromisoformat(args.start).replace(tzinfo=None)
    except ValueError as exc:
        raise BadInputError(f"--start must be ISO 8601, got {args.start!r}") from exc


def run_simulate(args: argparse.Namespace) -> int:
    start = _check_simulate(args)
    from movierec_simulator.world import World

    began = time.perf_counter()
    world = World.generate(args.users, args.movies, args.seed)
    if args.metadata_out is not None:
        _write_metadata(world, args.metadata_out)
    if args.format == "ratings-csv":
        result = _ratings_csv(world, args, start)
    else:
        result = _stream(world, args, start)
    result["seconds"] = round(time.perf_counter() - began, 3)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _write_metadata(world: Any, folder: Path) -> None:
    from movierec_simulator.metadata import write_metadata

    try:
        write_metadata(world, folder)
    except OSError as exc:
        raise BadInputError(f"cannot write metadata to {folder}: {exc.strerror or exc}") from exc


def _ratings_csv(world: Any, args: argparse.Namespace, start: datetime | None) -> dict[str, Any]:
    import numpy as np

    from movierec_simulator.ratings import DEFAULT_START, generate_ratings, write_ratings_csv

    try:  # fail on an unwritable path before spending minutes on generation
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.open("ab").close()
    except OSError as exc:
        raise BadInputError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    ratings = generate_ratings(world, args.ratings, args.seed, start=start or DEFAULT_START)
    rows = write_ratings_csv(args.out, world, ratings)
    return {
        "format": "ratings-csv",
        "out": str(args.out),
        "ratings": rows,
        "users": int(np.count_nonzero(np.bincount(ratings.user_idx, minlength=world.n_users))),
        "movies": int(np.count_nonzero(np.bincount(ratings.movie_idx, minlength=world.n_movies))),
    }


def _stream(world: Any, args: argparse.Namespace, start: datetime | None) -> dict[str, Any]:
    from movierec_simulator.attacks import Drift, Shilling
    from movierec_simulator.sinks import FileSink, KafkaSink, Sink, SinkError, write_lines
    from movierec_simulator.stream import DEFAULT_START, generate_history

    shilling = None
    if args.shilling_users:
        target = None if args.shilling_target == "auto" else args.shilling_target
        shilling = Shilling(args.shilling_users, target, rating=1 if args.shilling_nuke else 5)
        if target is not None and world.movie_index(target) is None:
            raise BadInputError(f"--shilling-target {target!r} is not a movie of this world")
    sink: Sink
    if args.out is not None:
        try:
            sink = FileSink(args.out)
        except SinkError as exc:
            raise BadInputError(str(exc)) from exc
        where = str(args.out)
    else:
        from movierec_simulator.settings import SimulatorSettings

        timeout = SimulatorSettings().kafka_connect_timeout_s
        sink = KafkaSink(args.kafka, args.topic, connect_timeout_s=timeout)
        where = f"kafka://{args.kafka}/{args.topic}"
    try:
        history = generate_history(
            world,
            args.hours,
            seed=args.seed,
            start=start or DEFAULT_START,
            malformed_share=args.malformed_share,
            sessions_per_day=args.sessions_per_day,
            max_minutes_per_view=args.max_minutes_per_view,
            drift=Drift() if args.drift else None,
            shilling=shilling,
        )
        write_lines(sink, history.keyed())
    finally:
        sink.close()
    summary = history.summary.to_dict()
    if summary["drift"] is not None:
        cohort = summary["drift"].pop("cohort_user_ids")
        summary["drift"]["cohort_users"] = len(cohort)
    return {"format": "stream", "sink": where, **summary}


def run_api(args: argparse.Namespace) -> int:
    _check_world(args)
    from werkzeug.serving import make_server

    from movierec_simulator.api import create_app
    from movierec_simulator.settings import SimulatorSettings
    from movierec_simulator.world import World

    settings = SimulatorSettings()
    port = settings.api_port if args.port is None else args.port
    host = settings.api_host if args.host is None else args.host
    if not 0 <= port <= 65535:
        raise BadInputError(f"--port must be in 0..65535, got {port}")
    app = create_app(World.generate(args.users, args.movies, args.seed))
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise BadInputError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    url = f"http://{host}:{server.server_port}"
    sys.stdout.write(json.dumps({"url": url}) + "\n")
    sys.stdout.flush()
    log.info("metadata API on %s", url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
