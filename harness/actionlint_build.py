"""Builds actionlint from source via the Go module proxy into ~/.cache/movierec/actionlint-<version>."""

from __future__ import annotations

from pathlib import Path

from harness import gobuild
from harness.cache import cache_root, install_lock, is_complete, mark_complete

ACTIONLINT_VERSION = "v1.7.12"
ACTIONLINT_MODULE = "github.com/rhysd/actionlint"


def actionlint_dir() -> Path:
    """~/.cache/movierec/actionlint-<version>, holding bin/actionlint and the wrapper module src/."""
    return cache_root() / f"actionlint-{ACTIONLINT_VERSION}"


def ensure_installed() -> Path:
    """The actionlint binary, built on first use (about a minute; seconds with a warm GOCACHE)."""
    folder = actionlint_dir()
    binary = folder / "bin" / "actionlint"
    if is_complete(folder):
        return binary
    with install_lock("actionlint"):
        if is_complete(folder):
            return binary
        gobuild.build(
            name=f"actionlint {ACTIONLINT_VERSION}",
            module_dir=folder / "src",
            go_mod=(
                "module movierec.local/actionlintbuild\n\ngo 1.24.0\n\n"
                f"require {ACTIONLINT_MODULE} {ACTIONLINT_VERSION}\n"
            ),
            packages=[f"{ACTIONLINT_MODULE}/cmd/actionlint@{ACTIONLINT_VERSION}"],
            out_dir=folder / "bin",
            binary_name="actionlint",
            # `actionlint -version` prints this instead of the wrapper module's "(devel)".
            ldflags=f"-s -w -X {ACTIONLINT_MODULE}.version={ACTIONLINT_VERSION}",
        )
        mark_complete(folder, f"actionlint {ACTIONLINT_VERSION}")
    return binary


if __name__ == "__main__":
    print(ensure_installed())
