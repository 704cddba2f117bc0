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

from movierec.process import ProcessGroup, free_port, process_group
from movierec.report import write_report

MODEL_NAME = "movies"
ALGOS = ("user-user", "item-item")
LIVE_CLIENTS = 4


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


def _movierec(*argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a movierec subcommand as a user would; return its JSON summary line."""
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
    return json.loads(lines[-1]) if lines else {}


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
        sim = _movierec(
            "simulate", "--users", str(config.users), "--movies", str(config.movies),
            "--hours", str(config.hours), "--seed", str(config.seed),
            "--out", str(paths["history"]), "--metadata-out", str(paths["metadata"]),
            # short, frequent viewing sessions: more ratings per streamed line, so that a
            # 3-minute demo has enough explicit feedback to separate the two algorithms
            "--sessions-per-day", "6", "--max-minutes-per-view", "5",
        )  # fmt: skip
        d.update(lines=sim.get("lines"), malformed=sim.get("malformed_total", sim.get("malformed")))

    with progress.step("ingest history") as d:
        ing = _movierec(
            "ingest", "--source", str(paths["history"]), "--db", db_url,
            "--metadata", str(paths["metadata"]), "--until-caught-up",
        )  # fmt: skip
        d.update(ing)
        summary["ingest_history"] = ing

    with progress.step("data-quality gate") as d:
        gate = _movierec("quality", "--db", db_url, "--json")
        d.update(passed=gate.get("passed"))
        summary["quality"] = gate

    offline: dict[str, dict[str, float]] = {}
    versions: dict[str, str] = {}
    for algo in ALGOS:
        with progress.step(f"train + register {algo}") as d:
            out = _movierec(
                "train", "--db", db_url, "--algo", algo, "--out", str(paths["models"] / algo),
                "--register", f"{MODEL_NAME}-{algo}",
            )  # fmt: skip
            metrics = out.get("metrics", out)
            offline[algo] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            versions[algo] = str(out.get("version", out.get("model_version", "1")))
            d.update(rmse=round(offline[algo].get("rmse", float("nan")), 4), version=versions[algo])
    summary["offline"] = offline

    with process_group(paths["logs"]) as group:
        router_url = _start_services(group, paths, versions, progress)
        with progress.step("simulated users on the live services") as d:
            live = _live_phase(config, router_url, paths)
            d.update(requests=live["requests"], errors=live["errors"], seconds=live["seconds"])
            summary["live_clients"] = live["by_track"]

    with progress.step("ingest live traffic") as d:
        totals: dict[str, int] = {}
        for i in range(LIVE_CLIENTS):
            ing = _movierec(
                "ingest", "--source", str(_live_file(paths, i)), "--db", db_url, "--until-caught-up"
            )  # fmt: skip
            for k, v in ing.items():
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


def _start_services(
    group: ProcessGroup, paths: dict[str, Path], versions: dict[str, str], progress: Progress
) -> str:
    tracks: dict[str, str] = {}
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
            group.wait_http(child, f"http://127.0.0.1:{port}/readyz")
        d.update(tracks=",".join(tracks))

    with progress.step("router with a 50/50 LaunchDarkly split") as d:
        from movierec_recommender.router.flagdata import write_flag_file

        write_flag_file(paths["flags"], {ALGOS[0]: 50_000, ALGOS[1]: 50_000})
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
    return {
        "by_track": per_track,
        "requests": len(exposures),
        "errors": sum(1 for e in exposures if e.status != 200),
        "seconds": round(time.monotonic() - t0, 1),
    }


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
    from movierec_recommender.models import load_model
    from movierec_recommender.online.evaluate import evaluate
    from movierec_recommender.online.exposures import read_exposures

    predictors: dict[str, Callable[..., Any]] = {
        algo: load_model(paths["models"] / algo).predict for algo in ALGOS
    }
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
    for ab in online.get("ab", []):
        req, usr = ab["request_level"], ab["user_level"]
        print(
            f"A/B {ab['a']} vs {ab['b']} (unit: user): share of recommendations watched "
            f"{usr['mean_a']:.3f} vs {usr['mean_b']:.3f}, Welch p = {usr['p_value']:.3g}; "
            f"answers followed by a watch {req['rate_a']:.3f} vs {req['rate_b']:.3f}, "
            f"z-test p = {req['p_value']:.3g}"
        )
