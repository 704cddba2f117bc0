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

from harness import kafka, promstack, rootfs
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

POSTGRES_IMAGE = "movierec.local/postgres:15"
KAFKA_IMAGE = f"movierec.local/kafka:{kafka.KAFKA_VERSION}"
PROMETHEUS_IMAGE = "movierec.local/prometheus:2.42"
ALERTMANAGER_IMAGE = "movierec.local/alertmanager:0.25"
PUSHGATEWAY_IMAGE = "movierec.local/pushgateway:1.4"
NOBODY = "65534:65534"
_RESOURCES = Path(__file__).resolve().parent / "images_files"


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


# --- infrastructure images ----------------------------------------------------------------


def _file_inputs(*names: str) -> Callable[[], Iterator[bytes]]:
    def inputs() -> Iterator[bytes]:
        for name in names:
            yield name.encode() + b"\0" + (_RESOURCES / name).read_bytes()

    return inputs


def _install_file(tree: Path, name: str, target: str, mode: int = 0o755) -> None:
    path = tree / target.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_RESOURCES / name, path)
    path.chmod(mode)


def _owned_dir(tree: Path, inside: str, owner: str, mode: int = 0o755) -> None:
    path = tree / inside.lstrip("/")
    path.mkdir(parents=True, exist_ok=True)
    uid, gid = (int(part) for part in owner.split(":"))
    os.chown(path, uid, gid)
    path.chmod(mode)


_POSTGRES_SETUP = """groupadd -r --gid 999 postgres
useradd -r --gid postgres --uid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres
mkdir -p /var/lib/postgresql /etc/postgresql-common/createcluster.d
chown postgres:postgres /var/lib/postgresql
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/movierec.conf"""
PG_MAJOR = "15"


def _fill_postgres(tree: Path) -> None:
    packages = [f"postgresql-{PG_MAJOR}"]
    rootfs.copy_tree(rootfs.with_packages("postgres", packages, setup=_POSTGRES_SETUP), tree)
    _install_file(tree, "postgres-entrypoint.sh", "/usr/local/bin/docker-entrypoint.sh")
    _owned_dir(tree, "/docker-entrypoint-initdb.d", "0:0")
    _owned_dir(tree, "/var/run/postgresql", "999:999", 0o3777)
    _owned_dir(tree, "/var/lib/postgresql/data", "999:999", 0o1777)
    # Like the official image: servers made by initdb listen on every address.
    sample = tree / f"usr/share/postgresql/{PG_MAJOR}/postgresql.conf.sample"
    text = sample.read_text()
    sample.write_text(text.replace("#listen_addresses = 'localhost'", "listen_addresses = '*'"))


def _kafka_inputs() -> Iterator[bytes]:
    yield from _file_inputs(
        "kafka-run-class.sh",
        "kafka-server-start.sh",
        "kafka-storage.sh",
        "kafka-log4j2.properties",
        "kafka-server.properties",
    )()
    yield kafka.KAFKA_VERSION.encode()
    for jar in sorted(kafka.ensure_installed().glob("*.jar")):
        yield jar.name.encode() + b"\0"


def _fill_kafka(tree: Path) -> None:
    rootfs.copy_tree(rootfs.with_packages("java", ["openjdk-17-jre-headless"]), tree)
    libs = tree / "opt/kafka/libs"
    libs.mkdir(parents=True)
    for jar in sorted(kafka.ensure_installed().glob("*.jar")):
        shutil.copy2(jar, libs / jar.name)
    for script in ("kafka-run-class.sh", "kafka-server-start.sh", "kafka-storage.sh"):
        _install_file(tree, script, f"/opt/kafka/bin/{script}")
    _install_file(tree, "kafka-log4j2.properties", "/opt/kafka/config/log4j2.properties", 0o644)
    _install_file(tree, "kafka-server.properties", "/opt/kafka/config/server.properties", 0o644)
    run(
        [
            "chroot",
            tree,
            "sh",
            "-c",
            "groupadd --gid 1000 appuser && useradd --uid 1000 "
            "--gid 1000 --home-dir /home/appuser --create-home --shell /bin/bash appuser",
        ],
        what="adding the kafka user",
    )
    for folder in ("/var/lib/kafka/data", "/opt/kafka/logs"):
        _owned_dir(tree, folder, "1000:1000")


