"""Prometheus 2.42 (Debian) with a scrape config the caller supplies, plus PromQL helpers."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import promstack
from harness.httpservice import HttpService
from harness.ports import HOST, free_port
from harness.process import ServiceError

Targets = Sequence[str] | Mapping[str, Sequence[str]]


class PrometheusServer(HttpService):
    """A running Prometheus with query helpers."""

    @property
    def config_path(self) -> Path:
        """The config file it was started with (rewrite it and call ``reload``)."""
        return self.workdir / "prometheus.yml"

    def env(self) -> dict[str, str]:
        """Shell variables describing this server."""
        return {
            "MOVIEREC_PROMETHEUS_URL": self.url,
            "MOVIEREC_PROMETHEUS_PID": str(self.pid or ""),
            "MOVIEREC_PROMETHEUS_DIR": str(self.workdir),
            "MOVIEREC_PROMTOOL": str(promstack.ensure_installed().promtool),
        }

    def api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET an /api/v1 endpoint and return its ``data``; raise on an error status."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise ServiceError(f"Prometheus {path} failed: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant PromQL query; return the result vector (``metric`` and ``value``)."""
        data = self.api("query", {"query": expr})
        result = data["result"]
        return result if isinstance(result, list) else [{"metric": {}, "value": result}]

    def query_value(self, expr: str, *, timeout: float = 30) -> float:
        """Wait until ``expr`` returns exactly one sample; return its value."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if len(result) == 1:
                return float(result[0]["value"][1])
            time.sleep(0.5)
        raise ServiceError(f"{expr!r} gave {len(result)} samples (want 1) after {timeout:.0f}s")

    def wait_targets_up(self, *, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until every active target was scraped successfully; return the targets."""
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            targets = self.api("targets")["activeTargets"]
            if targets and all(target["health"] == "up" for target in targets):
                return targets
            time.sleep(0.5)
        summary = [(t["scrapeUrl"], t["health"], t.get("lastError")) for t in targets]
        raise ServiceError(f"Prometheus targets not all up after {timeout:.0f}s: {summary}")

    def reload(self, config_text: str | None = None) -> None:
        """Optionally replace the config, then ask Prometheus to reload it."""
        if config_text is not None:
            self.config_path.write_text(config_text)
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise ServiceError(f"Prometheus reload answered {response.status}")


def build_config(
    scrape_targets: Targets = (),
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str | None = None,
    alertmanagers: Sequence[str] = (),
    rule_files: Sequence[str] = (),
) -> str:
    """A Prometheus config (JSON is valid YAML) scraping ``scrape_targets``.

    Targets are ``host:port`` (path /metrics) or URLs such as ``http://127.0.0.1:8000/stats``;
    a mapping gives job names, a plain list becomes the job ``test``.
    """
    jobs = dict(scrape_targets) if isinstance(scrape_targets, Mapping) else {"test": scrape_targets}
    scrape_configs: list[dict[str, Any]] = []
    for job, targets in jobs.items():
        groups: dict[tuple[str, str], list[str]] = {}
        for target in targets:
            parsed = urllib.parse.urlsplit(target if "://" in target else f"http://{target}")
            groups.setdefault((parsed.scheme, parsed.path or "/metrics"), []).append(parsed.netloc)
        for index, ((scheme, path), hosts) in enumerate(sorted(groups.items())):
            scrape_configs.append(
                {
                    "job_name": job if index == 0 else f"{job}-{index}",
                    "scheme": scheme,
                    "metrics_path": path,
                    "honor_labels": True,
                    "static_configs": [{"targets": hosts}],
                }
            )
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval or scrape_interval,
        },
        "scrape_configs": scrape_configs,
        "rule_files": list(rule_files),
    }
    if alertmanagers:
        hosts = [urllib.parse.urlsplit(url).netloc or url for url in alertmanagers]
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": hosts}]}]}
    return json.dumps(config, indent=2)


def start(
    workdir: Path,
    *,
    scrape_targets: Targets = (),
    config_text: str | None = None,
    scrape_interval: str = "1s",
    rules: Mapping[str, str] | None = None,
    alertmanagers: Sequence[str] = (),
    resend_delay: str = "1s",
    timeout: float = 60,
) -> PrometheusServer:
    """Start Prometheus on a free port with ``config_text`` or a config built from targets.

    ``rules`` maps file names to rule-file YAML; they are written next to the config and
    listed in a built config (a supplied ``config_text`` refers to them by those names).
    """
    binaries = promstack.ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in (rules or {}).items():
        (workdir / name).write_text(text)
    if config_text is None:
        config_text = build_config(
            scrape_targets,
            scrape_interval=scrape_interval,
            alertmanagers=alertmanagers,
            rule_files=sorted(rules or {}),
        )
    (workdir / "prometheus.yml").write_text(config_text)
    port = free_port()
    argv = [
        str(binaries.prometheus),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={HOST}:{port}",
        "--web.enable-lifecycle",
        "--web.enable-admin-api",
        # Alerts evaluated before the Alertmanager targets are discovered are dropped and by
        # default re-sent only a minute later; tests want them within seconds.
        f"--rules.alert.resend-delay={resend_delay}",
    ]
    server = PrometheusServer("prometheus", workdir, port, argv)
    server.start(timeout)
    return server


def start_prometheus(
    scrape_targets: Targets = (),
    *,
    config_text: str | None = None,
    scrape_interval: str = "1s",
    rules: Mapping[str, str] | None = None,
    alertmanagers: Sequence[str] = (),
    timeout: float = 60,
) -> PrometheusServer:
    """``start`` in a fresh temp dir; ``close()`` the result to stop it and delete its data."""
    workdir = Path(tempfile.mkdtemp(prefix="movierec-prometheus-"))
    try:
        return start(
            workdir,
            scrape_targets=scrape_targets,
            config_text=config_text,
            scrape_interval=scrape_interval,
            rules=rules,
            alertmanagers=alertmanagers,
            timeout=timeout,
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def attach(workdir: Path) -> PrometheusServer:
    """The Prometheus whose state lives in ``workdir``."""
    return PrometheusServer.load(workdir)
