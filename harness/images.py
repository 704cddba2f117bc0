"""`python -m harness images`: the project's images built without docker, cached by content.

One application image (every component is a ``movierec`` subcommand; harness/images_app.py)
and the local infrastructure images the chart runs on the harness node
(harness/images_infra.py): Debian root filesystems packed as OCI archives and imported into the
node's containerd. An archive's name carries a hash of everything that goes into it, so an
unchanged tree rebuilds nothing, and an image containerd already holds is not imported again.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import images_app, images_infra, rootfs
from harness.cache import cache_root, install_lock
from harness.oci import CONTAINERD_NAMESPACE, ImageConfig, import_archive, pack
from harness.process import ServiceError

log = logging.getLogger("harness.images")

RECIPE = "1"  # bump when a build step changes in a way the hashed inputs do not show
CONTAINERD_ADDRESS = "/run/movierec/containerd/containerd.sock"


@dataclass(frozen=True)
class Image:
    """How to make one image: what its content depends on, and either a tree to pack
    (``fill``) or a function writing the whole archive (``make``, for layered images)."""

    name: str
    inputs: Callable[[], Iterator[bytes]]
    fill: Callable[[Path], None] | None
    config: ImageConfig
    make: Callable[[Path], str] | None = None

    @property
    def slug(self) -> str:
        """A file-name form of the reference (``movierec.local/movierec:dev`` → ``movierec-dev``)."""
        repository, tag = self.name.rsplit(":", 1)
        return f"{repository.rsplit('/', 1)[-1]}-{tag}"

    def key(self) -> str:
        """The content hash naming this image's archive."""
        digest = hashlib.sha256()
        for part in (RECIPE, rootfs.RECIPE, rootfs.SUITE, self.name, repr(self.config)):
            digest.update(part.encode() + b"\0")
        for chunk in self.inputs():
            digest.update(chunk)
        return digest.hexdigest()[:20]


def images() -> list[Image]:
    """Every image ``make images`` builds, the application image first."""
    app = Image(
        images_app.APP_IMAGE,
        images_app.inputs,
        None,
        images_app.APP_CONFIG,
        make=images_app.make,
    )
    return [app, *(Image(*recipe) for recipe in images_infra.recipes())]


# --- archives and containerd --------------------------------------------------------------


def archive_dir() -> Path:
    """Where the packed image archives are kept."""
    folder = cache_root() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_archive(image: Image) -> tuple[Path, str]:
    """The archive of ``image`` for the current inputs, built if missing; and its digest."""
    key = image.key()
    archive = archive_dir() / f"{image.slug}-{key}.tar"
    digest_file = archive.with_suffix(".digest")
    if archive.is_file() and digest_file.is_file():
        log.info("%s: cached (%s)", image.name, archive.name)
        return archive, digest_file.read_text().strip()
    with install_lock(f"image-{image.slug}"):
        if archive.is_file() and digest_file.is_file():
            return archive, digest_file.read_text().strip()
        for stale in [*archive_dir().glob(f"{image.slug}-*"), *archive_dir().glob("app-layer-*")]:
            if stale.is_dir():  # the work folder of a build that was killed
                rootfs.remove_tree(stale)
        started = time.monotonic()
        if image.make is not None:
            log.info("%s: building", image.name)
            digest = image.make(archive)
        elif image.fill is not None:
            digest = _fill_and_pack(image, archive)
        else:
            raise ServiceError(f"{image.name}: the recipe says neither fill nor make")
        digest_file.write_text(digest + "\n")
        log.info(
            "%s: built in %.0fs, archive %.0f MiB",
            image.name,
            time.monotonic() - started,
            archive.stat().st_size / 2**20,
        )
        _prune(image, keep=archive)
    return archive, digest


