"""The chart's Grafana dashboards: the committed JSON is the generator's output, and every panel's
query returns data on a real Prometheus scraping real components after simulator traffic."""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from movierec_operator.constants import Phase
from movierec_operator.metrics import RolloutMetrics
from movierec_recommender.online import dashboards
from movierec_simulator.client import run_sessions
from movierec_simulator.sinks import MemorySink
from movierec_simulator.world import World
from prometheus_client import push_to_gateway

from harness import pushgateway
from harness.ports import free_port
from harness.process import ServiceProcess
from harness.prometheus import PrometheusServer, build_config
from tests.monitoring.support import START, fill, movierec, simulate

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "charts/movierec/files/dashboards"


def test_committed_json_is_generated() -> None:
    committed = sorted(p.name for p in FOLDER.glob("*.json"))
    assert committed == sorted(f"{d.uid}.json" for d in dashboards.DASHBOARDS)
    for d in dashboards.DASHBOARDS:
        assert (FOLDER / f"{d.uid}.json").read_text() == dashboards.render(d), (
            f"{d.uid}.json is stale: python -m movierec_recommender.online.dashboards {FOLDER}"
        )


def test_panels_have_unique_ids_and_queries() -> None:
    for d in dashboards.DASHBOARDS:
        ids = [p["id"] for p in d.to_json()["panels"]]
        assert len(ids) == len(set(ids)), d.uid
        assert all(panel.queries for panel in d.panels()), d.uid


def _start(
    name: str, argv: list[str], folder: Path, env: dict[str, str] | None = None
) -> ServiceProcess:
    proc = ServiceProcess(
        name,
        [sys.executable, "-m", "movierec", *argv],
        log_path=folder / f"{name}.log",
        marker="",  # we hold its Popen; `serve` execs gunicorn, whose argv lacks our paths
        env={**os.environ, **(env or {})},
    )
    proc.start()
    return proc


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Store filled by simulator + ingestor, quality gate and operator metrics on a Pushgateway,
    a recommender under simulator traffic, and the evaluator following the store."""
    world = simulate(tmp_path, "--drift", "--shilling-users", "25")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    gateway = pushgateway.start(tmp_path / "pushgateway")
    processes: list[ServiceProcess] = []
    stop = threading.Event()
    try:
        fill(db, world, "--pushgateway", gateway.url)
        metrics = tmp_path / "quality.prom"
        movierec("quality", "--db", db, "--force", "--metrics-out", str(metrics))
        request = urllib.request.Request(
            f"{gateway.url}/metrics/job/movierec-quality", data=metrics.read_bytes(), method="PUT"
        )
        urllib.request.urlopen(request, timeout=10).close()
        # the operator needs a cluster: its own metric class, as it would report a rollout
        rollout = RolloutMetrics()
        rollout.observe("movies", Phase.PROGRESSING, 25)
        push_to_gateway(gateway.url, job="movierec-operator", registry=rollout.registry)

        model = tmp_path / "model"
        movierec("train", "--db", db, "--algo", "item-item", "--out", str(model))
        serve_port, eval_port = free_port(), free_port()
        processes.append(
            _start(
                "serve",
                ["serve", "--model", str(model), "--port", str(serve_port), "--workers", "1"],
                tmp_path,
            )
        )
        lookback = (datetime.now() - START).total_seconds() / 60 + 60
        processes.append(
            _start(
                "evaluator",
                [
                    "evaluate-online",
                    "--follow",
                    "--db",
                    db,
                    "--interval",
                    "2",
                    "--port",
                    str(eval_port),
                    "--lookback-minutes",
                    str(lookback),
                    "--model",
                    f"6={model}",
                    "--model",
                    f"7={model}",
                ],
                tmp_path,
            )
        )
        serve_url = f"http://127.0.0.1:{serve_port}"
        processes[0].wait_ready(lambda: _http_ok(f"{serve_url}/readyz"), timeout=90, what="readyz")
        processes[1].wait_ready(
            lambda: _http_ok(f"http://127.0.0.1:{eval_port}/metrics"), timeout=60, what="metrics"
        )
        sim = World.generate(300, 120, 3)
        users = list(range(1, 301))

        def traffic() -> None:
            seed = 0
            while not stop.is_set():
                seed += 1
                run_sessions(
                    sim, serve_url, users, 5, MemorySink(), seed, 30.0, start=datetime.now()
                )
                stop.wait(0.1)

        thread = threading.Thread(target=traffic)
        thread.start()
        yield {
            "targets": {
                "recommender": [f"127.0.0.1:{serve_port}"],
                "evaluator": [f"127.0.0.1:{eval_port}"],
                "pushgateway": [gateway.url.removeprefix("http://")],
            }
        }
        stop.set()
        thread.join(timeout=60)
    finally:
        stop.set()
        for proc in reversed(processes):
            proc.stop()
        gateway.close()


def _chart_rules() -> dict[str, str]:
    return {
        p.name: p.read_text() for p in sorted((ROOT / "charts/movierec/files/rules").glob("*.yaml"))
    }


def test_every_panel_returns_data(
    stack: dict[str, Any], prometheus: Callable[..., PrometheusServer]
) -> None:
    rules = _chart_rules()
    prom = prometheus(
        config_text=build_config(stack["targets"], rule_files=sorted(rules)), rules=rules
    )
    prom.wait_targets_up(timeout=60)
    queries = {
        (d.uid, panel.title, q.expr)
        for d in dashboards.DASHBOARDS
        for panel in d.panels()
        for q in panel.queries
    }
    failing: dict[tuple[str, str, str], str] = {}
    deadline = time.monotonic() + 120
    pending = set(queries)
    while pending and time.monotonic() < deadline:
        for key in sorted(pending):
            try:
                result = prom.query(key[2])
            except Exception as exc:  # a query Prometheus rejects fails the panel at once
                failing[key] = f"error: {exc}"
                pending.discard(key)
                continue
            if result:
                pending.discard(key)
        time.sleep(2)
    failing.update({key: "no data" for key in pending})
    assert not failing, "\n".join(
        f"{u} / {t}: {why}\n  {e}" for (u, t, e), why in sorted(failing.items())
    )
