"""An MLflow tracking server (mlflow 3.17.2 from the venv) on PostgreSQL with a temp artifact store."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.ports import HOST, free_port, http_ok
from harness.process import ServiceError, ServiceProcess

MLFLOW_VERSION = "3.17.2"
SERVER_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    # Without this the server starts five background job workers on our two cores.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


def ensure_installed() -> str:
    """Check mlflow (and the psycopg2 driver) are importable in this venv; return its version."""
    missing = [name for name in ("mlflow", "psycopg2") if importlib.util.find_spec(name) is None]
    if missing:
        raise ServiceError(
            f"{', '.join(missing)} missing from {sys.prefix}: run `make install` "
            "(pip install -e '.[dev]')"
        )
    from importlib.metadata import version

    return version("mlflow")


@dataclass
class MlflowServer:
    """A running ``mlflow server``; ``restart`` keeps its store and port."""

    workdir: Path
    port: int
    backend_uri: str
    pid: int | None = None
    _process: ServiceProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The tracking URI, ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def artifacts_dir(self) -> Path:
        """Where the server stores artifacts (``mlflow-artifacts:/`` for clients)."""
        return self.workdir / "artifacts"

    def env(self) -> dict[str, str]:
        """Shell variables describing this server."""
        return {
            "MOVIEREC_MLFLOW_URI": self.url,
            "MOVIEREC_MLFLOW_BACKEND_URI": self.backend_uri,
            "MOVIEREC_MLFLOW_PID": str(self.pid or ""),
            "MOVIEREC_MLFLOW_DIR": str(self.workdir),
        }

    def _proc(self) -> ServiceProcess:
        if self._process is None:
            self._process = ServiceProcess(
                "mlflow server",
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--backend-store-uri",
                    self.backend_uri,
                    "--artifacts-destination",
                    self.artifacts_dir,
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                log_path=self.workdir / "mlflow.log",
                marker=str(self.artifacts_dir),
                env={**os.environ, **SERVER_ENV},
                cwd=self.workdir,
            )
            self._process.pid = self.pid
        return self._process

    def start(self, timeout: float = 180) -> None:
        """Start the server (it migrates an empty database first) and wait for /health."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        proc = self._proc()
        self.pid = proc.start()
        (self.workdir / "state.json").write_text(
            json.dumps({"port": self.port, "backend_uri": self.backend_uri, "pid": self.pid})
        )
        proc.wait_ready(
            lambda: http_ok(f"{self.url}/health"), timeout=timeout, what=f"{self.url}/health"
        )

    def stop(self) -> None:
        """Stop the server and its worker by PID (process group)."""
        self._proc().stop()

    def running(self) -> bool:
        """True while the process runs."""
        return self._proc().alive()

    def restart(self, timeout: float = 180) -> None:
        """Stop and start again on the same port and store."""
        self.stop()
        self.start(timeout)


def start(workdir: Path, backend_uri: str, *, timeout: float = 180) -> MlflowServer:
    """Start a tracking server on a free port with ``backend_uri`` as its store."""
    ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(workdir, free_port(), backend_uri)
    server.start(timeout)
    return server


def attach(workdir: Path) -> MlflowServer:
    """The server whose state lives in ``workdir`` (for stopping it from another process)."""
    state = json.loads((workdir / "state.json").read_text())
    return MlflowServer(workdir, state["port"], state["backend_uri"], state["pid"])
