"""The demo's live phase: the most-popular track, simulated users on the router, effect sizes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from movierec.demo_provenance import FileProvenanceSink
from movierec.process import free_port

BASELINE = (
    "popular"  # a third live track: the most-popular list, the bar personalisation must clear
)
PERSONALISED = "personalised"  # both model tracks together, in the comparison with BASELINE
LIVE_CLIENTS = 4


@contextmanager
def popular_track(db_url: str, provenance_dir: Path) -> Iterator[str]:
    """The most-popular baseline as a live track: every user gets the most-rated movies of the
    training data they have not rated, from a small in-process HTTP server (same answer format,
    headers and provenance events as `movierec serve`)."""
    from movierec_recommender.data import RatingsData
    from movierec_recommender.models import MostPopular
    from movierec_recommender.provenance import build_event
    from werkzeug.serving import make_server

    model = MostPopular().fit(RatingsData.from_db(db_url))
    sink = FileProvenanceSink(provenance_dir / f"provenance-{BASELINE}.jsonl")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started = time.perf_counter()
        path = str(environ.get("PATH_INFO", ""))
        raw_id = path.rstrip("/").rsplit("/", 1)[-1]
        if not path.startswith("/recommend/") or not raw_id.isdigit():
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        ids, scores = model.recommend(raw_id, n=20)
        headers = [("Content-Type", "text/plain"), ("X-Track", BASELINE)]
        start_response("200 OK", [*headers, ("X-Model-Version", BASELINE)])
        if environ.get("REQUEST_METHOD", "GET") != "HEAD":
            sink.emit(
                build_event(
                    user_id=int(raw_id),
                    track=BASELINE,
                    model_name=BASELINE,
                    model_version=BASELINE,
                    ids=list(ids),
                    scores=[float(s) for s in scores],
                    latency_ms=(time.perf_counter() - started) * 1000,
                    status=200,
                )
            )
        return [",".join(ids).encode()]

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on stderr
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        sink.close()


def live_phase(
    world: Any,
    router_url: str,
    live_files: list[Path],
    algos: tuple[str, ...],
    *,
    requests: int,
    seconds: float,
    seed: int,
    start: datetime,
) -> dict[str, Any]:
    """Simulated users call the router from a few threads, each over its own users and log file."""
    import numpy as np
    from movierec_simulator.client import run_sessions
    from movierec_simulator.sinks import FileSink

    shards = np.array_split(np.asarray(world.user_ids), len(live_files))
    t0 = time.monotonic()

    def play(i: int) -> Any:
        with FileSink(live_files[i]) as sink:
            return run_sessions(
                world, router_url, shards[i].tolist(), requests // len(live_files), sink,
                seed=seed * 100 + i, deadline_s=seconds, start=start,
            )  # fmt: skip

    with ThreadPoolExecutor(len(live_files)) as pool:
        results = list(pool.map(play, range(len(live_files))))
    per_track: dict[str, dict[str, float]] = {}
    for r in results:
        for track, totals in r.by_track().items():
            acc = per_track.setdefault(track, {})
            for key in ("requests", "watched", "minutes", "rated", "errors"):
                acc[key] = acc.get(key, 0) + totals[key]
    for acc in per_track.values():
        acc["watched_per_request"] = acc["watched"] / max(acc["requests"], 1)
    outcomes = [o for r in results for o in r.outcomes]
    # both model tracks are personalised: pooled, they are twice the sample against the baseline
    pooled = [replace(o, track=PERSONALISED) if o.track in algos else o for o in outcomes]
    versus = {algo: engagement_effect(outcomes, algo, BASELINE) for algo in sorted(algos)}
    versus[PERSONALISED] = engagement_effect(pooled, PERSONALISED, BASELINE)
    return {
        "by_track": per_track,
        "versus_popular": {name: effect.model_dump() for name, effect in versus.items()},
        "requests": len(outcomes),
        "errors": sum(1 for o in outcomes if o.status != 200),
        "client_latency_ms": _by_track(outcomes),
        "seconds": round(time.monotonic() - t0, 1),
    }


def _by_track(outcomes: list[Any]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for o in outcomes:
        out.setdefault(o.track or "none", []).append(float(o.latency_ms))
    return out


class EngagementEffect(BaseModel):
    """Track `a` against `b` on engagement: per user, the share of the recommended movies they
    watched (the user is the randomisation unit: the router assigns each user one track)."""

    a: str
    b: str
    users_a: int
    users_b: int
    mean_a: float
    mean_b: float
    difference: float
    cohens_d: float  # difference over the pooled per-user standard deviation
    p_value: float  # Welch's t-test, two-sided


def engagement_effect(outcomes: list[Any], a: str, b: str) -> EngagementEffect:
    """Per-user engagement of two tracks compared: means, Cohen's d and Welch's p-value."""
    import numpy as np
    from scipy import stats

    per_user: dict[str, dict[int, list[float]]] = {a: {}, b: {}}
    for o in outcomes:
        if o.track in per_user and o.status == 200 and o.items:
            per_user[o.track].setdefault(o.user_id, []).append(len(o.watched) / len(o.items))
    xa = np.array([np.mean(v) for v in per_user[a].values()])
    xb = np.array([np.mean(v) for v in per_user[b].values()])
    nan = float("nan")
    if len(xa) < 2 or len(xb) < 2:
        return EngagementEffect(
            a=a, b=b, users_a=len(xa), users_b=len(xb), mean_a=nan, mean_b=nan,
            difference=nan, cohens_d=nan, p_value=nan,
        )  # fmt: skip
    dof = len(xa) + len(xb) - 2
    pooled = float(np.sqrt(((len(xa) - 1) * xa.var(ddof=1) + (len(xb) - 1) * xb.var(ddof=1)) / dof))
    diff = float(xa.mean() - xb.mean())
    return EngagementEffect(
        a=a,
        b=b,
        users_a=len(xa),
        users_b=len(xb),
        mean_a=float(xa.mean()),
        mean_b=float(xb.mean()),
        difference=diff,
        cohens_d=diff / pooled if pooled > 0 else nan,
        p_value=float(stats.ttest_ind(xa, xb, equal_var=False).pvalue),
    )
