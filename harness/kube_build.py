"""Builds the Kubernetes node binaries, kubectl and etcd from source via the Go proxy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import gobuild
from harness.cache import cache_root, install_lock, is_complete, mark_complete

KUBERNETES_VERSION = "v1.34.12"
STAGING_VERSION = "v0.34.12"  # the published staging modules matching KUBERNETES_VERSION
ETCD_VERSION = "v3.6.16"
KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)

# Every module k8s.io/kubernetes maps to ./staging/src/k8s.io/<name> in its go.mod; a wrapper
# module must map each to its published version, or `go` refuses the build.
STAGING_MODULES = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)


@dataclass(frozen=True)
class KubeBinaries:
    """Paths of the built binaries."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path
    kube_proxy: Path
    kubectl: Path
    etcd: Path


def kube_dir() -> Path:
    """~/.cache/movierec/k8s-<version>-node, holding bin/ and the wrapper module src/."""
    return cache_root() / f"k8s-{KUBERNETES_VERSION}-node"


def etcd_dir() -> Path:
    """~/.cache/movierec/etcd-<version>."""
    return cache_root() / f"etcd-{ETCD_VERSION}"


def ensure_installed() -> KubeBinaries:
    """Build whatever is not cached yet (10-15 min cold on 2 cores; seconds with a warm GOCACHE)."""
    _ensure_kubernetes()
    _ensure_etcd()
    kube_bin = kube_dir() / "bin"
    return KubeBinaries(
        kube_apiserver=kube_bin / "kube-apiserver",
        kube_controller_manager=kube_bin / "kube-controller-manager",
        kube_scheduler=kube_bin / "kube-scheduler",
        kubelet=kube_bin / "kubelet",
        kube_proxy=kube_bin / "kube-proxy",
        kubectl=kube_bin / "kubectl",
        etcd=etcd_dir() / "bin" / "etcd",
    )


def _kubernetes_go_mod() -> str:
    replaces = "".join(
        f"\tk8s.io/{name} => k8s.io/{name} {STAGING_VERSION}\n" for name in STAGING_MODULES
    )
    return (
        "module movierec.local/k8sbuild\n\ngo 1.25.0\n\n"
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}\n\nreplace (\n{replaces})\n"
    )


def _version_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitVersion={KUBERNETES_VERSION}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate=2025-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def _ensure_kubernetes() -> None:
    folder = kube_dir()
    if is_complete(folder):
        return
    with install_lock("kubernetes"):
        if is_complete(folder):
            return
        gobuild.build(
            name=f"Kubernetes {KUBERNETES_VERSION}",
            module_dir=folder / "src",
            go_mod=_kubernetes_go_mod(),
            packages=[f"k8s.io/kubernetes/cmd/{cmd}@{KUBERNETES_VERSION}" for cmd in KUBE_COMMANDS],
            out_dir=folder / "bin",
            ldflags=_version_ldflags(),
        )
        mark_complete(folder, f"kubernetes {KUBERNETES_VERSION}")


def _ensure_etcd() -> None:
    folder = etcd_dir()
    if is_complete(folder):
        return
    with install_lock("etcd"):
        if is_complete(folder):
            return
        # etcd's own requirements are versioned; only its replace lines block `go install`.
        gobuild.build(
            name=f"etcd {ETCD_VERSION}",
            module_dir=folder / "src",
            go_mod=(
                "module movierec.local/etcdbuild\n\ngo 1.26.0\n\n"
                f"require go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
            ),
            packages=[f"go.etcd.io/etcd/server/v3@{ETCD_VERSION}"],
            out_dir=folder / "bin",
            binary_name="etcd",
        )
        mark_complete(folder, f"etcd {ETCD_VERSION}")
