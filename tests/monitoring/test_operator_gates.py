"""The operator's analysis on the evaluator's real metrics: its default queries, run on a real
Prometheus scraping `evaluate-online --follow`, judge a canary users ignore as failing, a canary
as engaging as stable as passing, and thin traffic as inconclusive (no cluster needed)."""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from movierec_ingestor.events import RecommendationEvent
from movierec_operator.analysis import Prometheus, run_analysis
from movierec_operator.constants import Verdict
from movierec_operator.spec import Check

from harness.ports import free_port
from harness.process import ServiceProcess
from harness.prometheus import PrometheusServer
from tests.monitoring.support import START, fill, simulate

HALF = datetime(2026, 1, 1, 18)  # the canary serves version 7 before, version 8 after


def _assign(
    catalogue: list[str],
) -> Callable[[RecommendationEvent], tuple[str, str, tuple[str, ...]]]:
    rng = np.random.default_rng(0)

    def assign(event: RecommendationEvent) -> tuple[str, str, tuple[str, ...]]:
        if event.user_id % 2 == 0:
            return "stable", "6", event.results
        if event.time < HALF:
            return "canary", "7", event.results  # as good as stable
        # version 8 shows movies at random: not what these users went on to watch
        shown = set(event.results)
        others = [m for m in catalogue if m not in shown]
        return "canary", "8", tuple(rng.choice(others, size=len(event.results), replace=False))

    return assign


def _metrics_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return b"movierec_engagement_rate{" in resp.read()
    except OSError:
        return False


def test_default_checks_judge_the_evaluators_metrics(
    tmp_path: Path, prometheus: Callable[..., PrometheusServer]
) -> None:
    probe = simulate(tmp_path / "probe")
    catalogue = [
        line.split(",")[0] for line in (probe["meta"] / "movies.csv").read_text().splitlines()[1:]
    ]
    world = simulate(tmp_path, assign=_assign(catalogue))
    db = f"sqlite:///{tmp_path / 'store.db'}"
    fill(db, world)
    port = free_port()
    lookback = (datetime.now() - START).total_seconds() / 60 + 60
    evaluator = ServiceProcess(
        "evaluator",
        [
            sys.executable, "-m", "movierec", "evaluate-online", "--follow", "--db", db,
            "--interval", "2", "--port", str(port), "--lookback-minutes", str(lookback),
        ],
        log_path=tmp_path / "evaluator.log",
        marker=db,
        env=dict(os.environ),
    )  # fmt: skip
    evaluator.start()
    try:
        evaluator.wait_ready(
            lambda: _metrics_up(f"http://127.0.0.1:{port}/metrics"), timeout=90, what="/metrics"
        )
        prom = prometheus({"evaluator": [f"127.0.0.1:{port}"]})
        prom.query_value('count(movierec_engagement_rate{group="all"})', timeout=60)
        client = Prometheus(prom.url)
        checks = [Check(name="engagement", min_ratio=0.5)]

        def judge(version: str, min_samples: int) -> Verdict:
            (result,) = run_analysis(
                checks, client.query, canary_version=version, stable_version="6",
                window="5m", min_samples=min_samples,
            )  # fmt: skip
            return result.verdict

        assert judge("7", 20) == Verdict.PASS
        assert judge("8", 20) == Verdict.FAIL
        assert judge("8", 10**6) == Verdict.INCONCLUSIVE  # thin traffic: hold, don't judge
        client.close()
    finally:
        evaluator.stop()
