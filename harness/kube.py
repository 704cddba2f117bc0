"""A Kubernetes control plane without nodes: etcd, kube-apiserver (token auth) and controller-manager."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness import kube_build
from harness.ports import HOST, free_port, http_ok
from harness.process import ServiceError, ServiceProcess, run
from harness.system import require_tool

ADMIN_USER = "movierec-admin"
CONTEXT = "movierec-harness"

ensure_installed = kube_build.ensure_installed


@dataclass
class KubeCluster:
    """A running control plane; ``restart`` keeps etcd's data, ports and the token."""

    workdir: Path
    etcd_port: int
    etcd_peer_port: int
    api_port: int
    kcm_port: int
    token: str
    pids: dict[str, int | None] = field(default_factory=dict)
    _processes: dict[str, ServiceProcess] = field(default_factory=dict, repr=False)

    @property
    def api_url(self) -> str:
        """The API server URL (self-signed TLS)."""
        return f"https://{HOST}:{self.api_port}"

    @property
    def etcd_url(self) -> str:
        """etcd's client URL."""
        return f"http://{HOST}:{self.etcd_port}"

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig with the admin token (system:masters) that verifies the server's CA."""
        return self.workdir / "kubeconfig"

    @property
    def kubectl_path(self) -> Path:
        """kubectl built at the server's version (the system one may be too old)."""
        return kube_build.kube_dir() / "bin" / "kubectl"

    def env(self) -> dict[str, str]:
        """Shell variables describing this control plane."""
        return {
            "MOVIEREC_KUBECONFIG": str(self.kubeconfig),
            "MOVIEREC_KUBE_API_URL": self.api_url,
            "MOVIEREC_KUBE_TOKEN": self.token,
            "MOVIEREC_KUBECTL": str(self.kubectl_path),
            "MOVIEREC_ETCD_URL": self.etcd_url,
            "MOVIEREC_ETCD_PID": str(self.pids.get("etcd") or ""),
            "MOVIEREC_KUBE_APISERVER_PID": str(self.pids.get("kube-apiserver") or ""),
            "MOVIEREC_KUBE_CONTROLLER_MANAGER_PID": str(
                self.pids.get("kube-controller-manager") or ""
            ),
            "MOVIEREC_KUBE_DIR": str(self.workdir),
        }

    def _argv(self, name: str) -> list[str]:
        binaries = kube_build.ensure_installed()
        work = self.workdir
        if name == "etcd":
            peer = f"http://{HOST}:{self.etcd_peer_port}"
            return [
                str(binaries.etcd),
                "--name=harness",
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=harness={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]
        if name == "kube-apiserver":
            return [
                str(binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                f"--secure-port={self.api_port}",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={work / 'apiserver-certs'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={work / 'sa.pub'}",
                f"--service-account-signing-key-file={work / 'sa.key'}",
                f"--token-auth-file={work / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
            ]
        return [
            str(binaries.kube_controller_manager),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            f"--bind-address={HOST}",
            f"--secure-port={self.kcm_port}",
            f"--cert-dir={work / 'controller-manager-certs'}",
            "--leader-elect=false",
            f"--service-account-private-key-file={work / 'sa.key'}",
            "--use-service-account-credentials=false",
            "--profiling=false",
        ]

    def _proc(self, name: str) -> ServiceProcess:
        if name not in self._processes:
            process = ServiceProcess(
                name,
                self._argv(name),
                log_path=self.workdir / f"{name}.log",
                marker=str(self.workdir),
            )
            process.pid = self.pids.get(name)
            self._processes[name] = process
        return self._processes[name]

    def start(self, timeout: float = 120) -> None:
        """Start etcd, the API server and the controller-manager, each after the previous is ready."""
        checks = {
            "etcd": (f"{self.etcd_url}/health", False),
            "kube-apiserver": (f"{self.api_url}/readyz", True),
            "kube-controller-manager": (f"https://{HOST}:{self.kcm_port}/healthz", True),
        }
        for name, (url, tls) in checks.items():
            process = self._proc(name)
            self.pids[name] = process.start()
            self._save()
            token = self.token if name == "kube-apiserver" else None
            process.wait_ready(
                partial(http_ok, url, token=token, insecure_tls=tls),
                timeout=timeout,
                what=url,
            )
            if name == "kube-apiserver":
                self._write_kubeconfig()

    def _write_kubeconfig(self) -> None:
        """A kubeconfig trusting the API server's self-signed CA, with the admin token."""
        bundle = (self.workdir / "apiserver-certs" / "apiserver.crt").read_text()
        blocks = re.findall(
            r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", bundle, re.S
        )
        if not blocks:
            raise ServiceError(f"no certificate in {self.workdir / 'apiserver-certs'}")
        # The file holds the serving certificate, then the CA that signed it.
        ca_data = base64.b64encode(blocks[-1].encode() + b"\n").decode()
        config = f"""apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {self.api_url}
    certificate-authority-data: {ca_data}
users:
- name: {ADMIN_USER}
  user:
    token: {self.token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {ADMIN_USER}
    namespace: default
current-context: {CONTEXT}
"""
        temporary = self.kubeconfig.with_suffix(".tmp")
        temporary.write_text(config)
        temporary.chmod(0o600)
        temporary.replace(self.kubeconfig)

    def stop(self) -> None:
        """Stop the three processes by PID, in reverse order."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._proc(name).stop()

    def running(self) -> bool:
        """True while all three processes run."""
        names = ("etcd", "kube-apiserver", "kube-controller-manager")
        return all(self._proc(name).alive() for name in names)

    def restart(self, timeout: float = 120) -> None:
        """Stop and start again; etcd keeps every object."""
        self.stop()
        self.start(timeout)

    def kubectl(self, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
        """Run kubectl against this cluster; return stdout or raise with its stderr."""
        done = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def create_namespace(self, name: str | None = None) -> str:
        """Create a namespace (a unique name by default) and return its name."""
        namespace = name or f"test-{uuid.uuid4().hex[:10]}"
        self.kubectl("create", "namespace", namespace)
        return namespace

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace without waiting for its finalizers."""
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")

    def _save(self) -> None:
        state = {
            "etcd_port": self.etcd_port,
            "etcd_peer_port": self.etcd_peer_port,
            "api_port": self.api_port,
            "kcm_port": self.kcm_port,
            "token": self.token,
            "pids": self.pids,
        }
        state_file = self.workdir / "state.json"
        state_file.write_text(json.dumps(state))
        state_file.chmod(0o600)


def _write_credentials(cluster: KubeCluster) -> None:
    work = cluster.workdir
    openssl = require_tool("openssl", ["openssl"])
    run([openssl, "genrsa", "-out", work / "sa.key", "2048"], what="making the SA signing key")
    run(
        [openssl, "rsa", "-in", work / "sa.key", "-pubout", "-out", work / "sa.pub"],
        what="making the SA public key",
    )
    tokens = work / "tokens.csv"
    tokens.write_text(f'{cluster.token},{ADMIN_USER},{ADMIN_USER}-uid,"system:masters"\n')
    for secret in (work / "sa.key", tokens):
        os.chmod(secret, 0o600)


def start(workdir: Path, *, timeout: float = 120) -> KubeCluster:
    """Start a fresh control plane on free ports under ``workdir``."""
    kube_build.ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = KubeCluster(
        workdir,
        etcd_port=free_port(),
        etcd_peer_port=free_port(),
        api_port=free_port(),
        kcm_port=free_port(),
        token=secrets.token_hex(24),
    )
    _write_credentials(cluster)
    try:
        cluster.start(timeout)
    except ServiceError:
        cluster.stop()
        raise
    return cluster


def attach(workdir: Path) -> KubeCluster:
    """The control plane whose state lives in ``workdir``."""
    state = json.loads((workdir / "state.json").read_text())
    return KubeCluster(
        workdir,
        state["etcd_port"],
        state["etcd_peer_port"],
        state["api_port"],
        state["kcm_port"],
        state["token"],
        state["pids"],
    )
