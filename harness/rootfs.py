"""Debian root filesystems for images: one cached debootstrap base, copies with apt packages added."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from harness.cache import cache_root, install_lock, is_complete, mark_complete
from harness.process import ServiceError, run
from harness.system import apt_install, is_root, require_tool

log = logging.getLogger(__name__)

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCES_FILE = Path("/etc/apt/sources.list.d/debian.sources")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
RECIPE = "1"  # bump when the way a rootfs is made changes, so cached trees are rebuilt
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The mirror may serve snapshot Release files whose Valid-Until has passed (the host says the same).
_APT_CONF = 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n'
# Package scripts must not start daemons inside the chroot.
_POLICY_RC_D = "#!/bin/sh\nexit 101\n"


def mirror() -> str:
    """The Debian mirror this machine uses (first ``URIs:`` of the deb822 sources file)."""
    with contextlib.suppress(OSError):
        for line in SOURCES_FILE.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return DEFAULT_MIRROR


def rootfs_dir() -> Path:
    """Where finished root filesystems are kept."""
    folder = cache_root() / "rootfs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _require_root() -> None:
    if not is_root():
        raise ServiceError("building image root filesystems needs root (debootstrap, chroot)")


def base() -> Path:
    """The debootstrap minbase tree of Debian ``SUITE`` (cached; ~70 s the first time)."""
    _require_root()
    folder = rootfs_dir() / f"base-{SUITE}-{_key(SUITE, mirror(), RECIPE)}"
    if is_complete(folder.with_suffix(".done")):
        return folder
    with install_lock("rootfs-base"):
        if is_complete(folder.with_suffix(".done")):
            return folder
        debootstrap = require_tool("debootstrap", ["debootstrap"])
        if not DEBIAN_KEYRING.exists():  # Ubuntu hosts (GitHub's runners) lack Debian's keys
            apt_install(["debian-archive-keyring"])
        partial = folder.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        log.info("debootstrap --variant=minbase %s from %s (about a minute)", SUITE, mirror())
        run(
            [debootstrap, "--variant=minbase", SUITE, partial, mirror()],
            what="debootstrap",
            timeout=1800,
            log_path=rootfs_dir() / "debootstrap.log",
        )
        _tidy(partial)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        done = folder.with_suffix(".done")
        done.mkdir(exist_ok=True)
        mark_complete(done, f"debootstrap {SUITE} {mirror()}")
    return folder


def with_packages(name: str, packages: Sequence[str], *, setup: str = "") -> Path:
    """A cached copy of the base with Debian ``packages`` installed (``setup`` runs first, in sh)."""
    parent = base()
    folder = rootfs_dir() / f"{name}-{_key(parent.name, *packages, setup, RECIPE)}"
    done = folder.with_suffix(".done")
    if is_complete(done):
        return folder
    with install_lock(f"rootfs-{name}"):
        if is_complete(done):
            return folder
        partial = folder.with_suffix(".partial")
        copy_tree(parent, partial)
        archives = cache_root() / "apt-archives"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        script = "\n".join(
            [
                "set -e",
                setup,
                "apt-get update -q",
                "apt-get install -y -q --no-install-recommends " + " ".join(packages),
            ]
        )
        log.info("installing %s into the %s rootfs", " ".join(packages), name)
        with chroot(partial, binds={archives: "/var/cache/apt/archives"}, apt=True) as enter:
            run(
                enter(["sh", "-c", script]),
                what=f"apt-get install {' '.join(packages)} in a chroot",
                timeout=1800,
                log_path=rootfs_dir() / f"{name}.log",
            )
        _tidy(partial)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        done.mkdir(exist_ok=True)
        mark_complete(done, " ".join(packages))
    return folder


def copy_tree(source: Path, target: Path) -> None:
    """Copy a root filesystem keeping owners, modes, links and hard links."""
    if target.exists():
        _assert_unmounted(target)
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--reflink=auto", source, target], what=f"copying {source}", timeout=1800)


def _tidy(root: Path) -> None:
    """Drop apt lists, downloaded packages, logs and the build-time sources from an image tree."""
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/log/apt/*"):
        for path in root.glob(pattern):
            if path.is_file():
                path.unlink()
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    (root / "etc/apt/sources.list").write_text("")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")


def remove_tree(path: Path) -> None:
    """Delete a work tree, refusing while anything is still mounted inside it."""
    _assert_unmounted(path)
    shutil.rmtree(path, ignore_errors=True)


def _assert_unmounted(root: Path) -> None:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point = line.split()[1]
            if (point + "/").startswith(prefix):
                raise ServiceError(f"{point} is still mounted; unmount it before removing {root}")


@contextlib.contextmanager
def chroot(
    root: Path, *, binds: dict[Path, str] | None = None, apt: bool = False
) -> Iterator[Callable[[Sequence[str | os.PathLike[str]]], list[str]]]:
    """Prepare ``root`` for running commands in it (/proc, DNS, CA bundle, bind mounts).

    Yields a function turning an argv into one that runs inside the chroot with a clean
    environment. Every mount is undone on exit, also when a command failed.
    """
    _require_root()
    mounted: list[Path] = []
    added: list[Path] = []

    def mount(args: list[str], point: Path) -> None:
        point.mkdir(parents=True, exist_ok=True)
        run(["mount", *args, point], what=f"mounting {point}")
        mounted.append(point)

    try:
        mount(["-t", "proc", "proc"], root / "proc")
        for source, inside in (binds or {}).items():
            mount(["--bind", str(source)], root / inside.lstrip("/"))
        resolv = root / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
        # The registry egress may re-sign TLS with a private CA: pip inside needs the host bundle.
        shutil.copyfile(HOST_CA_BUNDLE, root / "tmp/build-ca.crt")
        added.append(root / "tmp/build-ca.crt")
        if apt:
            sources = root / "etc/apt/sources.list"
            sources.write_text(f"deb {mirror()} {SUITE} main\n")
            conf = root / "etc/apt/apt.conf.d/99movierec-build"
            conf.write_text(_APT_CONF)
            policy = root / "usr/sbin/policy-rc.d"
            policy.write_text(_POLICY_RC_D)
            policy.chmod(0o755)
            added += [conf, policy]

        def enter(argv: Sequence[str | os.PathLike[str]]) -> list[str]:
            return [
                "chroot",
                str(root),
                "/usr/bin/env",
                "-i",
                f"PATH={CHROOT_PATH}",
                "HOME=/root",
                "LANG=C.UTF-8",
                "DEBIAN_FRONTEND=noninteractive",
                "PIP_CERT=/tmp/build-ca.crt",
                "PIP_DISABLE_PIP_VERSION_CHECK=1",
                "PIP_ROOT_USER_ACTION=ignore",
                "PIP_DEFAULT_TIMEOUT=180",
                *[os.fspath(arg) for arg in argv],
            ]

        yield enter
    finally:
        errors = []
        for point in reversed(mounted):
            done = subprocess.run(["umount", point], capture_output=True, check=False)
            if done.returncode != 0:
                lazy = subprocess.run(["umount", "-l", point], capture_output=True, check=False)
                if lazy.returncode != 0:
                    errors.append(f"{point}: {done.stderr.decode(errors='replace').strip()}")
        for path in added:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (root / "etc/resolv.conf").write_text("")
        if errors:
            raise ServiceError("could not unmount " + "; ".join(errors))
