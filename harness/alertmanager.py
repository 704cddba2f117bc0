"""Alertmanager 0.25 (Debian) without gossip, routing every alert to an e-mail receiver."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import promstack
from harness.httpservice import HttpService
from harness.ports import HOST, free_port
from harness.process import ServiceError

ALERT_FROM = "alertmanager@movierec.test"
ALERT_TO = "oncall@movierec.test"


class AlertmanagerServer(HttpService):
    """A running Alertmanager with API helpers."""

    def env(self) -> dict[str, str]:
        """Shell variables describing this server."""
        return {
            "MOVIEREC_ALERTMANAGER_URL": self.url,
            "MOVIEREC_ALERTMANAGER_PID": str(self.pid or ""),
            "MOVIEREC_ALERTMANAGER_DIR": str(self.workdir),
        }

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Send alerts (``labels``, ``annotations``...) to the v2 API, as Prometheus does."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(list(alerts)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise ServiceError(f"Alertmanager refused alerts: HTTP {response.status}")

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager currently holds."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as response:
            result: list[dict[str, Any]] = json.load(response)
        return result


def email_config(smtp_host: str, smtp_port: int, *, group_wait: str = "1s") -> str:
    """A config that e-mails every alert group through the SMTP server at host:port."""
    config = {
        "global": {
            "smtp_smarthost": f"{smtp_host}:{smtp_port}",
            "smtp_from": ALERT_FROM,
            "smtp_require_tls": False,
            "resolve_timeout": "1m",
        },
        "route": {
            "receiver": "email",
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_wait,
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "email", "email_configs": [{"to": ALERT_TO, "send_resolved": True}]}
        ],
    }
    return json.dumps(config, indent=2)


def start(workdir: Path, *, config_text: str, timeout: float = 60) -> AlertmanagerServer:
    """Start Alertmanager on a free port with ``config_text``; gossip is off."""
    binaries = promstack.ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(config_text)
    templates = workdir / promstack.AM_TEMPLATES_LINK
    if not templates.exists():
        templates.symlink_to(binaries.alertmanager_templates)
    port = free_port()
    argv = [
        str(binaries.alertmanager),
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={HOST}:{port}",
        f"--web.external-url=http://{HOST}:{port}",
        "--cluster.listen-address=",
    ]
    server = AlertmanagerServer("alertmanager", workdir, port, argv)
    server.start(timeout)
    return server


def attach(workdir: Path) -> AlertmanagerServer:
    """The Alertmanager whose state lives in ``workdir``."""
    return AlertmanagerServer.load(workdir)
