"""A simulated world for the monitoring tests: a course-format stream, its metadata, and the
provenance event the serving side would have emitted for each logged answer (two arms)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from movierec_ingestor.events import RecommendationEvent, parse_line
from movierec_recommender.provenance import build_event

START = datetime(2026, 1, 1)
HOURS = 36
TRACKS = {"rec-a": ("stable", "6"), "rec-b": ("canary", "7")}  # simulated servers -> arms


def movierec(*argv: str) -> str:
    """Run the CLI; fail the test with its stderr unless it exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "movierec", *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# (logged answer) -> (track, model version, items shown)
Assign = Callable[[RecommendationEvent], tuple[str, str, tuple[str, ...]]]


def by_server(event: RecommendationEvent) -> tuple[str, str, tuple[str, ...]]:
    """The arm of the simulated server that logged the answer, showing what it logged."""
    track, version = TRACKS[event.server.split(".")[0]]
    return track, version, event.results


def simulate(folder: Path, *extra: str, assign: Assign = by_server) -> dict[str, Path]:
    """Stream, metadata and provenance events of a 36-hour world of 300 users and 120 movies."""
    stream = folder / "stream.log"
    movierec(
        "simulate", "--users", "300", "--movies", "120", "--hours", str(HOURS), "--seed", "3",
        "--sessions-per-day", "3", "--start", START.isoformat(), "--out", str(stream),
        "--metadata-out", str(folder / "meta"), *extra,
    )  # fmt: skip
    events = []
    for line in stream.read_bytes().splitlines():
        try:
            event = parse_line(line)
        except Exception:  # the stream's deliberate garbage
            continue
        if isinstance(event, RecommendationEvent) and event.status >= 100:
            track, version, items = assign(event)
            events.append(
                build_event(
                    user_id=event.user_id,
                    track=track,
                    model_name="movies",
                    model_version=version,
                    ids=items,
                    scores=np.linspace(1, 0, len(items)),
                    latency_ms=float(event.latency_ms or 0),
                    status=event.status,
                    when=event.time,
                )
            )
    provenance = folder / "provenance.jsonl"
    provenance.write_text("".join(json.dumps(e) + "\n" for e in events))
    return {"stream": stream, "meta": folder / "meta", "provenance": provenance}


def fill(db: str, world: dict[str, Path], *extra: str) -> None:
    """Ingest the stream (with metadata) and the provenance events into the store at `db`."""
    movierec(
        "ingest", "--source", str(world["stream"]), "--db", db, "--metadata", str(world["meta"]),
        "--until-caught-up", *extra,
    )  # fmt: skip
    movierec("ingest", "--source", str(world["provenance"]), "--db", db, "--until-caught-up")
