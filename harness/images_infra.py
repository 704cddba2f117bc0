"""Recipes of the local infrastructure images: PostgreSQL, Kafka KRaft, Prometheus, Alertmanager, Pushgateway.

Each stands in for the upstream image the chart names, in the way the chart uses it (same
entrypoint scripts and paths, same numeric user), built from Debian packages and Maven jars.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from harness import kafka, promstack, rootfs
from harness.oci import DEFAULT_PATH, ImageConfig
from harness.process import run

POSTGRES_IMAGE = "movierec.local/postgres:15"
KAFKA_IMAGE = f"movierec.local/kafka:{kafka.KAFKA_VERSION}"
PROMETHEUS_IMAGE = "movierec.local/prometheus:2.42"
ALERTMANAGER_IMAGE = "movierec.local/alertmanager:0.25"
PUSHGATEWAY_IMAGE = "movierec.local/pushgateway:1.4"
NOBODY = "65534:65534"
_RESOURCES = Path(__file__).resolve().parent / "images_files"

Recipe = tuple[str, Callable[[], Iterator[bytes]], Callable[[Path], None], ImageConfig]


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
        "kafka-tools-log4j2.properties",
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
    _install_file(
        tree, "kafka-tools-log4j2.properties", "/opt/kafka/config/tools-log4j2.properties", 0o644
    )
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
        shutil.copytree(
            assets, tree / "usr/share/prometheus" / share, symlinks=True, dirs_exist_ok=True
        )
        if config:
            _install_file(tree, config, f"/etc/{Path(config).stem}/{config}", 0o644)
        _owned_dir(tree, home, NOBODY)

    return fill


def _promstack_inputs(*names: str) -> Callable[[], Iterator[bytes]]:
    def inputs() -> Iterator[bytes]:
        yield repr(sorted(promstack.PACKAGES.items())).encode()
        yield from _file_inputs(*names)()

    return inputs


def recipes() -> list[Recipe]:
    """(name, inputs, fill, config) of every infrastructure image."""
    return [
        (
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
        (
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
        (
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
        (
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
        (
            PUSHGATEWAY_IMAGE,
            _promstack_inputs(),
            _prometheus_fill(
                {"pushgateway": "prometheus-pushgateway"}, "pushgateway", "/pushgateway"
            ),
            ImageConfig(entrypoint=("/bin/pushgateway",), workdir="/pushgateway", user=NOBODY),
        ),
    ]
