"""A real single-node Kubernetes: etcd, control plane, kubelet, kube-proxy, containerd + CNI, CoreDNS."""

from __future__ import annotations

import json
import logging
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness import cni, containerd, coredns, helm_build, kube_build, node_images, pki
from harness.ports import HOST, free_port, http_ok
from harness.process import ServiceError, ServiceProcess
from harness.system import is_root

log = logging.getLogger(__name__)

CONTEXT = "movierec-harness"
ADMIN = pki.Client("admin", "movierec-admin", ("system:masters",))
TOKEN_USER = "movierec-admin-token"
KUBELET_ROOT = Path("/var/lib/kubelet")
RUN_ROOT = Path("/run/movierec")
# Fixed ports of the node components (upstream defaults, set explicitly). One node per machine:
# containerd's paths, cni0 and /var/lib/kubelet are fixed anyway.
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_METRICS_PORT = 10249
PROXY_HEALTHZ_PORT = 10256
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
# Start order; stop goes the other way round, after every pod is gone.
PROCESSES = (
    "containerd",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)
_CLIENTS = (
    ADMIN,
    pki.Client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
    pki.Client("controller-manager", "system:kube-controller-manager"),
    pki.Client("scheduler", "system:kube-scheduler"),
    pki.Client("kube-proxy", "system:kube-proxy"),
)


def ensure_installed() -> kube_build.KubeBinaries:
    """Debian packages, the Kubernetes binaries and etcd, helm, the pause and CoreDNS images."""
    containerd.ensure_packages()
    binaries = kube_build.ensure_installed()
    helm_build.ensure_installed()
    node_images.ensure_built()
    return binaries


