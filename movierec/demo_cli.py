"""`movierec demo`: the whole loop on embedded defaults."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate, ingest, check, train, register, serve, route, evaluate online: end to end",
    )
    p.add_argument("--users", type=int, default=1500)
    p.add_argument("--movies", type=int, default=400)
    p.add_argument("--hours", type=float, default=72.0, help="simulated history before serving")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--requests", type=int, default=3000, help="live recommendation requests")
    p.add_argument("--live-seconds", type=float, default=60.0, help="bound on the live phase")
    p.add_argument("--workdir", type=Path, default=Path("demo-output"))
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from movierec.demo import DemoConfig, run

    config = DemoConfig(
        users=args.users,
        movies=args.movies,
        hours=args.hours,
        seed=args.seed,
        requests=args.requests,
        live_seconds=args.live_seconds,
        workdir=args.workdir,
    )
    return run(config)
