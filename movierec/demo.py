"""The embedded demo: every step of the loop, for real, on one machine with no external services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from movierec_recommender.pipeline.summary import TrainSummary
from pydantic import BaseModel, ConfigDict

from movierec.process import ProcessGroup, free_port, process_group
from movierec.report import write_report

MODEL_NAME = "movies"
ALGOS = ("user-user", "item-item")
BASELINE = (
    "popular"  # a third live track: the most-popular list, the bar personalisation must clear
)
PERSONALISED = "personalised"  # both model tracks together, in the comparison with BASELINE
LIVE_CLIENTS = 4
SERVE_READY_S = 300.0


@dataclass(frozen=True)
class DemoConfig:
    users: int = 1500
    movies: int = 400
    hours: float = 72.0
    seed: int = 7
    requests: int = 3000
    live_seconds: float = 60.0
    workdir: Path = Path("demo-output")


@dataclass
class Progress:
    """Step timings, printed as they happen and kept for the report."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        print(f"[{time.monotonic() - self.started:6.1f}s] {name} ...", flush=True)
        detail: dict[str, Any] = {}
        t0 = time.monotonic()
        yield detail
        seconds = time.monotonic() - t0
        self.steps.append({"step": name, "seconds": round(seconds, 2), "result": _short(detail)})
        print(
            f"[{time.monotonic() - self.started:6.1f}s]   done in {seconds:.1f}s {_short(detail)}",
            flush=True,
        )


def _short(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items())


class SimulateSummary(BaseModel):
    """What the demo reads of `movierec simulate`'s line (the rest is kept, not interpreted)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    lines: int
    malformed_total: int


class IngestSummary(BaseModel):
    """`movierec ingest`'s line: every line read is stored, a duplicate or a dead letter."""

    model_config = ConfigDict(extra="allow", frozen=True)

    read: int
    stored: int
    duplicates: int
    dead_letters: int
    skipped: int = 0


