"""The application image in two layers: Debian + Python + every dependency (cached), and the project.

The dependency layer changes only with pyproject's dependencies; the project layer is the
wheel installed on top through an overlay mount, so a source change repacks a few MiB.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

from harness import rootfs
from harness.cache import cache_root, install_lock, is_complete, mark_complete
from harness.images_layers import overlay_upper_to_layer
from harness.oci import (
    DEFAULT_PATH,
    ImageConfig,
    Layer,
    cached_layer,
    layer_from_dir,
    write_archive,
)
from harness.process import ServiceError, run
from harness.system import require_tool

log = logging.getLogger("harness.images")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPS_RECIPE = "1"  # bump when the dependency layer is made differently (its script is hashed)

# The one application image; GitHub Actions builds the same image from the root Dockerfile
# and publishes it as UPSTREAM_APP_REPOSITORY:<version>.
APP_IMAGE = "movierec.local/movierec:dev"
UPSTREAM_APP_REPOSITORY = "ghcr.io/movierec/movierec"
APP_USER = "10001:10001"
APP_VENV = "/opt/movierec"
APP_EXTRAS = "all"
APP_CONFIG = ImageConfig(
    entrypoint=("movierec",),
    env={
        "PATH": f"{APP_VENV}/bin:{DEFAULT_PATH}",
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "LANG": "C.UTF-8",
    },
    workdir="/tmp",
    user=APP_USER,
)
PYTHON_PACKAGES = ["python3", "python3-venv"]


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


def inputs() -> Iterator[bytes]:
    """What the image's content depends on: the wheel's files, the dependency layer's key."""
    for relative in project_files():
        yield str(relative).encode() + b"\0"
        yield hashlib.sha256((REPO_ROOT / relative).read_bytes()).digest()
    yield _PROJECT_SCRIPT.encode()
    yield deps_key().encode()


def deps_key() -> str:
    """Hash of what the dependency layer is made from (dependencies, extras, venv, user)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies"),
        "optional-dependencies": project.get("optional-dependencies"),
        "layout": [APP_VENV, APP_EXTRAS, APP_USER, PYTHON_PACKAGES],
        "recipes": [DEPS_RECIPE, _DEPS_SCRIPT, rootfs.RECIPE, rootfs.SUITE],
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]


def wheelhouse() -> Path:
    """Wheels of every dependency, kept between builds: pip's HTTP cache stays empty here."""
    folder = cache_root() / "wheelhouse-py311"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_project_wheel(out_dir: Path) -> Path:
    """Build the project wheel from a copy of exactly the hashed files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="movierec-src-") as tmp:
        source = Path(tmp)
        for relative in project_files():
            target = source / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / relative, target)
        pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
        run(
            [*pip_wheel, "--no-build-isolation", "-w", out_dir, source],
            what="building the movierec wheel",
            timeout=600,
        )
    wheels = sorted(out_dir.glob("movierec-*.whl"))
    if not wheels:
        raise ServiceError(f"pip wheel wrote no movierec wheel into {out_dir}")
    return wheels[-1]


# Every dependency from the wheelhouse (filled from the package index on a miss), then the
# project itself removed again: it goes into the upper layer.
_DEPS_SCRIPT = """set -e
python3 -m venv {venv}
P={venv}/bin/pip
W="/tmp/wheels/{wheel}[{extras}]"
if ! $P install -q --no-index --find-links /wheelhouse "$W" 2>/tmp/offline.err; then
  echo "wheelhouse incomplete: filling it from the package index"
  $P wheel -q --find-links /wheelhouse -w /wheelhouse "$W"
  rm -f /wheelhouse/movierec-*.whl
  $P install -q --no-index --find-links /wheelhouse "$W"
fi
$P uninstall -q -y movierec
groupadd --gid 10001 movierec
useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin movierec
"""
# The lock lists what the venv holds (importlib.metadata: seconds faster than `pip list`).
_PROJECT_SCRIPT = """set -e
{venv}/bin/pip install -q --no-index --no-deps /tmp/wheels/{wheel}
{venv}/bin/python -c 'import importlib.metadata as m
print("\\n".join(sorted({{f"{{d.name}}=={{d.version}}" for d in m.distributions()}}, key=str.lower)))' \\
  > {venv}/requirements.lock
