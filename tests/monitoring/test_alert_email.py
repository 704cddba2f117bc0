"""E-mail for real: simulator traffic to a recommender, a real Prometheus scraping it with the
chart's rules, an Alertmanager configured as the chart renders it, and the SMTP sink.

Stopping the recommender (SIGSTOP: it stays bound to its port but answers nothing) must e-mail
the availability alert with its severity and runbook link; resuming it must e-mail the resolved
notice. Only timings are shortened for the test: the alert's `for:` and Alertmanager's grouping
waits; expressions, labels, annotations and the receiver are the chart's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from movierec_simulator.client import run_sessions
from movierec_simulator.sinks import MemorySink
from movierec_simulator.world import World

from harness import alertmanager, helm_build
from harness.ports import free_port
from harness.process import ServiceProcess
from harness.prometheus import PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/movierec"
ALERT = "MovierecRecommenderUnavailable"
USERS, MOVIES, SEED = 200, 100, 5


def _movierec(*argv: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "movierec", *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def recommender(tmp_path: Path) -> Iterator[ServiceProcess]:
    """`movierec serve` on a model trained on the simulated world's ratings."""
    ratings = tmp_path / "ratings.csv"
    _movierec(
        "simulate", "--format", "ratings-csv", "--ratings", "6000", "--users", str(USERS),
        "--movies", str(MOVIES), "--seed", str(SEED), "--out", str(ratings),
    )  # fmt: skip
    _movierec(
        "train", "--ratings", str(ratings), "--algo", "item-item", "--out", str(tmp_path / "m")
    )
    port = free_port()
    proc = ServiceProcess(
        "recommender",
        [
            sys.executable, "-m", "movierec", "serve", "--model", str(tmp_path / "m"),
            "--port", str(port), "--workers", "1", "--threads", "4",
        ],
        log_path=tmp_path / "serve.log",
        marker="",  # we hold its Popen; `serve` execs gunicorn, whose argv lacks our paths
        env=dict(os.environ),
    )  # fmt: skip
    proc.start()
    proc.port = port  # type: ignore[attr-defined]
    try:
        proc.wait_ready(lambda: _answers(port), timeout=90, what=f"GET /readyz on {port}")
        yield proc
    finally:
        _signal_group(proc, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        proc.stop()


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _signal_group(proc: ServiceProcess, sig: signal.Signals) -> None:
    # gunicorn's master and workers share the process group the runner gave the service
    if proc.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


def _traffic(url: str, stop: threading.Event) -> None:
    """Simulated users asking for recommendations, watching and rating, until `stop`."""
    world = World.generate(USERS, MOVIES, SEED)
    users = list(range(1, USERS + 1))
    seed = 0
    while not stop.is_set():
        seed += 1
        run_sessions(
            world, url, users, 5, MemorySink(), seed, 30.0, start=datetime.now(), timeout_s=1.0
        )
        stop.wait(0.1)


def _chart_alertmanager_config(smtp_port: int) -> str:
    """alertmanager.yml exactly as the chart renders it for these SMTP values, waits shortened."""
    helm = helm_build.ensure_installed()
    done = subprocess.run(
        [
            str(helm), "template", "mail-test", str(CHART),
            "--show-only", "templates/alertmanager-secret.yaml",
            "--set", f"alertmanager.smtp.smarthost=127.0.0.1:{smtp_port}",
            "--set", "alertmanager.smtp.requireTls=false",
            "--set", "alertmanager.smtp.from=alertmanager@movierec.test",
            "--set", "alertmanager.smtp.to=oncall@movierec.test",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    secret = yaml.safe_load(done.stdout)
    config = yaml.safe_load(secret["stringData"]["alertmanager.yml"])
    # the chart waits 30 s before the first notice and 5 min between a group's notices
    config["route"].update(group_wait="1s", group_interval="2s")
    return yaml.safe_dump(config)


def _chart_rules(fast_alert: str) -> dict[str, str]:
    """The chart's rule files; only `fast_alert` waits 3 s instead of its `for:`."""
    files = {}
    for path in sorted((CHART / "files/rules").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == fast_alert:
                    rule["for"] = "3s"
        files[path.name] = yaml.safe_dump(doc, sort_keys=False)
    return files


def _prometheus_config(target: str, namespace: str, alertmanager_url: str, rules: list[str]) -> str:
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": rules,
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}
            ]
        },
        # the labels the chart's pod discovery gives a recommender pod
        "scrape_configs": [
            {
                "job_name": "movierec-pods",
                "static_configs": [
                    {
                        "targets": [target],
                        "labels": {"app": "movierec-recommender", "namespace": namespace},
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(config)


def _mail_about(namespace: str, status: str) -> Callable[[EmailMessage], bool]:
    def match(message: EmailMessage) -> bool:
        subject = str(message["Subject"])
        return subject.startswith(f"[{status}") and ALERT in subject and namespace in subject

    return match


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html", "plain"))
    assert part is not None
    return str(part.get_content())


def test_stopped_recommender_emails_the_alert_and_its_recovery(
    recommender: ServiceProcess,
    prometheus: Callable[..., PrometheusServer],
    smtp_sink: Any,
    tmp_path: Path,
) -> None:
    namespace = f"mail-{uuid.uuid4().hex[:6]}"  # tells this test's mail from others'
    am = alertmanager.start(
        tmp_path / "alertmanager", config_text=_chart_alertmanager_config(smtp_sink.port)
    )
    stop = threading.Event()
    port = recommender.port  # type: ignore[attr-defined]
    traffic = threading.Thread(target=_traffic, args=(f"http://127.0.0.1:{port}", stop))
    try:
        rules = _chart_rules(ALERT)
        prom = prometheus(
            config_text=_prometheus_config(f"127.0.0.1:{port}", namespace, am.url, sorted(rules)),
            rules=rules,
        )
        traffic.start()
        prom.wait_targets_up(timeout=60)
        assert prom.query_value('sum(movierec_requests_total{component="recommender"})') >= 0
        assert not prom.query(f'ALERTS{{alertname="{ALERT}"}}')

        _signal_group(recommender, signal.SIGSTOP)
        fired = smtp_sink.wait_for(_mail_about(namespace, "FIRING"), timeout=120)
        body = _body(fired)
        assert ALERT in body
        assert "critical" in body
        assert (
            f"https://github.com/movierec/movierec/blob/main/docs/runbooks.md#{ALERT.lower()}"
            in body
        )

        _signal_group(recommender, signal.SIGCONT)
        resolved = smtp_sink.wait_for(_mail_about(namespace, "RESOLVED"), timeout=120)
        assert ALERT in _body(resolved)
    finally:
        stop.set()
        _signal_group(recommender, signal.SIGCONT)
        if traffic.is_alive():
            traffic.join(timeout=60)
        am.close()
