"""Debian's Prometheus, Alertmanager and Pushgateway binaries, unpacked into the cache (no daemons)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.cache import install_lock
from harness.process import ServiceError
from harness.system import extract_debs

# Debian 12 (bookworm) versions; another archive's current candidate is used if these are gone.
PACKAGES = {
    "prometheus": "2.42.0+ds-5+deb12u1",
    "prometheus-alertmanager": "0.25.0-1+b4",
    "prometheus-pushgateway": "1.5.1-2+b5",
}
CACHE_NAME = "prometheus-debian12"

# Debian's Alertmanager reads its default notification templates from this absolute path
# (upstream embeds them). Unpacked outside /usr it cannot find them, so the cached copy has the
# path rewritten to a relative one of the same length, resolved against the service's work
# dir, where start() links ``alertmanager/`` to the unpacked templates.
AM_ASSET_DIR = b"/usr/share/prometheus/alertmanager"
AM_RELATIVE_DIR = b"./././././././././././alertmanager"
AM_TEMPLATES_LINK = "alertmanager"


@dataclass(frozen=True)
class PromBinaries:
    """Paths of the unpacked binaries and Alertmanager's templates."""

    prometheus: Path
    promtool: Path
    alertmanager: Path
    amtool: Path
    pushgateway: Path
    alertmanager_templates: Path


def ensure_installed() -> PromBinaries:
    """Download and unpack the three packages once; return the binaries' paths."""
    root = extract_debs(CACHE_NAME, PACKAGES)
    bin_dir = root / "usr" / "bin"
    binaries = PromBinaries(
        prometheus=bin_dir / "prometheus",
        promtool=bin_dir / "promtool",
        alertmanager=bin_dir / "alertmanager-relocatable",
        amtool=bin_dir / "amtool",
        pushgateway=bin_dir / "prometheus-pushgateway",
        alertmanager_templates=root / "usr" / "share" / "prometheus" / "alertmanager",
    )
    if not binaries.alertmanager.exists():
        _relocate_alertmanager(bin_dir / "prometheus-alertmanager", binaries.alertmanager)
    missing = [str(path) for path in vars(binaries).values() if not Path(path).exists()]
    if missing:
        raise ServiceError(f"unpacked Debian packages lack {missing}; remove {root} and retry")
    return binaries


def _relocate_alertmanager(source: Path, target: Path) -> None:
    with install_lock(CACHE_NAME):
        if target.exists():
            return
        data = source.read_bytes()
        # The bare directory constant is the one occurrence not followed by "/" (the others
        # are the separate "/ui/" and "/no-ui" strings, which we leave alone).
        found = [
            match.start()
            for match in re.finditer(re.escape(AM_ASSET_DIR), data)
            if data[match.end() : match.end() + 1] != b"/"
        ]
        if len(found) != 1:
            raise ServiceError(
                f"{source}: expected one {AM_ASSET_DIR!r} constant, found {len(found)}; "
                "this Alertmanager build cannot be relocated"
            )
        index = found[0]
        patched = data[:index] + AM_RELATIVE_DIR + data[index + len(AM_ASSET_DIR) :]
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(patched)
        temporary.chmod(0o755)
        temporary.rename(target)
