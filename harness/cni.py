"""Pod networking on the host (bridge + host-local + portmap) and removal of everything it leaves."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

NETWORK = "movierec"
BRIDGE = "cni0"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
# host-local keeps one file per reserved pod IP here (not the shared /var/lib/cni).
IPAM_DIR = Path("/run/movierec/cni/networks")
# Chains made by kube-proxy and kubelet (KUBE-*) and by the bridge/portmap plugins (CNI-*).
CHAIN_PREFIXES = ("KUBE-", "CNI-")
_TABLES = ("filter", "nat", "mangle")


def conflist() -> str:
    """The one CNI network: pods on the cni0 bridge, NATed to the outside, hostPort support."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(IPAM_DIR),
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def write_config(conf_dir: Path) -> None:
    """Write the conflist into ``conf_dir`` (containerd's CRI reads it from there)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / f"10-{NETWORK}.conflist"
    if not path.exists() or path.read_text() != conflist():  # containerd reloads on every write
        path.write_text(conflist())


def enable_forwarding() -> None:
    """Routing between pods and Services: IP forwarding and bridged traffic through iptables."""
    for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
        path = Path("/proc/sys") / key
        if not path.exists() and key.startswith("net/bridge"):
            subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
        path.write_text("1\n")


# ---- what a pod can leave behind -----------------------------------------------------------------


def netns_names() -> list[str]:
    """Network namespaces made for pods (containerd names them cni-<uuid>)."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return [name for name in names if name.startswith("cni-")]


def reserved_ips() -> list[str]:
    """Pod IPs host-local still holds."""
    folder = IPAM_DIR / NETWORK
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name[:1].isdigit())


def bridge_exists() -> bool:
    """True when the cni0 link exists."""
    return Path(f"/sys/class/net/{BRIDGE}").exists()


def mounts_under(*prefixes: str) -> list[str]:
    """Mount points at or under any of ``prefixes``, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if any(target == p or target.startswith(p.rstrip("/") + "/") for p in prefixes):
            found.append(target)
    return sorted(set(found), key=lambda t: (-t.count("/"), t))


def _iptables_tools() -> list[str]:
    return [tool for tool in ("iptables", "ip6tables") if shutil.which(f"{tool}-save")]


def chains(tool: str = "iptables") -> list[str]:
    """KUBE-*/CNI-* chains in the filter, nat and mangle tables, as ``table/chain``."""
    found = []
    for table in _TABLES:
        done = subprocess.run(
            [f"{tool}-save", "-t", table], capture_output=True, text=True, check=False
        )
        for line in done.stdout.splitlines():
            if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                found.append(f"{table}/{line[1:].split()[0]}")
    return found


def all_chains() -> list[str]:
    """``chains`` for IPv4 and IPv6."""
    return [f"{tool}:{chain}" for tool in _iptables_tools() for chain in chains(tool)]


def remove_netns() -> None:
    """Delete the pod network namespaces left behind (normally the CRI removes them)."""
    for name in netns_names():
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def unmount_under(*prefixes: str) -> list[str]:
    """Unmount everything under ``prefixes`` (deepest first); return what stayed mounted."""
    for target in mounts_under(*prefixes):
        done = subprocess.run(["umount", target], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    return mounts_under(*prefixes)


def remove_ipam() -> None:
    """Forget every pod IP reservation."""
    shutil.rmtree(IPAM_DIR, ignore_errors=True)


def remove_bridge() -> None:
    """Delete the cni0 bridge (the bridge plugin never deletes it)."""
    if bridge_exists():
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)


def remove_chains() -> None:
    """Drop every KUBE-*/CNI-* chain and every rule mentioning one, keeping all other rules."""
    for tool in _iptables_tools():
        for table in _TABLES:
            saved = subprocess.run(
                [f"{tool}-save", "-t", table], capture_output=True, text=True, check=False
            )
            if saved.returncode != 0 or not any(p in saved.stdout for p in CHAIN_PREFIXES):
                continue
            kept = "".join(
                line + "\n"
                for line in saved.stdout.splitlines()
                if not any(prefix in line for prefix in CHAIN_PREFIXES)
            )
            done = subprocess.run(
                [f"{tool}-restore", "-T", table],
                input=kept,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                log.warning("%s-restore -T %s failed: %s", tool, table, done.stderr.strip())
