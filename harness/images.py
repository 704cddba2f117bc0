"""`python -m harness images`: the project's images built without docker, cached by content.

One application image (every component is a ``movierec`` subcommand) and the local
infrastructure images the chart runs on the harness node, each a Debian root filesystem packed
as an OCI archive (harness/oci.py) and imported into the node's containerd. The archive's name
carries a hash of everything that goes into it, so an unchanged tree rebuilds nothing.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import images_infra, rootfs
from harness.cache import cache_root, install_lock
from harness.oci import CONTAINERD_NAMESPACE, DEFAULT_PATH, ImageConfig, import_archive, pack
from harness.process import ServiceError, run

log = logging.getLogger("harness.images")

RECIPE = "1"  # bump when a build step changes in a way the hashed inputs do not show
REPO_ROOT = Path(__file__).resolve().parent.parent
CONTAINERD_ADDRESS = "/run/movierec/containerd/containerd.sock"

# The one application image; GitHub Actions builds the same image from the root Dockerfile
# and publishes it as UPSTREAM_APP_REPOSITORY:<version>.
APP_IMAGE = "movierec.local/movierec:dev"
UPSTREAM_APP_REPOSITORY = "ghcr.io/movierec/movierec"
APP_USER = "10001:10001"
APP_VENV = "/opt/movierec"
APP_EXTRAS = "all"
APP_ENV = {
    "PATH": f"{APP_VENV}/bin:{DEFAULT_PATH}",
    "HOME": "/tmp",
    "PYTHONUNBUFFERED": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "LANG": "C.UTF-8",
}
APP_ENTRYPOINT = ("movierec",)


@dataclass(frozen=True)
class Image:
    """How to make one image: what its content depends on, how to fill its tree, its config."""

    name: str
    inputs: Callable[[], Iterator[bytes]]
    fill: Callable[[Path], None]
    config: ImageConfig

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


# --- the application image ---------------------------------------------------------------


def project_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files of ``root`` that go into the project wheel, as paths relative to ``root``.

    Mirrors ``[tool.setuptools.packages.find]`` of pyproject.toml: every package directory
    matched by its ``include`` patterns under each ``where`` folder, plus pyproject and README.
    """
    config = tomllib.loads((root / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    files = [Path("pyproject.toml"), Path(config["project"]["readme"])]
    for where in find["where"]:
        for entry in sorted((root / where).iterdir()):
            top = any(fnmatch.fnmatch(entry.name, pattern) for pattern in find["include"])
            if not (top and entry.is_dir() and (entry / "__init__.py").is_file()):
                continue
            for path in sorted(entry.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                    files.append(path.relative_to(root))
    return files


def _project_inputs() -> Iterator[bytes]:
    for relative in project_files():
        yield str(relative).encode() + b"\0"
        yield hashlib.sha256((REPO_ROOT / relative).read_bytes()).digest()
    yield f"{APP_VENV} {APP_EXTRAS} {APP_USER}".encode()


def wheelhouse() -> Path:
    """Wheels of every dependency, kept between builds: pip's HTTP cache stays empty here."""
    folder = cache_root() / "wheelhouse-py311"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_project_wheel(out_dir: Path) -> Path:
    """Build the project wheel from a copy of exactly the hashed files."""
    with tempfile.TemporaryDirectory(prefix="movierec-src-") as tmp:
        source = Path(tmp)
        for relative in project_files():
            target = source / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / relative, target)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                out_dir,
                source,
            ],
            what="building the movierec wheel",
            timeout=600,
        )
    wheels = sorted(out_dir.glob("movierec-*.whl"))
    if not wheels:
        raise ServiceError(f"pip wheel wrote no movierec wheel into {out_dir}")
    return wheels[-1]


_APP_SCRIPT = """set -e
python3 -m venv {venv}
P={venv}/bin/pip
W="/tmp/wheels/{wheel}[{extras}]"
if ! $P install -q --no-index --find-links /wheelhouse "$W" 2>/tmp/offline.err; then
  echo "wheelhouse incomplete: filling it from the package index"
  $P wheel -q --find-links /wheelhouse -w /wheelhouse "$W"
  rm -f /wheelhouse/movierec-*.whl  # the project wheel always comes from this build
  $P install -q --no-index --find-links /wheelhouse "$W"
fi
$P list --format=freeze > {venv}/requirements.lock
groupadd --gid 10001 movierec
useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin movierec
"""


def _fill_app(tree: Path) -> None:
    rootfs.copy_tree(rootfs.with_packages("python", ["python3", "python3-venv"]), tree)
    wheels = tree / "tmp/wheels"
    wheels.mkdir(parents=True)
    wheel = build_project_wheel(wheels)
    script = _APP_SCRIPT.format(venv=APP_VENV, wheel=wheel.name, extras=APP_EXTRAS)
    with rootfs.chroot(tree, binds={wheelhouse(): "/wheelhouse"}) as enter:
        run(
            enter(["sh", "-c", script]),
            what="installing movierec into the image venv",
            timeout=3600,
            log_path=cache_root() / "images" / "app-pip.log",
        )
    (tree / "wheelhouse").rmdir()
    _clean_tmp(tree)


def _clean_tmp(tree: Path) -> None:
    for path in [*(tree / "tmp").iterdir(), tree / "root/.cache"]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def images() -> list[Image]:
    """Every image ``make images`` builds, the application image first."""
    return [
        Image(
            APP_IMAGE,
            _project_inputs,
            _fill_app,
            ImageConfig(entrypoint=APP_ENTRYPOINT, env=APP_ENV, workdir="/tmp", user=APP_USER),
        ),
        *(Image(*recipe) for recipe in images_infra.recipes()),
    ]


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
        for stale in archive_dir().glob(f"{image.slug}-*"):
            if stale.is_dir():  # the work folder of a build that was killed
                _remove_tree(stale)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f"{image.slug}-", dir=archive_dir()))
        tree = work / "rootfs"
        try:
            log.info("%s: building the root filesystem", image.name)
            image.fill(tree)
            filled = time.monotonic()
            log.info("%s: packing %s", image.name, _du(tree))
            digest = pack(tree, image.name, archive, image.config)
        finally:
            _remove_tree(work)
        digest_file.write_text(digest + "\n")
        log.info(
            "%s: built in %.0fs (tree %.0fs, pack %.0fs), archive %.0f MiB",
            image.name,
            time.monotonic() - started,
            filled - started,
            time.monotonic() - filled,
            archive.stat().st_size / 2**20,
        )
        _prune(image, keep=archive)
    return archive, digest


def _du(tree: Path) -> str:
    done = subprocess.run(["du", "-sh", tree], capture_output=True, text=True, check=False)
    return done.stdout.split("\t", 1)[0] if done.returncode == 0 else "?"


def _remove_tree(work: Path) -> None:
    prefix = str(work.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        if any((line.split()[1] + "/").startswith(prefix) for line in mounts):
            raise ServiceError(f"refusing to remove {work}: something is still mounted in it")
    shutil.rmtree(work, ignore_errors=True)


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
