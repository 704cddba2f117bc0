"""`movierec quality`: run the data-quality gate on a store; exit 0 pass, 1 blocked, 2 bad input."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_PASSED, EXIT_BLOCKED = 0, 1


def register(sub: Any) -> None:
    """Add the `quality` subcommand to the root CLI's subparsers."""
    p = sub.add_parser(
        "quality",
        help="data-quality gate: schema, drift and poisoning checks of the newest window",
        description=(
            "Judge the newest window of the store against its reference: schema and range "
            "checks, drift (PSI, chi-squared, KS with effect sizes), rating poisoning. Stores "
            "the report in quality_reports and suspect ratings in quarantine. Exit 0 when "
            "training may proceed (also when forced), 1 when the gate blocks, 2 on bad input."
        ),
    )
    p.add_argument("--db", required=True, help="database URL (sqlite:///... or postgresql://...)")
    p.add_argument("--force", action="store_true", help="let a blocked gate pass; recorded")
    p.add_argument(
        "--window-hours", type=float, default=None, help="newest window length (default 6)"
    )
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument(
        "--metrics-out",
        default=None,
        help="also write the gate's Prometheus metrics to this file (textfile collector format)",
    )
    p.set_defaults(func=run_quality)

    q = sub.add_parser(
        "quarantine",
        help="the poisoning quarantine: list held ratings with their reasons, release them",
        description=(
            "Ratings the quality gate quarantined are left out of training. `list` shows each "
            "held (user, movie) with the evidence; `release` returns matching pairs to training "
            "for good (the gate will not quarantine them again)."
        ),
    )
    actions = q.add_subparsers(dest="action", required=True, metavar="{list,release}")
    for name, helptext in (
        ("list", "show quarantined ratings, newest first"),
        ("release", "release quarantined ratings after review"),
    ):
        a = actions.add_parser(name, help=helptext)
        a.add_argument("--db", required=True, help="database URL")
        a.add_argument("--user", type=int, help="only this user's ratings")
        a.add_argument("--movie", help="only ratings of this movie")
        a.add_argument("--report", type=int, help="only pairs quarantined by this gate report")
        if name == "list":
            a.add_argument("--json", action="store_true", help="one JSON object per line")
        else:
            a.add_argument("--note", help="why it was released (kept with the release)")
        a.set_defaults(func=run_quarantine)


def run_quality(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prometheus_client import CollectorRegistry, write_to_textfile

    from movierec_ingestor.db import normalize_url
    from movierec_ingestor.errors import BadInputError
    from movierec_ingestor.quality.gate import run_gate
    from movierec_ingestor.quality.settings import QualitySettings
    from movierec_ingestor.quality.summary import render

    if args.window_hours is not None and not args.window_hours > 0:
        raise BadInputError(f"--window-hours must be positive, got {args.window_hours}")
    url = normalize_url(args.db)
    if url.get_backend_name() == "sqlite":
        path = url.database
        if not path or path == ":memory:" or not Path(path).is_file():
            # A gate on a store that does not exist would judge an empty database and pass.
            raise BadInputError(f"no database file at {path!r}: ingest first or fix --db")
    registry = CollectorRegistry()
    result = run_gate(
        args.db,
        force=args.force,
        window=args.window_hours,
        settings=QualitySettings(),
        registry=registry,
    )
    if args.metrics_out:
        write_to_textfile(args.metrics_out, registry)
    if args.json:
        sys.stdout.write(json.dumps({"passed": result.passed, **result.report}) + "\n")
    else:
        sys.stdout.write(render(result.report, result.passed) + "\n")
    return EXIT_PASSED if result.passed else EXIT_BLOCKED


def run_quarantine(args: argparse.Namespace) -> int:
    from movierec_ingestor import db
    from movierec_ingestor.errors import BadInputError
    from movierec_ingestor.quality import quarantine

    url = db.normalize_url(args.db)
    if url.get_backend_name() == "sqlite" and not (url.database and _is_file(url.database)):
        raise BadInputError(f"no database file at {url.database!r}: fix --db")
    engine = db.create_engine(args.db)
    try:
        db.upgrade(engine)
        filters = {"user": args.user, "movie": args.movie, "report": args.report}
        if args.action == "list":
            held = quarantine.list_held(engine, **filters)
            for h in held:
                if args.json:
                    sys.stdout.write(json.dumps(h.as_dict()) + "\n")
                else:
                    sys.stdout.write(
                        f"{h.user_id}\t{h.movie_id}\treport {h.report_id}\t{h.reason}\n"
                    )
            if not args.json:
                sys.stdout.write(f"{len(held)} quarantined\n")
            return 0
        if all(v is None for v in filters.values()):
            raise BadInputError("release needs --user, --movie and/or --report")
        released = quarantine.release(engine, note=args.note, **filters)
        sys.stdout.write(json.dumps({"released": len(released)}) + "\n")
        return 0
    finally:
        engine.dispose()


def _is_file(path: str) -> bool:
    from pathlib import Path

    return path != ":memory:" and Path(path).is_file()
