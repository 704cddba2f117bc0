"""The node's own images: a static `pause` (pod sandbox) and CoreDNS, packed and cached as OCI archives."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness import gobuild, oci
from harness.cache import cache_root, install_lock, is_complete, mark_complete, reset_dir
from harness.process import ServiceError, run
from harness.system import require_tool

PAUSE_IMAGE = "movierec.local/pause:1"
COREDNS_VERSION = "v1.14.7"
COREDNS_IMAGE = f"movierec.local/coredns:{COREDNS_VERSION.lstrip('v')}"
COREDNS_UID = "65532:65532"

# The sandbox process of every pod: reap children, exit on SIGINT/SIGTERM.
PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_term(int s) { (void)s; _exit(0); }
static void on_chld(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    struct sigaction a = {0}, c = {0};
    a.sa_handler = on_term; sigaction(SIGINT, &a, 0); sigaction(SIGTERM, &a, 0);
    c.sa_handler = on_chld; c.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &c, 0);
    for (;;) pause();
}
"""


def images_dir() -> Path:
    """~/.cache/movierec/node-images: the archives and what they are built from."""
    return cache_root() / "node-images"


def coredns_dir() -> Path:
    """~/.cache/movierec/coredns-<version>: bin/coredns and the wrapper module src/."""
    return cache_root() / f"coredns-{COREDNS_VERSION}"


def _pause_archive() -> Path:
    folder = images_dir() / "pause-1"
    archive = folder / "image.tar"
    if is_complete(folder):
        return archive
    with install_lock("pause-image"):
        if is_complete(folder):
            return archive
        reset_dir(folder)
        # A static binary needs libc.a (libc6-dev), which the scratch image cannot provide.
        gcc = require_tool("gcc", ["gcc", "libc6-dev"])
        source = folder / "pause.c"
        source.write_text(PAUSE_C)
        rootfs = folder / "rootfs"
        rootfs.mkdir()
        run(
            [gcc, "-static", "-Os", "-s", "-o", rootfs / "pause", source],
            what="compiling the pause binary",
        )
        oci.pack(rootfs, PAUSE_IMAGE, archive, oci.ImageConfig(entrypoint=["/pause"]))
        mark_complete(folder, PAUSE_IMAGE)
    return archive


def coredns_binary() -> Path:
    """CoreDNS built static (CGO_ENABLED=0 via gobuild): a scratch image has no libc."""
    folder = coredns_dir()
    binary = folder / "bin" / "coredns"
    if is_complete(folder):
        return binary
    with install_lock("coredns"):
        if is_complete(folder):
            return binary
        module = "github.com/coredns/coredns"
        gobuild.build(
            name=f"CoreDNS {COREDNS_VERSION}",
            module_dir=folder / "src",
            go_mod=f"module movierec.local/corednsbuild\n\ngo 1.25.0\n\nrequire {module} {COREDNS_VERSION}\n",
            packages=[f"{module}@{COREDNS_VERSION}"],
            out_dir=folder / "bin",
            binary_name="coredns",
        )
        mark_complete(folder, f"coredns {COREDNS_VERSION}")
    return binary


def _coredns_archive() -> Path:
    folder = images_dir() / f"coredns-{COREDNS_VERSION}"
    archive = folder / "image.tar"
    if is_complete(folder):
        return archive
    binary = coredns_binary()
    with install_lock("coredns-image"):
        if is_complete(folder):
            return archive
        reset_dir(folder)
        rootfs = folder / "rootfs"
        rootfs.mkdir()
        shutil.copy2(binary, rootfs / "coredns")
        config = oci.ImageConfig(entrypoint=["/coredns"], user=COREDNS_UID)
        oci.pack(rootfs, COREDNS_IMAGE, archive, config)
        shutil.rmtree(rootfs)
        mark_complete(folder, COREDNS_IMAGE)
    return archive


def ensure_built() -> dict[str, Path]:
    """Image name -> cached archive, building what is missing."""
    return {PAUSE_IMAGE: _pause_archive(), COREDNS_IMAGE: _coredns_archive()}


def import_missing(address: str) -> list[str]:
    """Import the node images that containerd at ``address`` lacks; return their names."""
    imported = []
    for name, archive in ensure_built().items():
        if not oci.image_present(name, address=address):
            if not archive.exists():
                raise ServiceError(f"{archive} is missing; delete {archive.parent} to rebuild it")
            oci.import_archive(archive, address=address)
            imported.append(name)
    return imported
