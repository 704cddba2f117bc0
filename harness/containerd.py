"""The node's own containerd (Debian's, with runc and the CNI plugins): config, start, task cleanup."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness.process import ServiceError, ServiceProcess, pid_alive, pid_cmdline, stop_pid
from harness.system import apt_install

log = logging.getLogger(__name__)

# Fixed, so images imported once (`make images`) stay for every later run.
ADDRESS = "/run/movierec/containerd/containerd.sock"
ROOT = Path("/var/lib/movierec-containerd")
STATE = Path("/run/movierec/containerd")
NAMESPACE = "k8s.io"
CNI_BIN_DIR = Path("/usr/lib/cni")

# What a fresh Debian machine needs (command or file -> package).
PACKAGES = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    str(CNI_BIN_DIR / "bridge"): "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "socat": "socat",  # kubectl port-forward runs it on the node
    "ip": "iproute2",  # network namespaces and cni0 at teardown
}


def ensure_packages() -> None:
    """apt-get install whatever of containerd, runc, CNI plugins, iptables, conntrack, socat is missing."""
    missing = sorted(
        {
            package
            for thing, package in PACKAGES.items()
            if not (Path(thing).exists() if thing.startswith("/") else shutil.which(thing))
        }
    )
    if missing:
        apt_install(missing)


def config_text(*, cni_conf_dir: Path, sandbox_image: str) -> str:
    """containerd 1.6 config (version 2): only what differs from the defaults."""
    return f"""version = 2
root = "{ROOT}"
state = "{STATE}"

[grpc]
  address = "{ADDRESS}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # No AppArmor in this kernel, and no CAP_SYS_RESOURCE in the bounding set: without this CRI
  # asks for oom_score_adj -998 per sandbox and runc init dies ("can't get final child's PID").
  disable_apparmor = true
  restrict_oom_score_adj = true
  # Non-root (restricted) pods may bind ports below 1024, as with containerd 2.
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir}"
"""


def ctr(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``ctr`` against the node's containerd in the k8s.io namespace (never raises)."""
    return subprocess.run(
        ["ctr", "--address", ADDRESS, "-n", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def answers() -> bool:
    """True when a containerd serves the node's socket."""
    # ctr waits seconds for a socket that is not there; a plain connect answers at once.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(ADDRESS)
        except OSError:
            return False
    try:
        return ctr("version", timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def sbin_env() -> dict[str, str]:
    """This process's environment with the sbin folders on PATH (runc, iptables, mount, ip)."""
    path = os.environ.get("PATH", "")
    extra = [p for p in ("/usr/local/sbin", "/usr/sbin", "/sbin") if p not in path.split(":")]
    return {**os.environ, "PATH": ":".join([path, *extra]).strip(":")}


def process(workdir: Path) -> ServiceProcess:
    """The containerd process of a cluster whose files live in ``workdir``."""
    return ServiceProcess(
        "containerd",
        ["containerd", "--config", workdir / "containerd.toml"],
        log_path=workdir / "logs" / "containerd.log",
        marker=str(workdir),
        env=sbin_env(),
    )


def refuse_if_running() -> None:
    """Raise when a containerd already serves the node's socket: one node per machine."""
    if answers():
        raise ServiceError(
            f"a containerd already serves {ADDRESS} (a cluster left running by another session?);"
            " stop it with `make services-down` from that session, or by its PID"
        )


def start(proc: ServiceProcess, workdir: Path, *, cni_conf_dir: Path, sandbox_image: str) -> int:
    """Write the config and start containerd; refuse when another one already owns the socket."""
    refuse_if_running()
    (workdir / "containerd.toml").write_text(
        config_text(cni_conf_dir=cni_conf_dir, sandbox_image=sandbox_image)
    )
    STATE.mkdir(parents=True, exist_ok=True)
    pid = proc.start()
    proc.wait_ready(answers, timeout=60, what=f"ctr version on {ADDRESS}")
    return pid


def task_ids() -> list[str]:
    """IDs of the tasks (running containers) containerd knows; [] when it does not answer."""
    done = ctr("tasks", "ls", "-q")
    return done.stdout.split() if done.returncode == 0 else []


def wait_no_tasks(timeout: float) -> bool:
    """Wait until no task runs; True when none is left."""
    deadline = time.monotonic() + timeout
    while task_ids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def remove_all_containers() -> None:
    """Kill every task and delete every container: what the kubelet did not clean up itself."""
    tasks = task_ids()
    for task in tasks:
        ctr("tasks", "kill", "-s", "SIGKILL", task)
    if tasks:
        _wait_stopped()
    for task in task_ids():
        ctr("tasks", "delete", "-f", task)
    done = ctr("containers", "ls", "-q")
    for container in done.stdout.split() if done.returncode == 0 else []:
        ctr("containers", "delete", container)


def _wait_stopped(timeout: float = 10) -> None:
    """Give SIGKILLed tasks a moment to reach STOPPED so `tasks delete` works."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = ctr("tasks", "ls")
        if done.returncode != 0 or "RUNNING" not in done.stdout:
            return
        time.sleep(0.3)


def leftover_shims() -> list[int]:
    """PIDs of runc shims still serving the node's containerd (they outlive containerd)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmdline = pid_cmdline(int(entry.name))
            if "containerd-shim" in cmdline and ADDRESS in cmdline:
                pids.append(int(entry.name))
    return pids


def stop_shims() -> None:
    """Stop shims whose tasks are gone but which still run (identified by the node's socket)."""
    for pid in leftover_shims():
        if pid_alive(pid):
            stop_pid(pid, marker=ADDRESS, group=False, timeout=5, name="containerd-shim")
