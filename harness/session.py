"""Services for one test session: reuse what `harness up` recorded, start what is missing."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from harness import envfile, stack
from harness.process import ServiceError

log = logging.getLogger(__name__)

T = TypeVar("T")


class ServiceSession:
    """Hands out running services; stops at ``close`` only those it started itself."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env: dict[str, str] = dict(envfile.read() if env is None else env)
        self._own: dict[str, stack.Handle] = {}
        self._run_dir: Path | None = None

    def require(self, name: str) -> stack.Handle:
        """A running ``name`` service: the recorded one if alive, else one started now."""
        handle = stack.attach_running(name, self.env)
        if handle is not None:
            return handle
        if name in self._own:
            return self._own[name]
        for need in stack.SPECS[name].needs:
            self.require(need)
        log.info(
            "%s is not running (no live entry in %s); starting one", name, envfile.default_path()
        )
        stack.install([name])
        if self._run_dir is None:
            self._run_dir = Path(tempfile.mkdtemp(prefix="movierec-pytest-"))
        started = stack.start_services([name], self._run_dir, self.env)
        self._own.update(started)
        self.env.update(started[name].env())
        return started[name]

    def require_as(self, name: str, kind: type[T]) -> T:
        """``require`` with the concrete handle type checked."""
        handle = self.require(name)
        if not isinstance(handle, kind):
            raise ServiceError(f"{name} handle is {type(handle).__name__}, not {kind.__name__}")
        return handle

    def close(self) -> None:
        """Stop the services this session started and remove their files."""
        try:
            stack.stop_handles(self._own)
        finally:
            self._own.clear()
            if self._run_dir is not None:
                shutil.rmtree(self._run_dir, ignore_errors=True)
                self._run_dir = None


def private_dir(prefix: str) -> Path:
    """A temp folder for a private service (under the temp root, so postgres can enter it)."""
    return Path(tempfile.mkdtemp(prefix=f"movierec-{prefix}-"))


@dataclass(frozen=True)
class KubeNamespace:
    """A fresh namespace on the harness control plane, with the means to reach it."""

    namespace: str
    kubeconfig: Path
    api_url: str
    token: str
    kubectl_path: Path

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run kubectl in this namespace; return stdout or raise with stderr."""
        done = subprocess.run(
            [
                str(self.kubectl_path),
                f"--kubeconfig={self.kubeconfig}",
                f"--namespace={self.namespace}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout


@dataclass(frozen=True)
class MlflowNames:
    """Unique names for one test's MLflow experiment and registered model."""

    experiment: str
    model: str

    @classmethod
    def fresh(cls, prefix: str = "test") -> MlflowNames:
        """Names no other test uses."""
        suffix = uuid.uuid4().hex[:12]
        return cls(experiment=f"{prefix}-exp-{suffix}", model=f"{prefix}-model-{suffix}")