def _prometheus_fill(
    binaries: dict[str, str], share: str, home: str, config: str = ""
) -> Callable[[Path], None]:
    """A tree with Debian's binaries under /bin, their /usr/share/prometheus/``share`` assets
    (Debian's builds read web assets and templates from there), a default ``config`` file
    (/etc/<name>/<name>.yml) and ``home`` owned by nobody, like the upstream images."""

    def fill(tree: Path) -> None:
        rootfs.copy_tree(rootfs.base(), tree)
        unpacked = promstack.ensure_installed()
        debian_bin = unpacked.prometheus.parent
        for target, source in binaries.items():
            destination = tree / "usr/bin" / target
            shutil.copy2(debian_bin / source, destination)
            destination.chmod(0o755)
        assets = debian_bin.parent / "share/prometheus" / share
        shutil.copytree(assets, tree / "usr/share/prometheus" / share, dirs_exist_ok=True)
        if config:
            _install_file(tree, config, f"/etc/{Path(config).stem}/{config}", 0o644)
        _owned_dir(tree, home, NOBODY)

    return fill


def _promstack_inputs(*names: str) -> Callable[[], Iterator[bytes]]:
    def inputs() -> Iterator[bytes]:
        yield repr(sorted(promstack.PACKAGES.items())).encode()
        yield from _file_inputs(*names)()

    return inputs


def images() -> list[Image]:
    """Every image ``make images`` builds, the application image first."""
    return [
        Image(
            APP_IMAGE,
            _project_inputs,
            _fill_app,
            ImageConfig(entrypoint=APP_ENTRYPOINT, env=APP_ENV, workdir="/tmp", user=APP_USER),
        ),
        Image(
            POSTGRES_IMAGE,
            _file_inputs("postgres-entrypoint.sh"),
            _fill_postgres,
            ImageConfig(
                entrypoint=("docker-entrypoint.sh",),
                cmd=("postgres",),
                env={
                    "PATH": f"/usr/lib/postgresql/{PG_MAJOR}/bin:{DEFAULT_PATH}",
                    "PG_MAJOR": PG_MAJOR,
                    "PGDATA": "/var/lib/postgresql/data",
                    "LANG": "C.UTF-8",
                },
                user="999:999",
            ),
        ),
        Image(
            KAFKA_IMAGE,
            _kafka_inputs,
            _fill_kafka,
            ImageConfig(
                cmd=("/opt/kafka/bin/kafka-server-start.sh", "/opt/kafka/config/server.properties"),
                env={"LANG": "C.UTF-8"},
                workdir="/opt/kafka",
                user="1000:1000",
            ),
        ),
        Image(
            PROMETHEUS_IMAGE,
            _promstack_inputs("prometheus.yml"),
            _prometheus_fill(
                {"prometheus": "prometheus", "promtool": "promtool"},
                "web",
                "/prometheus",
                "prometheus.yml",
            ),
            ImageConfig(
                entrypoint=("/bin/prometheus",),
                cmd=(
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                ),
                workdir="/prometheus",
                user=NOBODY,
            ),
        ),
        Image(
            ALERTMANAGER_IMAGE,
            _promstack_inputs("alertmanager.yml"),
            _prometheus_fill(
                {"alertmanager": "prometheus-alertmanager", "amtool": "amtool"},
                "alertmanager",
                "/alertmanager",
                "alertmanager.yml",
            ),
            ImageConfig(
                entrypoint=("/bin/alertmanager",),
                cmd=(
                    "--config.file=/etc/alertmanager/alertmanager.yml",
                    "--storage.path=/alertmanager",
                ),
                workdir="/alertmanager",
                user=NOBODY,
            ),
        ),
        Image(
            PUSHGATEWAY_IMAGE,
            _promstack_inputs(),
            _prometheus_fill(
                {"pushgateway": "prometheus-pushgateway"}, "pushgateway", "/pushgateway"
            ),
            ImageConfig(entrypoint=("/bin/pushgateway",), workdir="/pushgateway", user=NOBODY),
        ),
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
