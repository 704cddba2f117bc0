"""Apache Kafka (KRaft, one combined broker+controller) from Maven Central jars, and topic helpers."""

from __future__ import annotations

import json
import logging
import re
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cache import cache_root, install_lock, is_complete, mark_complete, reset_dir
from harness.ports import HOST, free_port, port_open
from harness.process import ServiceError, ServiceProcess, run
from harness.system import require_tool

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.2"
LOG4J_VERSION = "2.24.3"  # the log4j2 line Kafka 4.1 is built against
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
HEAP = "-Xmx512m"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.movierec.harness</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.logging.log4j</groupId>
        <artifactId>log4j-bom</artifactId>
        <version>{log4j}</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>{binding}</artifactId>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def install_dir() -> Path:
    """Where the broker jars live: ~/.cache/movierec/kafka-<version>."""
    return cache_root() / f"kafka-{KAFKA_VERSION}"


def ensure_installed() -> Path:
    """Fetch the broker jars and a log4j2 binding from Maven Central (once); return the lib dir."""
    folder = install_dir()
    lib = folder / "lib"
    if is_complete(folder):
        return lib
    with install_lock("kafka"):
        if is_complete(folder):
            return lib
        require_tool("java", ["openjdk-17-jre-headless"])
        mvn = require_tool("mvn", ["maven"])
        reset_dir(folder)
        _fetch(mvn, folder, "log4j-slf4j-impl")
        # The binding must match the slf4j-api the broker resolves (1.x vs 2.x).
        if any(re.match(r"slf4j-api-2\.", jar.name) for jar in lib.glob("slf4j-api-*.jar")):
            reset_dir(folder)
            _fetch(mvn, folder, "log4j-slf4j2-impl")
        mark_complete(folder, f"kafka {KAFKA_VERSION}, log4j {LOG4J_VERSION}")
    return lib


def _fetch(mvn: str, folder: Path, binding: str) -> None:
    pom = _POM.format(log4j=LOG4J_VERSION, kafka=KAFKA_VERSION, binding=binding)
    (folder / "pom.xml").write_text(pom)
    log.info("fetching Kafka %s jars from Maven Central into %s", KAFKA_VERSION, folder)
    run(
        [
            mvn,
            "-q",
            "-B",
            f"-Dmaven.repo.local={cache_root() / 'm2'}",
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DoutputDirectory=lib",
            "-DincludeScope=runtime",
        ],
        what=f"fetching Kafka {KAFKA_VERSION} with Maven",
        cwd=folder,
        timeout=1200,
    )


# The SASL_SSL listener's one client account (SASL/PLAIN over TLS).
SASL_USER = "movierec"
SASL_PASSWORD = "movierec-harness-secret"