class QualitySummary(BaseModel):
    """`movierec quality --json`: the verdict (the report's details are kept as they are)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    passed: bool


def _movierec(*argv: str, env: dict[str, str] | None = None) -> str:
    """Run a movierec subcommand as a user would; return its JSON summary line (the caller parses
    it with that command's typed summary)."""
    proc = subprocess.run(
        [sys.executable, "-m", "movierec", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode not in (0,):
        raise RuntimeError(
            f"movierec {argv[0]} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"movierec {argv[0]} printed no JSON summary line")
    return lines[-1]


def run(config: DemoConfig) -> int:
    work = config.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    paths = {
        "history": work / "history.log",
        "live": work / "live.log",
        "metadata": work / "metadata",
        "db": work / "movierec.db",
        "provenance": work / "provenance.jsonl",
        "flags": work / "flags.json",
        "models": work / "models",
        "logs": work / "logs",
    }
    for key in ("history", "db", "provenance"):
        paths[key].unlink(missing_ok=True)
    for stale in work.glob("live-*.log"):
        stale.unlink()
    db_url = f"sqlite:///{paths['db']}"
    mlflow_env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "MOVIEREC_MLFLOW_ARTIFACTS": str(work / "mlartifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    os.environ.update(mlflow_env)
    progress = Progress()
    summary: dict[str, Any] = {
        "title": f"{config.users} users, {config.movies} movies, {config.hours:g} h of history, seed {config.seed}"
    }

    with progress.step("simulate history") as d:
        sim_line = _movierec(
            "simulate", "--users", str(config.users), "--movies", str(config.movies),
            "--hours", str(config.hours), "--seed", str(config.seed),
            "--out", str(paths["history"]), "--metadata-out", str(paths["metadata"]),
            # short, frequent viewing sessions: more ratings per streamed line, so that a
            # 3-minute demo has enough explicit feedback to separate the two algorithms
            "--sessions-per-day", "6", "--max-minutes-per-view", "5",
        )  # fmt: skip
        sim = SimulateSummary.model_validate_json(sim_line)
        d.update(lines=sim.lines, malformed=sim.malformed_total)

    with progress.step("ingest history") as d:
        ing = IngestSummary.model_validate_json(_movierec(
            "ingest", "--source", str(paths["history"]), "--db", db_url,
            "--metadata", str(paths["metadata"]), "--until-caught-up",
        ))  # fmt: skip
        d.update(ing.model_dump())
        summary["ingest_history"] = ing.model_dump()

    with progress.step("data-quality gate") as d:
        gate = QualitySummary.model_validate_json(_movierec("quality", "--db", db_url, "--json"))
        d.update(passed=gate.passed)
        summary["quality"] = gate.model_dump()

    offline: dict[str, dict[str, float]] = {}
    versions: dict[str, str] = {}
    for algo in ALGOS:
        with progress.step(f"train + register {algo}") as d:
            out = TrainSummary.model_validate_json(_movierec(
                "train", "--db", db_url, "--algo", algo, "--out", str(paths["models"] / algo),
                "--register", f"{MODEL_NAME}-{algo}",
            ))  # fmt: skip
            if out.version is None:
                raise RuntimeError(f"train {algo}: registered no version")
            offline[algo] = dict(out.metrics)
            versions[algo] = out.version
            d.update(rmse=round(out.metrics["rmse"], 4), ndcg=round(out.metrics["ndcg@10"], 4))
            d.update(version=out.version)
    summary["offline"] = offline

    with process_group(paths["logs"]) as group, _popular_track(db_url) as popular_url:
        router_url = _start_services(group, paths, versions, progress, popular_url)
        with progress.step("simulated users on the live services") as d:
            live = _live_phase(config, router_url, paths)
            d.update(requests=live["requests"], errors=live["errors"], seconds=live["seconds"])
            summary["live_clients"] = live["by_track"]
            summary["versus_popular"] = live["versus_popular"]

    with progress.step("ingest live traffic") as d:
        totals: dict[str, int] = {}
        for i in range(LIVE_CLIENTS):
            live_ing = IngestSummary.model_validate_json(_movierec(
                "ingest", "--source", str(_live_file(paths, i)), "--db", db_url, "--until-caught-up"
            ))  # fmt: skip
            for k, v in live_ing.model_dump().items():
                totals[k] = totals.get(k, 0) + int(v)
        d.update(totals)

    with progress.step("online evaluation") as d:
        online = _online(paths, db_url)
        summary["online"] = online
        d.update(tracks=len(online["tracks"]))

    summary["steps"] = progress.steps
    report = write_report(work / "report.html", summary, _latencies(paths["provenance"]))
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary)
    print(f"\nHTML report: {report}\nSummary JSON: {work / 'summary.json'}")
    print(f"Total: {time.monotonic() - progress.started:.1f}s")
    return 0


@contextmanager
def _popular_track(db_url: str) -> Iterator[str]:
    """The most-popular baseline as a live track: every user gets the most-rated movies of the
    training data they have not rated, from a small in-process HTTP server (same answer format
    and headers as `movierec serve`)."""
    import logging
    import threading

    from movierec_recommender.data import RatingsData
    from movierec_recommender.models import MostPopular
    from werkzeug.serving import make_server

    model = MostPopular().fit(RatingsData.from_db(db_url))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith("/recommend/"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        ids, _ = model.recommend(path.rstrip("/").rsplit("/", 1)[-1], n=20)
        headers = [("Content-Type", "text/plain"), ("X-Track", BASELINE)]
        start_response("200 OK", [*headers, ("X-Model-Version", BASELINE)])
        return [",".join(ids).encode()]

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on stderr
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def _start_services(
    group: ProcessGroup,
    paths: dict[str, Path],
    versions: dict[str, str],
    progress: Progress,
    popular_url: str,
) -> str:
    tracks: dict[str, str] = {BASELINE: popular_url}
    with progress.step("serve both models under gunicorn (from MLflow)") as d:
        children = []
        for algo in ALGOS:
            port = free_port()
            child = group.start(
                f"serve-{algo}",
                [
                    sys.executable, "-m", "movierec", "serve",
                    "--model", f"models:/{MODEL_NAME}-{algo}/{versions[algo]}",
                    "--port", str(port), "--track", algo, "--workers", "2",
                ],
            )  # fmt: skip
            children.append((child, port))
            tracks[algo] = f"http://127.0.0.1:{port}"
        for child, port in children:
            # download from MLflow + load + precompute: minutes when the machine is busy
            group.wait_http(child, f"http://127.0.0.1:{port}/readyz", timeout=SERVE_READY_S)
        d.update(tracks=",".join(tracks))

    with progress.step("router with a 3-way LaunchDarkly split (two models, most popular)") as d:
        from movierec_recommender.router.flagdata import write_flag_file

        write_flag_file(paths["flags"], {ALGOS[0]: 33_334, ALGOS[1]: 33_333, BASELINE: 33_333})
        port = free_port()
        child = group.start(
            "router",
            [
                sys.executable, "-m", "movierec", "route", "--flags", str(paths["flags"]),
                "--tracks", json.dumps(tracks), "--port", str(port), "--rate-limit", "0",
            ],
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        group.wait_http(child, f"{url}/readyz")
        d.update(url=url)
    return url


def _live_phase(config: DemoConfig, router_url: str, paths: dict[str, Path]) -> dict[str, Any]:
    """Simulated users call the router from a few threads, each over its own users and log file."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from movierec_recommender.online.exposures import Exposure, write_exposures
    from movierec_simulator.client import run_sessions
    from movierec_simulator.sinks import FileSink
    from movierec_simulator.world import World

    world = World.generate(config.users, config.movies, config.seed)
    start = _history_end(paths["history"])
    shards = np.array_split(np.asarray(world.user_ids), LIVE_CLIENTS)
    t0 = time.monotonic()

    def play(i: int) -> Any:
        with FileSink(_live_file(paths, i)) as sink:
            return run_sessions(
                world,
                router_url,
                shards[i].tolist(),
                config.requests // LIVE_CLIENTS,
                sink,
                seed=config.seed * 100 + i,
                deadline_s=config.live_seconds,
                start=start,
            )

    with ThreadPoolExecutor(LIVE_CLIENTS) as pool:
        results = list(pool.map(play, range(LIVE_CLIENTS)))
    exposures = [
        Exposure(
            time=o.time,
            user_id=o.user_id,
            track=o.track or "unknown",
            model_version=o.model_version or "unknown",
            items=tuple(o.items),
            status=o.status,
            latency_ms=float(o.latency_ms),
        )
        for r in results
        for o in r.outcomes
    ]
    write_exposures(paths["provenance"], exposures)
    per_track: dict[str, dict[str, float]] = {}
    for r in results:
        for track, totals in r.by_track().items():
            acc = per_track.setdefault(track, {})
            for key in ("requests", "watched", "minutes", "rated", "errors"):
                acc[key] = acc.get(key, 0) + totals[key]
    for acc in per_track.values():
        acc["watched_per_request"] = acc["watched"] / max(acc["requests"], 1)
    from dataclasses import replace

    outcomes = [o for r in results for o in r.outcomes]
    # both model tracks are personalised: pooled, they are twice the sample against the baseline
    pooled = [replace(o, track=PERSONALISED) if o.track in ALGOS else o for o in outcomes]
    versus = {algo: engagement_effect(outcomes, algo, BASELINE) for algo in ALGOS}
    versus[PERSONALISED] = engagement_effect(pooled, PERSONALISED, BASELINE)
    return {
        "by_track": per_track,
        "versus_popular": {name: effect.model_dump() for name, effect in versus.items()},
        "requests": len(exposures),
        "errors": sum(1 for e in exposures if e.status != 200),
        "seconds": round(time.monotonic() - t0, 1),
    }


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


def _live_file(paths: dict[str, Path], i: int) -> Path:
    return paths["live"].with_name(f"live-{i}.log")


def _history_end(history: Path) -> Any:
    """The simulated clock continues after the newest event of the history."""
    from movierec_ingestor.events import ParseError, parse_line

    newest = None
    with history.open("rb") as fh:
        for raw in fh:
            try:
                t = parse_line(raw).time
            except ParseError:
                continue
            newest = t if newest is None or t > newest else newest
    if newest is None:
        raise RuntimeError(f"no valid event in {history}")
    return newest + timedelta(minutes=1)


def _online(paths: dict[str, Path], db_url: str) -> dict[str, Any]:
    import numpy as np
    from movierec_recommender.models import load_model
    from movierec_recommender.online.evaluate import evaluate
    from movierec_recommender.online.exposures import read_exposures

    predictors: dict[str, Callable[..., Any]] = {
        algo: load_model(paths["models"] / algo).predict for algo in ALGOS
    }
    # the baseline predicts every rating as the global mean (its online RMSE is that of the mean)
    mean = float(load_model(paths["models"] / ALGOS[0]).mu)
    predictors[BASELINE] = lambda users, movies: np.full(len(users), mean)
    popular = set(load_model(paths["models"] / ALGOS[0]).popular(max(1, 20)))
    report = evaluate(
        list(read_exposures(paths["provenance"])),
        db_url,
        predictors,
        window=timedelta(hours=3),
        popular_items=popular,
    )
    return report.to_dict()


def _latencies(provenance: Path) -> dict[str, list[float]]:
    from movierec_recommender.online.exposures import read_exposures

    out: dict[str, list[float]] = {}
    for e in read_exposures(provenance):
        out.setdefault(e.track, []).append(e.latency_ms)
    return out


def _num(v: Any, fmt: str = ".4f") -> str:
    return "–" if v is None else format(v, fmt)


def print_summary(summary: dict[str, Any]) -> None:
    offline, online = summary["offline"], summary["online"]
    print("\n=== movierec demo summary ===")
    print(
        f"{'track':<12}{'off RMSE':>10}{'NDCG@10':>9}{'on RMSE':>9}{'engage':>8}{'success':>9}{'p99 ms':>8}{'disp age':>9}{'disp sex':>9}"
    )
    for track in sorted(set(offline) | set(online["tracks"])):
        off = offline.get(track, {})
        on = online["tracks"].get(track, {})
        disparity = on.get("disparity", {})
        print(
            f"{track:<12}{_num(off.get('rmse')):>10}{_num(off.get('ndcg@10')):>9}"
            f"{_num(on.get('online_rmse')):>9}{_num(on.get('engagement_rate'), '.3f'):>8}"
            f"{_num(on.get('success_rate'), '.3f'):>9}{_num(on.get('latency_p99_ms'), '.1f'):>8}"
            f"{_num(disparity.get('age_group'), '.2f'):>9}{_num(disparity.get('gender'), '.2f'):>9}"
        )
    for effect in summary.get("versus_popular", {}).values():
        print(
            f"{effect['a']} vs {effect['b']} (per-user share of recommendations watched): "
            f"{effect['mean_a']:.3f} vs {effect['mean_b']:.3f}, difference "
            f"{effect['difference']:+.3f}, Cohen's d {effect['cohens_d']:.2f}, "
            f"Welch p = {effect['p_value']:.3g} ({effect['users_a']} / {effect['users_b']} users)"
        )
    for ab in online.get("ab", []):
        req, usr = ab["request_level"], ab["user_level"]
        print(
            f"A/B {ab['a']} vs {ab['b']} (unit: user): share of recommendations watched "
            f"{usr['mean_a']:.3f} vs {usr['mean_b']:.3f}, Welch p = {usr['p_value']:.3g}; "
            f"answers followed by a watch {req['rate_a']:.3f} vs {req['rate_b']:.3f}, "
            f"z-test p = {req['p_value']:.3g}"
        )
