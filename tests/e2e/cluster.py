"""Support for the end-to-end cluster test: kubectl/helm in one namespace, port-forwards, waits."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class StepFailedError(AssertionError):
    """A wait ran out of time; the message says what was last seen."""


def wait_for(what: str, probe: Callable[[], Any], *, timeout: float, interval: float = 2.0) -> Any:
    """Call ``probe`` until it returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise StepFailedError(f"{what}: not within {timeout:.0f} s; last seen: {last!r}"[:4000])
        time.sleep(interval)


@dataclass
class Cluster:
    """kubectl and helm bound to one kubeconfig and namespace."""

    kubeconfig: str
    kubectl_path: str
    helm_path: str
    namespace: str
    work: Path
    timings: dict[str, float] = field(default_factory=dict)

    def kubectl(
        self, *args: str, stdin: str | None = None, timeout: float = 120, check: bool = True
    ) -> str:
        done = subprocess.run(
            [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, ["kubectl", *args], done.stdout, done.stderr
            )
        return done.stdout

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def helm(self, *args: str, timeout: float = 900) -> str:
        done = subprocess.run(
            [self.helm_path, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise StepFailedError(
                f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                f"{done.stderr[-3000:]}\n{self.describe_problems()}"
            )
        return done.stdout

    def describe_problems(self) -> str:
        """Pods that are not ready and the namespace's warning events, for failure messages."""
        try:
            pods = self.get("pods")["items"]
            events = self.kubectl(
                "get", "events", "--field-selector=type=Warning", "--sort-by=.lastTimestamp"
            )
        except (subprocess.CalledProcessError, OSError) as exc:
            return f"(could not describe the namespace: {exc})"
        lines = []
        for pod in pods:
            phase = pod["status"].get("phase")
            if phase == "Succeeded" or _ready(pod):
                continue
            states = [
                f"{c['name']}={next(iter(c.get('state', {})), '?')}"
                f"{'/' + c['state'].get('waiting', {}).get('reason', '') if 'waiting' in c.get('state', {}) else ''}"
                for c in pod["status"].get("containerStatuses", [])
            ]
            lines.append(f"pod {pod['metadata']['name']}: {phase} {' '.join(states)}")
        return "\n".join(lines) + "\nwarning events:\n" + events[-3000:]

    def pod_logs(self, selector: str, tail: int = 200) -> str:
        return self.kubectl(
            "logs", "-l", selector, "--tail", str(tail), "--all-containers", check=False
        )

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.timings[step] = round(time.monotonic() - t0, 1)

    @contextlib.contextmanager
    def port_forward(self, target: str, port: int) -> Iterator[str]:
        """``kubectl port-forward`` to 127.0.0.1; yields ``http://127.0.0.1:<local>``."""
        local = _free_port()
        proc = subprocess.Popen(
            [
                self.kubectl_path,
                f"--kubeconfig={self.kubeconfig}",
                "-n",
                self.namespace,
                "port-forward",
                "--address",
                "127.0.0.1",
                target,
                f"{local}:{port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "Forwarding from" not in line:
                raise StepFailedError(f"port-forward {target}: {line}{proc.stdout.read()[:2000]}")
            yield f"http://127.0.0.1:{local}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def unready_pods(cluster: Cluster) -> list[str]:
    """Running pods that are not Ready (finished Job pods are fine)."""
    out = []
    for pod in cluster.get("pods")["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        phase = pod["status"].get("phase")
        if phase == "Succeeded":
            continue
        if phase != "Running" or not _ready(pod):
            out.append(f"{pod['metadata']['name']} ({phase})")
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