"""


def deps_tree(layers_dir: Path) -> Path:
    """The root filesystem of the dependency layer: cached, else unpacked from the cached
    layer blob (CI caches keep blobs, not trees with their owners), else built (minutes)."""
    key = deps_key()
    folder = rootfs.rootfs_dir() / f"app-deps-{key}"
    done = folder.with_suffix(".done")
    if is_complete(done):
        return folder
    with install_lock("rootfs-app-deps"):
        if is_complete(done):
            return folder
        partial = folder.with_suffix(".partial")
        layer = cached_layer(_deps_blob(layers_dir))
        if layer is not None:
            log.info("unpacking the cached dependency layer")
            _unpack(layer, partial)
        else:
            _build_deps(partial)
        for old in rootfs.rootfs_dir().glob("app-deps-*"):
            if old.name not in {folder.name, partial.name}:  # each is about a GiB
                rootfs.remove_tree(old)
        partial.rename(folder)
        done.mkdir(exist_ok=True)
        mark_complete(done, key)
    return folder


def _deps_blob(layers_dir: Path) -> Path:
    return layers_dir / f"app-deps-{deps_key()}.tar.zst"


def _unpack(layer: Layer, tree: Path) -> None:
    if tree.exists():
        rootfs.remove_tree(tree)
    tree.mkdir(parents=True)
    zstd = require_tool("zstd", ["zstd"])
    script = f'"{zstd}" -dc "$1" | tar --numeric-owner --xattrs -xpf - -C "$2"'
    run(
        ["sh", "-c", script, "unpack", str(layer.blob), str(tree)],
        what=f"unpacking {layer.blob.name}",
        timeout=1800,
    )


def _build_deps(partial: Path) -> None:
    rootfs.copy_tree(rootfs.with_packages("python", PYTHON_PACKAGES), partial)
    wheel = build_project_wheel(partial / "tmp" / "wheels")
    script = _DEPS_SCRIPT.format(venv=APP_VENV, wheel=wheel.name, extras=APP_EXTRAS)
    log.info("installing every dependency into the image venv (minutes the first time)")
    with rootfs.chroot(partial, binds={wheelhouse(): "/wheelhouse"}) as enter:
        run(
            enter(["sh", "-c", script]),
            what="installing the dependencies into the image venv",
            timeout=3600,
            log_path=rootfs.rootfs_dir() / "app-deps.log",
        )
    (partial / "wheelhouse").rmdir()
    _clean_tmp(partial)


def deps_layer(layers_dir: Path) -> Layer:
    """The dependency layer's blob (packed once per dependency set)."""
    blob = _deps_blob(layers_dir)
    layer = cached_layer(blob)
    if layer is not None:
        return layer
    tree = deps_tree(layers_dir)
    log.info("packing the dependency layer")
    layer = layer_from_dir(tree, blob)
    for old in layers_dir.glob("app-deps-*"):
        if old.name not in {blob.name, blob.with_suffix(".json").name}:
            old.unlink()
    return layer


def make(archive: Path) -> str:
    """Write the application image archive; return its manifest digest."""
    layers_dir = archive.parent / "layers"
    base = deps_layer(layers_dir)
    lower = deps_tree(layers_dir)
    work = Path(tempfile.mkdtemp(prefix="app-layer-", dir=archive.parent))
    upper, scratch, merged = work / "upper", work / "overlay-work", work / "merged"
    for folder in (upper, scratch, merged):
        folder.mkdir()
    try:
        options = f"lowerdir={lower},upperdir={upper},workdir={scratch}"
        run(["mount", "-t", "overlay", "overlay", "-o", options, merged], what="overlay mount")
        try:
            wheel = build_project_wheel(merged / "tmp" / "wheels")
            script = _PROJECT_SCRIPT.format(venv=APP_VENV, wheel=wheel.name)
            with rootfs.chroot(merged) as enter:
                run(enter(["sh", "-c", script]), what="installing movierec into the image venv")
            _clean_tmp(merged)
        finally:
            run(["umount", merged], what="overlay unmount")
        overlay_upper_to_layer(upper)
        project = layer_from_dir(upper, work / "project.tar.zst")
        log.info(
            "project layer %.1f MiB on a %.0f MiB base", project.size / 2**20, base.size / 2**20
        )
        return write_archive(APP_IMAGE, [base, project], APP_CONFIG, archive)
    finally:
        rootfs.remove_tree(work)


def _clean_tmp(tree: Path) -> None:
    for path in [*(tree / "tmp").iterdir(), tree / "root/.cache"]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
