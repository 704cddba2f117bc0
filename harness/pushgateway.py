"""Pushgateway 1.5 (Debian) for batch jobs' metrics, persisted across restarts."""

from __future__ import annotations

from pathlib import Path

from harness import promstack
from harness.httpservice import HttpService
from harness.ports import HOST, free_port


class PushgatewayServer(HttpService):
    """A running Pushgateway."""

    def env(self) -> dict[str, str]:
        """Shell variables describing this server."""
        return {
            "MOVIEREC_PUSHGATEWAY_URL": self.url,
            "MOVIEREC_PUSHGATEWAY_PID": str(self.pid or ""),
            "MOVIEREC_PUSHGATEWAY_DIR": str(self.workdir),
        }


def start(workdir: Path, *, timeout: float = 60) -> PushgatewayServer:
    """Start a Pushgateway on a free port."""
    binaries = promstack.ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        str(binaries.pushgateway),
        f"--web.listen-address={HOST}:{port}",
        f"--persistence.file={workdir / 'metrics.store'}",
        "--persistence.interval=1s",
    ]
    server = PushgatewayServer("pushgateway", workdir, port, argv)
    server.start(timeout)
    return server


def attach(workdir: Path) -> PushgatewayServer:
    """The Pushgateway whose state lives in ``workdir``."""
    return PushgatewayServer.load(workdir)
