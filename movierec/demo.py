"""The embedded demo: every step of the loop, for real, on one machine with no external services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from movierec_recommender.pipeline.summary import TrainSummary
from pydantic import BaseModel, ConfigDict

from movierec import demo_online
from movierec.demo_live import BASELINE, LIVE_CLIENTS, live_phase, popular_track
from movierec.demo_provenance import DIR_ENV, SERVING_APP
from movierec.process import ProcessGroup, free_port, process_group
from movierec.report import print_grafana, write_report

MODEL_NAME = "movies"
ALGOS = ("user-user", "item-item")
SERVE_READY_S = 300.0
# The simulated users' clock runs ahead of the wall clock (simulated think time and viewing):
# their live watch and rating lines are "in the future" for the ingestor's plausibility check.
LIVE_SKEW_S = 86_400


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


@contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """Run with `folder` as the working directory: whatever a step writes relative to it
    (MLflow's default artifact root `./mlruns`) lands in the demo's output, not the caller's."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def run(config: DemoConfig) -> int:
    work = config.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    with _inside(work):
        return _run(config, work)


def _run(config: DemoConfig, work: Path) -> int:
    paths = {
        "history": work / "history.log",
        "metadata": work / "metadata",
        "db": work / "movierec.db",
        "provenance": work / "provenance",
        "flags": work / "flags.json",
        "models": work / "models",
        "logs": work / "logs",
    }
    for key in ("history", "db"):
        paths[key].unlink(missing_ok=True)
    for stale in [*work.glob("live-*.log"), *paths["provenance"].glob("*.jsonl")]:
        stale.unlink()
    live_files = [work / f"live-{i}.log" for i in range(LIVE_CLIENTS)]
    db_url = f"sqlite:///{paths['db']}"
    os.environ.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
        }
    )
    progress = Progress()
    summary: dict[str, Any] = {
        "title": f"{config.users} users, {config.movies} movies, {config.hours:g} h of history, seed {config.seed}"
    }
    # One clock: the services stamp their provenance with the wall clock, so the history ends
    # (with an hour's margin for views running on) where the live phase starts, at present.
    history_start = _now() - timedelta(hours=config.hours + 1)

    with progress.step("simulate history") as d:
        sim_line = _movierec(
            "simulate", "--users", str(config.users), "--movies", str(config.movies),
            "--hours", str(config.hours), "--seed", str(config.seed),
            "--start", history_start.isoformat(timespec="seconds"),
            "--out", str(paths["history"]), "--metadata-out", str(paths["metadata"]),
            # short, frequent viewing sessions: more ratings per streamed line, so that a
            # 3-minute demo has enough explicit feedback to separate the two algorithms
            "--sessions-per-day", "6", "--max-minutes-per-view", "5",
        )  # fmt: skip
        sim = SimulateSummary.model_validate_json(sim_line)
        d.update(lines=sim.lines, malformed=sim.malformed_total)

    ingests: dict[str, dict[str, int]] = {}
    with progress.step("ingest history") as d:
        ing = IngestSummary.model_validate_json(_movierec(
            "ingest", "--source", str(paths["history"]), "--db", db_url,
            "--metadata", str(paths["metadata"]), "--until-caught-up",
        ))  # fmt: skip
        d.update(ing.model_dump())
        summary["ingest_history"] = ing.model_dump()
        ingests["history"] = ing.model_dump()

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

    from movierec_simulator.world import World

    world = World.generate(config.users, config.movies, config.seed)
    with (
        process_group(paths["logs"]) as group,
        popular_track(db_url, paths["provenance"]) as popular_url,
    ):
        urls = _start_services(group, paths, versions, progress, popular_url)
        with progress.step("simulated users on the live services") as d:
            live_start = _now()
            live = live_phase(
                world, urls["router"], live_files, ALGOS, requests=config.requests,
                seconds=config.live_seconds, seed=config.seed, start=live_start,
            )  # fmt: skip
            live_end = _now()
            d.update(requests=live["requests"], errors=live["errors"], seconds=live["seconds"])
            summary["live_clients"] = live["by_track"]
            summary["versus_popular"] = live["versus_popular"]
            summary["service_counters"] = demo_online.scrape(
                {k: v for k, v in urls.items() if k != BASELINE}
            )

    with progress.step("ingest live traffic and provenance") as d:
        sources = [("live", f) for f in live_files]
        sources += [("provenance", f) for f in sorted(paths["provenance"].glob("*.jsonl"))]
        for kind, source in sources:
            line = _movierec(
                "ingest", "--source", str(source), "--db", db_url, "--until-caught-up",
                env={"MOVIEREC_INGESTOR_MAX_FUTURE_SKEW_S": str(LIVE_SKEW_S)},
            )  # fmt: skip
            totals = ingests.setdefault(kind, {})
            for k, v in IngestSummary.model_validate_json(line).model_dump().items():
                totals[k] = totals.get(k, 0) + int(v)
        d.update({f"{k}_stored": v["stored"] for k, v in ingests.items() if k != "history"})
    summary["ingest"] = ingests

    with progress.step("online evaluation") as d:
        names = {f"{MODEL_NAME}-{algo}": algo for algo in ALGOS}
        models = demo_online.predictors(paths["models"], names, BASELINE)
        online = demo_online.evaluate(db_url, models, BASELINE, live_start, live_end)
        summary["online"] = online
        summary["store"] = demo_online.store_views(db_url, live_start - timedelta(seconds=1))
        summary["store"]["client_latency_ms"] = live["client_latency_ms"]
        d.update(exposures=online["exposures"], tracks=len(online["tracks"]))

    summary["steps"] = progress.steps
    report = write_report(work / "report.html", summary)
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary)
    print_grafana()
    print(f"\nHTML report: {report}\nSummary JSON: {work / 'summary.json'}")
    print(f"Total: {time.monotonic() - progress.started:.1f}s")
    return 0


