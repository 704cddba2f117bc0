"""Debian packages and machine tools the harness needs: checks, apt installs and .deb extraction."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

from harness.cache import cache_root, install_lock, is_complete, mark_complete, reset_dir
from harness.process import ServiceError, run

log = logging.getLogger(__name__)

_apt_updated = threading.Event()
_APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def is_root() -> bool:
    """True when running as root (then services that refuse root run as another user)."""
    return os.geteuid() == 0


def apt_update_once() -> None:
    """Refresh the apt package lists, at most once per process."""
    if _apt_updated.is_set():
        return
    if not is_root():
        raise ServiceError("apt-get update needs root; run the harness as root or install by hand")
    log.info("apt-get update")
    run(["apt-get", "update", "-q"], what="apt-get update", env=_APT_ENV, timeout=600)
    _apt_updated.set()


def apt_install(packages: list[str]) -> None:
    """Install Debian packages (a one-time machine setup step for tools such as java or mvn)."""
    if not is_root():
        raise ServiceError(f"missing Debian packages {packages}: install them (needs root)")
    apt_update_once()
    log.info("apt-get install %s", " ".join(packages))
    run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        what=f"apt-get install {' '.join(packages)}",
        env=_APT_ENV,
        timeout=1200,
    )


def require_tool(command: str, apt_packages: list[str]) -> str:
    """The path of ``command``, installing its Debian packages first when it is missing."""
    found = shutil.which(command)
    if found:
        return found
    apt_install(apt_packages)
    found = shutil.which(command)
    if not found:
        raise ServiceError(f"{command} is still missing after installing {apt_packages}")
    return found


def _download(spec: str, folder: Path) -> None:
    run(["apt-get", "download", "-q", spec], what=f"apt-get download {spec}", cwd=folder)


def extract_debs(name: str, packages: dict[str, str]) -> Path:
    """Download Debian packages (preferring the pinned versions) and unpack them into the cache.

    ``packages`` maps package name to the pinned version; when a machine's archive no longer
    serves that version the current candidate is used and the choice is logged. No maintainer
    scripts run, so no system daemon starts. Returns the unpacked root (like ``/``).
    """
    root = cache_root() / name
    if is_complete(root):
        return root
    with install_lock(name):
        if is_complete(root):
            return root
        reset_dir(root)
        debs = root / "debs"
        debs.mkdir()
        chosen = []
        for package, version in packages.items():
            spec = f"{package}={version}"
            try:
                _download(spec, debs)
            except ServiceError:
                try:
                    apt_update_once()
                    _download(spec, debs)
                except ServiceError:
                    log.warning("%s is not served here; using the current candidate", spec)
                    _download(package, debs)
                    spec = package
            chosen.append(spec)
        for deb in sorted(debs.glob("*.deb")):
            run(["dpkg-deb", "-x", deb, root], what=f"unpacking {deb.name}")
            chosen.append(deb.name)
        shutil.rmtree(debs)
        mark_complete(root, "\n".join(chosen))
    return root


def run_as_user(argv: list[str], user: str) -> list[str]:
    """Prefix ``argv`` so it runs as ``user`` when we are root (postgres refuses root)."""
    if not is_root():
        return argv
    return ["runuser", "-u", user, "--", *argv]


def chown_tree(path: Path, user: str) -> None:
    """Give ``path`` (recursively) to ``user`` when we are root."""
    if is_root():
        subprocess.run(["chown", "-R", f"{user}:{user}", str(path)], check=True)