def node_ip() -> str:
    """The address of the interface holding the default route (pods reach the API server there)."""
    done = subprocess.run(
        ["ip", "-4", "-o", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=False
    )
    words = done.stdout.split()
    if "src" in words:
        return words[words.index("src") + 1]
    raise ServiceError(f"no IPv4 default route, so no node IP: {done.stdout}{done.stderr}")


@dataclass
class KubeCluster:
    """A running node; ``restart`` keeps etcd's data, certificates and ports, not the pods."""

    workdir: Path
    etcd_port: int
    etcd_peer_port: int
    api_port: int
    token: str
    node_name: str
    node_ip: str
    pids: dict[str, int | None] = field(default_factory=dict)
    _processes: dict[str, ServiceProcess] = field(default_factory=dict, repr=False)

    # ---- addresses ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The API server URL (TLS from the cluster CA)."""
        return f"https://{HOST}:{self.api_port}"

    @property
    def etcd_url(self) -> str:
        """etcd's client URL."""
        return f"http://{HOST}:{self.etcd_port}"

    @property
    def pki_dir(self) -> Path:
        """The CA, every certificate and the service-account key pair."""
        return self.workdir / "pki"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig: client certificate in system:masters, certificates embedded."""
        return self.workdir / "kubeconfig"

    @property
    def kubectl_path(self) -> Path:
        """kubectl built at the server's version (the system one may be too old)."""
        return kube_build.kube_dir() / "bin" / "kubectl"

    def env(self) -> dict[str, str]:
        """Shell variables describing this cluster."""
        pid = {name: str(self.pids.get(name) or "") for name in PROCESSES}
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECTL": str(self.kubectl_path),
            "HELM": str(helm_build.helm_dir() / "bin" / "helm"),
            "MOVIEREC_KUBECONFIG": str(self.kubeconfig),
            "MOVIEREC_KUBECTL": str(self.kubectl_path),
            "MOVIEREC_KUBE_API_URL": self.api_url,
            "MOVIEREC_KUBE_TOKEN": self.token,
            "MOVIEREC_KUBE_NODE": self.node_name,
            "MOVIEREC_KUBE_NODE_IP": self.node_ip,
            "MOVIEREC_KUBE_POD_CIDR": cni.POD_CIDR,
            "MOVIEREC_KUBE_SERVICE_CIDR": cni.SERVICE_CIDR,
            "MOVIEREC_KUBE_DNS_IP": cni.DNS_SERVICE_IP,
            "MOVIEREC_CONTAINERD_ADDRESS": containerd.ADDRESS,
            "MOVIEREC_ETCD_URL": self.etcd_url,
            "MOVIEREC_CONTAINERD_PID": pid["containerd"],
            "MOVIEREC_ETCD_PID": pid["etcd"],
            "MOVIEREC_KUBE_APISERVER_PID": pid["kube-apiserver"],
            "MOVIEREC_KUBE_CONTROLLER_MANAGER_PID": pid["kube-controller-manager"],
            "MOVIEREC_KUBE_SCHEDULER_PID": pid["kube-scheduler"],
            "MOVIEREC_KUBELET_PID": pid["kubelet"],
            "MOVIEREC_KUBE_PROXY_PID": pid["kube-proxy"],
            "MOVIEREC_KUBE_DIR": str(self.workdir),
        }

    # ---- files ----------------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        """CA, certificates, kubeconfigs and the token file; kept across restarts."""
        self._write_front_proxy_credentials()
        folder = self.pki_dir
        if (folder / "done").exists():
            return
        pki.make_ca(folder)
        sans = [f"IP:{HOST}", f"IP:{self.node_ip}", f"IP:{cni.API_SERVICE_IP}", "DNS:localhost"]
        sans += [f"DNS:{self.node_name}", "DNS:kubernetes", "DNS:kubernetes.default"]
        sans += [
            "DNS:kubernetes.default.svc",
            f"DNS:kubernetes.default.svc.{coredns.CLUSTER_DOMAIN}",
        ]
        pki.issue(folder, "apiserver", "/CN=kube-apiserver", sans)
        node_sans = [f"IP:{HOST}", f"IP:{self.node_ip}", f"DNS:{self.node_name}", "DNS:localhost"]
        pki.issue(folder, "kubelet-serving", f"/CN={self.node_name}", node_sans)
        kubelet = pki.Client("kubelet", f"system:node:{self.node_name}", ("system:nodes",))
        for client in (*_CLIENTS, kubelet):
            pki.issue(folder, client.name, pki.subject(client.user, client.groups))
            pki.write_kubeconfig(
                self.kubeconfig if client is ADMIN else self.workdir / f"{client.name}.kubeconfig",
                pki=folder,
                server=self.api_url,
                name=client.name,
                cluster=CONTEXT,
            )
        pki.make_signing_key(folder)
        tokens = folder / "tokens.csv"
        tokens.write_text(f'{self.token},{TOKEN_USER},{TOKEN_USER}-uid,"system:masters"\n')
        tokens.chmod(0o600)
        (folder / "done").write_text("")

    def _write_front_proxy_credentials(self) -> None:
        """A separate CA for the aggregation layer's request headers (extension API servers)."""
        folder = self.pki_dir / "front-proxy"
        if (folder / "done").exists():
            return
        pki.make_ca(folder, "movierec-front-proxy-ca")
        pki.issue(folder, "front-proxy-client", "/CN=front-proxy-client")
        (folder / "done").write_text("")

    def _write_configs(self) -> None:
        folder = self.pki_dir
        write_if_changed(
            self.workdir / "kubelet.yaml",
            f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {self.node_ip}
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: {HOST}
healthzPort: {KUBELET_HEALTHZ_PORT}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {folder / "ca.crt"}}}
authorization: {{mode: Webhook}}
tlsCertFile: {folder / "kubelet-serving.crt"}
tlsPrivateKeyFile: {folder / "kubelet-serving.key"}
containerRuntimeEndpoint: unix://{containerd.ADDRESS}
imageServiceEndpoint: unix://{containerd.ADDRESS}
# This machine: cgroup v1 hybrid, no systemd as PID 1, no CAP_SYS_RESOURCE, swap allowed.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
podCIDR: {cni.POD_CIDR}
clusterDomain: {coredns.CLUSTER_DOMAIN}
clusterDNS: [{cni.DNS_SERVICE_IP}]
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# A pod's ConfigMap volumes (the router's flag file) refresh on its periodic sync: every 10 s
# here instead of every minute, so a rollout step reaches the router within seconds in tests.
syncFrequency: 10s
# Small shared disk; images are imported, not pullable, so image GC must never remove them.
evictionHard: {{memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
rotateCertificates: false
serverTLSBootstrap: false
""",
        )
        # kube-proxy exits when its config file changes, so an unchanged file is not rewritten.
        write_if_changed(
            self.workdir / "kube-proxy.yaml",
            f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {self.workdir / "kube-proxy.kubeconfig"}}}
hostnameOverride: {self.node_name}
mode: iptables
clusterCIDR: {cni.CLUSTER_CIDR}
bindAddress: {self.node_ip}
metricsBindAddress: {HOST}:{PROXY_METRICS_PORT}
healthzBindAddress: {HOST}:{PROXY_HEALTHZ_PORT}
# No CAP_SYS_RESOURCE and a read-only nf_conntrack_max here: leave both alone.
conntrack: {{maxPerCore: 0}}
oomScoreAdj: 0
""",
        )
        cni.write_config(self.workdir / "cni")

    # ---- processes ------------------------------------------------------------------------------

    def _argv(self, name: str) -> list[str]:
        binaries = kube_build.ensure_installed()
        work, folder = self.workdir, self.pki_dir
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
                # 127.0.0.1 for the host, the node IP for pods (the `kubernetes` Service).
                "--bind-address=0.0.0.0",
                f"--advertise-address={self.node_ip}",
                f"--secure-port={self.api_port}",
                f"--cert-dir={work / 'apiserver-certs'}",
                f"--tls-cert-file={folder / 'apiserver.crt'}",
                f"--tls-private-key-file={folder / 'apiserver.key'}",
                f"--client-ca-file={folder / 'ca.crt'}",
                f"--token-auth-file={folder / 'tokens.csv'}",
                # Without these, every component logs a missing requestheader CA each minute.
                f"--requestheader-client-ca-file={folder / 'front-proxy' / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={folder / 'front-proxy' / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={folder / 'front-proxy' / 'front-proxy-client.key'}",
                f"--kubelet-client-certificate={folder / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={folder / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={folder / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--service-cluster-ip-range={cni.SERVICE_CIDR}",
                f"--service-account-issuer=https://kubernetes.default.svc.{coredns.CLUSTER_DOMAIN}",
                f"--service-account-key-file={folder / 'sa.pub'}",
                f"--service-account-signing-key-file={folder / 'sa.key'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--profiling=false",
            ]
        if name == "kube-controller-manager":
            config = work / "controller-manager.kubeconfig"
            return [
                str(binaries.kube_controller_manager),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                f"--bind-address={HOST}",
                f"--secure-port={CONTROLLER_MANAGER_PORT}",
                f"--cert-dir={work / 'controller-manager-certs'}",
                "--leader-elect=false",
                f"--root-ca-file={folder / 'ca.crt'}",
                f"--service-account-private-key-file={folder / 'sa.key'}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={folder / 'ca.crt'}",
                f"--cluster-signing-key-file={folder / 'ca.key'}",
                f"--service-cluster-ip-range={cni.SERVICE_CIDR}",
                "--profiling=false",
            ]
        if name == "kube-scheduler":
            config = work / "scheduler.kubeconfig"
            return [
                str(binaries.kube_scheduler),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                f"--bind-address={HOST}",
                f"--secure-port={SCHEDULER_PORT}",
                f"--cert-dir={work / 'scheduler-certs'}",
                "--leader-elect=false",
                "--profiling=false",
            ]
        if name == "kubelet":
            return [
                str(binaries.kubelet),
                f"--config={work / 'kubelet.yaml'}",
                f"--kubeconfig={work / 'kubelet.kubeconfig'}",
                f"--root-dir={KUBELET_ROOT}",
                f"--hostname-override={self.node_name}",
                f"--node-ip={self.node_ip}",
            ]
        if name == "kube-proxy":
            return [str(binaries.kube_proxy), f"--config={work / 'kube-proxy.yaml'}"]
        raise ValueError(name)

    def _proc(self, name: str) -> ServiceProcess:
        if name not in self._processes:
            if name == "containerd":
                process = containerd.process(self.workdir)
            else:
                process = ServiceProcess(
                    name,
                    self._argv(name),
                    log_path=self.workdir / "logs" / f"{name}.log",
                    marker=str(self.workdir),
                    env=containerd.sbin_env(),
                    # The API server can linger on open streams after a clean shutdown; only
                    # etcd's data needs a graceful stop.
                    stop_timeout=20 if name == "etcd" else 10,
                )
            process.pid = self.pids.get(name)
            self._processes[name] = process
        return self._processes[name]

    def _launch(self, name: str) -> ServiceProcess:
        process = self._proc(name)
        if name == "containerd":
            self.pids[name] = containerd.start(
                process,
                self.workdir,
                cni_conf_dir=self.workdir / "cni",
                sandbox_image=node_images.PAUSE_IMAGE,
            )
        else:
            self.pids[name] = process.start()
        self._save()
        return process

    def _checks(self) -> dict[str, tuple[Callable[[], bool], str]]:
        def url(address: str, insecure_tls: bool = False) -> tuple[Callable[[], bool], str]:
            return partial(http_ok, address, insecure_tls=insecure_tls), address

        return {
            "etcd": url(f"{self.etcd_url}/health"),
            "kube-apiserver": (self._api_ready, f"{self.api_url}/readyz"),
            "kube-controller-manager": url(
                f"https://{HOST}:{CONTROLLER_MANAGER_PORT}/healthz", insecure_tls=True
            ),
            "kube-scheduler": url(f"https://{HOST}:{SCHEDULER_PORT}/healthz", insecure_tls=True),
            "kubelet": url(f"http://{HOST}:{KUBELET_HEALTHZ_PORT}/healthz"),
            "kube-proxy": url(f"http://{HOST}:{PROXY_HEALTHZ_PORT}/healthz"),
        }

    def _api_ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        context.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        try:
            with urllib.request.urlopen(f"{self.api_url}/readyz", timeout=3, context=context) as r:
                return int(r.status) == 200
        except OSError:
            return False

    def start(self, timeout: float = 180) -> None:
        """Start every component in order, wait for node Ready, then deploy CoreDNS and wait for it."""
        if not is_root():
            raise ServiceError("the cluster needs root (kubelet, containerd, iptables, mounts)")
        running = [name for name in PROCESSES if self._proc(name).alive()]
        if running:
            raise ServiceError(f"cluster in {self.workdir} still runs {running}; stop it first")
        begun = time.monotonic()
        cni.enable_forwarding()
        self._write_credentials()
        self._write_configs()
        containerd.refuse_if_running()  # before cleaning: the leftovers could be a live node's
        left = {kind: found for kind, found in leftovers().items() if found}
        if left:  # a node that was never stopped (killed session, reboot of a container)
            log.warning("removing what an earlier node left: %s", left)
            containerd.stop_shims()
            clean_host()
        checks = self._checks()
        self._launch("containerd")
        etcd = self._launch("etcd")
        node_images.import_missing(containerd.ADDRESS)
        etcd.wait_ready(checks["etcd"][0], timeout=timeout, what=checks["etcd"][1])
        api = self._launch("kube-apiserver")
        api.wait_ready(
            checks["kube-apiserver"][0], timeout=timeout, what=checks["kube-apiserver"][1]
        )
        rest = ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
        for name in rest:
            self._launch(name)
        # Applied while the node registers: the pod is scheduled the moment it is Ready.
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=coredns.manifests()
        )
        for name in rest:
            self._proc(name).wait_ready(checks[name][0], timeout=timeout, what=checks[name][1])
        self._wait_node_ready(timeout)
        log.info("node %s Ready after %.1fs", self.node_name, time.monotonic() - begun)
        self.kubectl(
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 10,
        )
        self._wait_dns(timeout)
        log.info("cluster with DNS ready after %.1fs", time.monotonic() - begun)

    def _wait_dns(self, timeout: float) -> None:
        """Ask CoreDNS through the kube-dns clusterIP: proves pod networking and kube-proxy."""
        name = f"kubernetes.default.svc.{coredns.CLUSTER_DOMAIN}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if coredns.query_a(cni.DNS_SERVICE_IP, name, timeout=1) == [cni.API_SERVICE_IP]:
                    return
            except OSError:
                pass  # kube-proxy has not written the Service's rules yet
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"CoreDNS at {cni.DNS_SERVICE_IP} did not answer {name} in {timeout:.0f}s;"
                    f" kube-proxy log {self.workdir / 'logs' / 'kube-proxy.log'}"
                )
            time.sleep(0.3)

    def _wait_node_ready(self, timeout: float) -> None:
        query = '{.status.conditions[?(@.type=="Ready")].status}'
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.kubectl("get", "node", self.node_name, "-o", f"jsonpath={query}") == "True":
                    return
            except ServiceError:
                pass  # not registered yet
            kubelet = self._proc("kubelet")
            if not kubelet.alive() or time.monotonic() > deadline:
                raise ServiceError(
                    f"node {self.node_name} not Ready after {timeout:.0f}s; kubelet log "
                    f"{kubelet.log_path}"
                )
            time.sleep(0.5)

    # ---- stopping -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Delete every pod, stop every process by PID and remove what pods leave on the host."""
        # Without the scheduler, pods controllers recreate stay Pending: nothing lands on the
        # node any more. The controller-manager keeps running for now: it removes the Job
        # controller's finalizers, without which Job pods are never deleted.
        begun = time.monotonic()
        self._proc("kube-scheduler").stop()
        try:
            if all(self._proc(name).alive() for name in ("etcd", "kube-apiserver", "kubelet")):
                self._delete_node_pods()
        except Exception as err:  # the processes must stop whatever happened to the pods
            log.warning("deleting the pods failed: %s", err)
        for name in ("kube-controller-manager", "kube-proxy", "kubelet", "kube-apiserver", "etcd"):
            self._proc(name).stop()
        if self._proc("containerd").alive():
            containerd.remove_all_containers()  # what the kubelet did not stop
        self._proc("containerd").stop()
        if containerd.answers():  # not ours (this one failed to start): that node owns the host
            log.warning("another node's containerd serves %s; host left alone", containerd.ADDRESS)
            return
        containerd.stop_shims()
        clean_host()
        log.info("cluster stopped and host cleaned in %.1fs", time.monotonic() - begun)

    def _delete_node_pods(self) -> None:
        """Delete the node's pods through the API: the kubelet tears down sandboxes and mounts."""
        on_node = ("--all-namespaces", f"--field-selector=spec.nodeName={self.node_name}")
        try:
            self.kubectl(
                "delete", "pods", *on_node, "--grace-period=5", "--timeout=60s", timeout=90
            )
        except ServiceError as err:
            log.warning("pods did not go in 60s (%s); removing them by force", err)
            template = "{range .items[*]}{.metadata.namespace}/{.metadata.name} {end}"
            names = self.kubectl("get", "pods", *on_node, "-o", f"jsonpath={template}")
            for entry in names.split():
                namespace, pod = entry.split("/", 1)
                self.kubectl(
                    "-n",
                    namespace,
                    "patch",
                    "pod",
                    pod,
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                )
            self.kubectl("delete", "pods", *on_node, "--force", "--grace-period=0", "--wait=false")
        if not containerd.wait_no_tasks(60):
            log.warning("containers still run after their pods went: %s", containerd.task_ids())

    def running(self) -> bool:
        """True while every process runs."""
        return all(self._proc(name).alive() for name in PROCESSES)

    def process_alive(self, name: str) -> bool:
        """True while the process ``name`` (one of PROCESSES) runs."""
        return self._proc(name).alive()

    def restart(self, timeout: float = 180) -> None:
        """Stop and start again: etcd keeps every object; controllers recreate the pods."""
        self.stop()
        self.start(timeout)

    # ---- kubectl --------------------------------------------------------------------------------

    def kubectl(self, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
        """Run kubectl as admin; return stdout or raise with its stderr."""
        try:
            done = subprocess.run(
                [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise ServiceError(f"kubectl {' '.join(args)} timed out after {timeout}s") from err
        if done.returncode != 0:
            raise ServiceError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def create_namespace(self, name: str | None = None) -> str:
        """Create a namespace (a unique name by default) once its `default` ServiceAccount exists."""
        namespace = name or f"test-{uuid.uuid4().hex[:10]}"
        self.kubectl("create", "namespace", namespace)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # pods are refused until the SA controller made it
            try:
                self.kubectl("-n", namespace, "get", "serviceaccount", "default", "-o", "name")
                break
            except ServiceError:
                time.sleep(0.2)
        return namespace

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace without waiting for its finalizers."""
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")

    def _save(self) -> None:
        state = {
            "etcd_port": self.etcd_port,
            "etcd_peer_port": self.etcd_peer_port,
            "api_port": self.api_port,
            "token": self.token,
            "node_name": self.node_name,
            "node_ip": self.node_ip,
            "pids": self.pids,
        }
        state_file = self.workdir / "state.json"
        state_file.write_text(json.dumps(state))
        state_file.chmod(0o600)


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless ``path`` already holds it (watchers react to every write)."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def clean_host() -> None:
    """Remove what pods and kube-proxy leave on the host once nothing runs any more."""
    cni.remove_netns()
    left = cni.unmount_under(str(KUBELET_ROOT), str(RUN_ROOT))
    if left:
        log.warning("still mounted: %s", left)
    cni.remove_ipam()
    proxy = kube_build.kube_dir() / "bin" / "kube-proxy"
    if proxy.exists():  # its own cleanup covers iptables, ipvs and nftables
        subprocess.run([proxy, "--cleanup"], capture_output=True, check=False, timeout=60)
    cni.remove_bridge()
    cni.remove_chains()


def leftovers() -> dict[str, list[str]]:
    """What a stopped node must not leave behind (every list empty when clean)."""
    return {
        "netns": cni.netns_names(),
        "mounts": cni.mounts_under(str(KUBELET_ROOT), str(RUN_ROOT)),
        "ip reservations": cni.reserved_ips(),
        "links": [cni.BRIDGE] if cni.bridge_exists() else [],
        "iptables chains": cni.all_chains(),
        "shims": [str(pid) for pid in containerd.leftover_shims()],
    }


def start(workdir: Path, *, timeout: float = 180) -> KubeCluster:
    """Start a fresh node under ``workdir`` (the API server and etcd on free ports)."""
    ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = KubeCluster(
        workdir,
        etcd_port=free_port(),
        etcd_peer_port=free_port(),
        api_port=free_port(),
        token=secrets.token_hex(24),
        node_name=socket.gethostname().lower(),
        node_ip=node_ip(),
    )
    try:
        cluster.start(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def attach(workdir: Path) -> KubeCluster:
    """The cluster whose state lives in ``workdir``."""
    state = json.loads((workdir / "state.json").read_text())
    return KubeCluster(
        workdir,
        state["etcd_port"],
        state["etcd_peer_port"],
        state["api_port"],
        state["token"],
        state["node_name"],
        state["node_ip"],
        state["pids"],
    )