def _fill_and_pack(image: Image, archive: Path) -> str:
    assert image.fill is not None
    work = Path(tempfile.mkdtemp(prefix=f"{image.slug}-", dir=archive_dir()))
    tree = work / "rootfs"
    try:
        log.info("%s: building the root filesystem", image.name)
        image.fill(tree)
        log.info("%s: packing %s", image.name, _du(tree))
        return pack(tree, image.name, archive, image.config)
    finally:
        rootfs.remove_tree(work)


def _du(tree: Path) -> str:
    done = subprocess.run(["du", "-sh", tree], capture_output=True, text=True, check=False)
    return done.stdout.split("\t", 1)[0] if done.returncode == 0 else "?"


def _prune(image: Image, keep: Path) -> None:
    """Drop archives of older inputs of the same image (each can be hundreds of MiB)."""
    for old in archive_dir().glob(f"{image.slug}-*.tar"):
        if old != keep and len(old.stem) == len(keep.stem):
            old.unlink()
            old.with_suffix(".digest").unlink(missing_ok=True)


def containerd_address() -> str:
    """The node's containerd socket (override: MOVIEREC_CONTAINERD_ADDRESS)."""
    return os.environ.get("MOVIEREC_CONTAINERD_ADDRESS") or CONTAINERD_ADDRESS


def containerd_digest(name: str, address: str) -> str | None:
    """The manifest digest containerd holds under ``name`` (None when it has no such image)."""
    ctr = shutil.which("ctr") or "ctr"
    done = subprocess.run(
        [ctr, "--address", address, "-n", CONTAINERD_NAMESPACE, "images", "ls"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise ServiceError(f"ctr images ls failed: {done.stderr.strip()}")
    for line in done.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == name:
            return fields[2]
    return None


def containerd_up(address: str) -> bool:
    """True when a containerd answers on ``address``."""
    if not Path(address).is_socket():
        return False
    ctr = shutil.which("ctr") or "ctr"
    done = subprocess.run(
        [ctr, "--address", address, "version"], capture_output=True, check=False, timeout=30
    )
    return done.returncode == 0


def ensure_imported(name: str, archive: Path, digest: str, address: str) -> bool:
    """Import ``archive`` unless containerd already has ``name`` at ``digest``; True if imported."""
    if containerd_digest(name, address) == digest:
        return False
    started = time.monotonic()
    import_archive(archive, address=address)
    log.info("%s: imported in %.0fs", name, time.monotonic() - started)
    return True


def build_all(selected: list[str] | None = None, *, do_import: bool = True) -> list[str]:
    """Build (or reuse) every selected image and import it; return the image references."""
    chosen = [image for image in images() if not selected or _matches(image, selected)]
    if selected and not chosen:
        raise ServiceError(f"no image matches {selected}")
    address = containerd_address()
    reachable = do_import and containerd_up(address)
    if do_import and not reachable:
        log.warning(
            "containerd is not answering on %s: archives are built but not imported "
            "(start the node with `make services-up ONLY=cluster`, then run `make images` again)",
            address,
        )
    built = []
    for image in chosen:
        archive, digest = build_archive(image)
        if reachable:
            ensure_imported(image.name, archive, digest, address)
        built.append(image.name)
    return built


def _matches(image: Image, selected: list[str]) -> bool:
    return any(word == image.name or word == image.slug.split("-")[0] for word in selected)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m harness images``: print one image reference per line."""
    parser = argparse.ArgumentParser(prog="python -m harness images", description=__doc__)
    parser.add_argument(
        "--only", help="comma-separated image names (movierec,postgres,kafka,prometheus,...)"
    )
    parser.add_argument("--no-import", action="store_true", help="build archives only")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Image builds share the machine with tests and other builds: run (and spawn) at low priority.
    os.nice(19 - os.nice(0))
    started = time.monotonic()
    selected = [word.strip() for word in args.only.split(",")] if args.only else None
    try:
        names = build_all(selected, do_import=not args.no_import)
    except ServiceError as err:
        print(f"harness images failed: {err}", file=sys.stderr)
        return 1
    log.info("images ready in %.0fs", time.monotonic() - started)
    for name in names:
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
