"""Builds helm from source via the Go module proxy into ~/.cache/movierec/helm-<version>."""

from __future__ import annotations

from pathlib import Path

from harness import gobuild
from harness.cache import cache_root, install_lock, is_complete, mark_complete

HELM_VERSION = "v4.3.1"
HELM_MODULE = "helm.sh/helm/v4"


def helm_dir() -> Path:
    """~/.cache/movierec/helm-<version>, holding bin/helm and the wrapper module src/."""
    return cache_root() / f"helm-{HELM_VERSION}"


def _ldflags() -> str:
    # `go install` leaves helm's version at the release line and "+unreleased"; helm's own
    # Makefile stamps the tag into internal/version the same way for release builds.
    package = f"{HELM_MODULE}/internal/version"
    return " ".join(
        [
            "-s",
            "-w",
            f"-X {package}.version={HELM_VERSION}",
            f"-X {package}.metadata=",
            f"-X {package}.gitTreeState=clean",
        ]
    )


def ensure_installed() -> Path:
    """The helm binary, built on first use (minutes on 2 cores; seconds with a warm GOCACHE)."""
    folder = helm_dir()
    binary = folder / "bin" / "helm"
    if is_complete(folder):
        return binary
    with install_lock("helm"):
        if is_complete(folder):
            return binary
        gobuild.build(
            name=f"helm {HELM_VERSION}",
            module_dir=folder / "src",
            go_mod=(
                "module movierec.local/helmbuild\n\ngo 1.25.0\n\n"
                f"require {HELM_MODULE} {HELM_VERSION}\n"
            ),
            packages=[f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}"],
            out_dir=folder / "bin",
            binary_name="helm",
            ldflags=_ldflags(),
        )
        mark_complete(folder, f"helm {HELM_VERSION}")
    return binary


if __name__ == "__main__":
    print(ensure_installed())