def tls_material(workdir: Path) -> tuple[Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl): (ca.pem, server.pem).

    server.pem holds the unencrypted PKCS#8 key and the certificate, the PEM keystore Kafka
    reads (`ssl.keystore.type=PEM`); clients trust ca.pem.
    """
    require_tool("openssl", ["openssl"])
    tls = workdir / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        tls / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.crt")
    )
    ext = tls / "san.ext"
    ext.write_text(f"subjectAltName=IP:{HOST},DNS:localhost\n")
    steps: list[list[str | Path]] = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "30", "-subj", "/CN=movierec harness CA"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", f"/CN={HOST}"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "30", "-extfile", ext],
    ]  # fmt: skip
    for step in steps:
        run(
            step, what="making the Kafka TLS certificates", log_path=tls / "openssl.log", timeout=60
        )
    pkcs8 = tls / "server.pk8"
    run(
        ["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", key, "-out", pkcs8],
        what="converting the Kafka TLS key",
        log_path=tls / "openssl.log",
        timeout=60,
    )
    server = tls / "server.pem"
    server.write_text(pkcs8.read_text() + cert.read_text())
    server.chmod(0o600)
    return ca, server


def _server_properties(
    workdir: Path,
    port: int,
    controller_port: int,
    partitions: int,
    sasl_port: int | None = None,
) -> str:
    listeners = f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    secure: dict[str, str] = {}
    if sasl_port is not None:
        _ca, server = tls_material(workdir)
        listeners += f",SASL_SSL://{HOST}:{sasl_port}"
        protocols += ",SASL_SSL:SASL_SSL"
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{SASL_USER}="{SASL_PASSWORD}";'
        )
        secure = {
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(server),
        }
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        **secure,
        "log.dirs": str(workdir / "data"),
        "num.partitions": str(partitions),
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


@dataclass
class KafkaBroker:
    """A running single-node KRaft broker; ``restart`` keeps its data and ports."""

    workdir: Path
    port: int
    controller_port: int
    pid: int | None = None
    _process: ServiceProcess | None = field(default=None, repr=False)
    # SASL_SSL listener (brokers started before it existed have none)
    sasl_port: int | None = None

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string, ``127.0.0.1:PORT``."""
        return f"{HOST}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        """The SASL_SSL listener's ``127.0.0.1:PORT`` (PLAIN, SASL_USER / SASL_PASSWORD)."""
        return f"{HOST}:{self.sasl_port}" if self.sasl_port else None

    def client_env(self) -> dict[str, str]:
        """The MOVIEREC_KAFKA_* variables every movierec client reads to use the SASL_SSL
        listener (empty without one)."""
        if not self.sasl_port:
            return {}
        return {
            "MOVIEREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "MOVIEREC_KAFKA_SASL_MECHANISM": "PLAIN",
            "MOVIEREC_KAFKA_SASL_USERNAME": SASL_USER,
            "MOVIEREC_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
            "MOVIEREC_KAFKA_SSL_CAFILE": str(self.workdir / "tls" / "ca.pem"),
        }

    def env(self) -> dict[str, str]:
        """Shell variables describing this broker."""
        env = {
            "MOVIEREC_KAFKA_BOOTSTRAP": self.bootstrap,
            "MOVIEREC_KAFKA_PID": str(self.pid or ""),
            "MOVIEREC_KAFKA_DIR": str(self.workdir),
        }
        if self.sasl_bootstrap:
            # not MOVIEREC_KAFKA_SECURITY_*: sourcing the file must not switch every client
            env["MOVIEREC_KAFKA_SASL_SSL_BOOTSTRAP"] = self.sasl_bootstrap
        return env

    def _proc(self) -> ServiceProcess:
        if self._process is None:
            lib = ensure_installed()
            self._process = ServiceProcess(
                "kafka",
                [
                    "java",
                    HEAP,
                    "-Xms128m",
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                    "-cp",
                    f"{lib}/*",
                    "kafka.Kafka",
                    self.workdir / "server.properties",
                ],
                log_path=self.workdir / "kafka.log",
                marker=str(self.workdir),
            )
            self._process.pid = self.pid
        return self._process

    def start(self, timeout: float = 120) -> None:
        """Start the broker on its ports and wait until it answers metadata requests."""
        proc = self._proc()
        self.pid = proc.start()
        self._save()
        proc.wait_ready(
            lambda: port_open(self.port) and _cluster_answers(self.bootstrap),
            timeout=timeout,
            what=f"Kafka metadata on {self.bootstrap}",
        )

    def stop(self) -> None:
        """Stop cleanly (SIGTERM, so a restart recovers nothing)."""
        self._proc().stop()

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL), as a crash would."""
        self._proc().stop(signal.SIGKILL)

    def running(self) -> bool:
        """True while the process runs."""
        return self._proc().alive()

    def restart(self, timeout: float = 120) -> None:
        """Stop and start again on the same ports with the same data."""
        self.stop()
        self.start(timeout)

    def _save(self) -> None:
        state = {
            "port": self.port,
            "controller_port": self.controller_port,
            "pid": self.pid,
            "sasl_port": self.sasl_port,
        }
        (self.workdir / "state.json").write_text(json.dumps(state))


def start(workdir: Path, *, partitions: int = 3, timeout: float = 120) -> KafkaBroker:
    """Format a fresh KRaft log dir under ``workdir`` and start a broker on free ports."""
    lib = ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    port, controller_port, sasl_port = free_port(), free_port(), free_port()
    config = workdir / "server.properties"
    config.write_text(_server_properties(workdir, port, controller_port, partitions, sasl_port))
    (workdir / "log4j2.properties").write_text(_LOG4J2)
    run(
        [
            "java",
            f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
            "-cp",
            f"{lib}/*",
            "kafka.tools.StorageTool",
            "format",
            # one argument with "=": a random id may start with "-" (1 in 32), which the
            # tool's parser would take for an option ("-t ID" failed that way)
            f"--cluster-id={_cluster_id()}",
            "-c",
            config,
        ],
        what="formatting the Kafka log dir",
        log_path=workdir / "kafka.log",
        timeout=120,
    )
    broker = KafkaBroker(workdir, port, controller_port, sasl_port=sasl_port)
    broker.start(timeout)
    return broker


def attach(workdir: Path) -> KafkaBroker:
    """The broker whose state lives in ``workdir`` (for stopping it from another process)."""
    state = json.loads((workdir / "state.json").read_text())
    return KafkaBroker(
        workdir,
        state["port"],
        state["controller_port"],
        state["pid"],
        sasl_port=state.get("sasl_port"),
    )


def _cluster_id() -> str:
    # StorageTool's random-uuid is a URL-safe base64 of 16 random bytes; this is the same.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _admin(bootstrap: str, timeout_ms: int = 10_000) -> KafkaAdminClient:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="movierec-harness",
        request_timeout_ms=timeout_ms,
    )


def _cluster_answers(bootstrap: str) -> bool:
    from kafka.errors import KafkaError

    try:
        admin = _admin(bootstrap, 3_000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        admin.close()


def create_topic(
    bootstrap: str, name: str | None = None, *, partitions: int = 3, prefix: str = "test"
) -> str:
    """Create a topic (a fresh unique name by default) and wait until every partition has a leader."""
    from kafka.errors import KafkaError

    topic = name or f"{prefix}-{uuid.uuid4().hex[:12]}"
    admin = _admin(bootstrap)
    try:
        admin.create_topics(
            {topic: {"num_partitions": partitions, "replication_factor": 1}},
            timeout_ms=30_000,
            wait_for_metadata=True,
        )
    except KafkaError as err:
        raise ServiceError(f"creating Kafka topic {topic} on {bootstrap} failed: {err!r}") from err
    finally:
        admin.close()
    return topic


def delete_topic(bootstrap: str, name: str) -> None:
    """Delete a topic; a topic that is already gone is fine."""
    from kafka.errors import KafkaError, UnknownTopicOrPartitionError

    admin = _admin(bootstrap)
    try:
        admin.delete_topics([name], timeout_ms=30_000)
    except UnknownTopicOrPartitionError:
        pass
    except KafkaError as err:
        raise ServiceError(f"deleting Kafka topic {name} on {bootstrap} failed: {err!r}") from err
    finally:
        admin.close()
