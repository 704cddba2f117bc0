"""A service binary that listens on one 127.0.0.1 HTTP port and reports readiness at a path."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from harness.ports import HOST, http_ok
from harness.process import ServiceProcess


@dataclass
class HttpService:
    """A running HTTP service; ``restart`` keeps its port, config and storage."""

    name: str
    workdir: Path
    port: int
    argv: list[str]
    ready_path: str = "/-/ready"
    pid: int | None = None
    _process: ServiceProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    def _proc(self) -> ServiceProcess:
        if self._process is None:
            self._process = ServiceProcess(
                self.name,
                self.argv,
                log_path=self.workdir / f"{self.name}.log",
                marker=str(self.workdir),
                cwd=self.workdir,
            )
            self._process.pid = self.pid
        return self._process

    def start(self, timeout: float = 60) -> None:
        """Start and wait until the readiness path answers 2xx."""
        proc = self._proc()
        self.pid = proc.start()
        self.save()
        ready = f"{self.url}{self.ready_path}"
        proc.wait_ready(lambda: http_ok(ready), timeout=timeout, what=ready)

    def stop(self) -> None:
        """Stop by PID."""
        self._proc().stop()

    def close(self) -> None:
        """Stop and delete the work dir (for throwaway instances)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self, timeout: float = 60) -> None:
        """Stop and start again with the same port and files."""
        self.stop()
        self.start(timeout)

    def running(self) -> bool:
        """True while the process runs."""
        return self._proc().alive()

    def save(self) -> None:
        """Write the state ``attach`` reads."""
        state = {
            "name": self.name,
            "port": self.port,
            "argv": self.argv,
            "ready_path": self.ready_path,
            "pid": self.pid,
        }
        (self.workdir / "state.json").write_text(json.dumps(state))

    @classmethod
    def load(cls, workdir: Path) -> Self:
        """The service whose state lives in ``workdir``."""
        state = json.loads((workdir / "state.json").read_text())
        return cls(
            state["name"], workdir, state["port"], state["argv"], state["ready_path"], state["pid"]
        )