def _start_services(
    group: ProcessGroup,
    paths: dict[str, Path],
    versions: dict[str, str],
    progress: Progress,
    popular_url: str,
) -> dict[str, str]:
    """Both models under gunicorn (`movierec serve`'s app and edge, provenance to files) and the
    router; returns every service's base URL by name."""
    from movierec_recommender.cli_serve import CONF

    tracks: dict[str, str] = {BASELINE: popular_url}
    with progress.step("serve both models under gunicorn (from MLflow)") as d:
        children = []
        for algo in ALGOS:
            port = free_port()
            env = {
                "MOVIEREC_RECOMMENDER_MODEL": f"models:/{MODEL_NAME}-{algo}/{versions[algo]}",
                "MOVIEREC_RECOMMENDER_TRACK": algo,
                "MOVIEREC_EDGE_BIND": f"127.0.0.1:{port}",
                "MOVIEREC_EDGE_WORKERS": "2",
                "MOVIEREC_EDGE_THREADS": "4",
                DIR_ENV: str(paths["provenance"]),
            }
            argv = [sys.executable, "-m", "gunicorn", "-c", CONF, SERVING_APP]
            children.append((group.start(f"serve-{algo}", argv, env), port))
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
                "--host", "127.0.0.1",
            ],
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        group.wait_http(child, f"{url}/readyz")
        d.update(url=url)
    return {**tracks, "router": url}


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
        print(
            f"A/B {ab['b']} vs {ab['a']} (evaluator, unit: user, share of recommendations "
            f"watched): {_num(ab['mean_b'], '.3f')} vs {_num(ab['mean_a'], '.3f')}, effect "
            f"{_num(ab['effect'], '+.3f')} [{_num(ab['ci_low'], '+.3f')}, "
            f"{_num(ab['ci_high'], '+.3f')}], p = {_num(ab['p_value'], '.3g')}, "
            f"verdict {ab['verdict']} ({ab['users_b']} / {ab['users_a']} users)"
        )
