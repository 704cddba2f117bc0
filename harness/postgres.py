"""A throwaway PostgreSQL cluster (the distribution's 14+; initdb + pg_ctl as the postgres OS user)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness.ports import HOST, free_port
from harness.process import ServiceError, log_tail, pid_alive, run, stop_pid
from harness.system import apt_install, chown_tree, is_root, run_as_user

MIN_MAJOR = 14  # the oldest major accepted (the store needs DROP DATABASE ... WITH (FORCE), 13+)
PG_ROOT = Path("/usr/lib/postgresql")
OS_USER = "postgres"
DB_USER = "movierec"
_SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "max_connections": "200",
    # Durability against OS crashes is pointless for a throwaway cluster; restarts and
    # killed servers still keep every committed row (the page cache survives them).
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
}
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def installed_majors() -> list[int]:
    """Major versions of the PostgreSQL servers installed the Debian/Ubuntu way, newest first."""
    majors = [
        int(folder.name)
        for folder in PG_ROOT.glob("*")
        if folder.name.isdigit() and (folder / "bin" / "initdb").exists()
    ]
    return sorted(majors, reverse=True)


def bin_dir() -> Path:
    """The server binaries (override: MOVIEREC_PG_BIN): the newest installed major >= 14."""
    override = os.environ.get("MOVIEREC_PG_BIN")
    if override:
        return Path(override)
    usable = [major for major in installed_majors() if major >= MIN_MAJOR]
    return PG_ROOT / str(usable[0] if usable else MIN_MAJOR) / "bin"


def ensure_installed() -> Path:
    """Make sure a PostgreSQL server >= 14 is installed (else the distribution's); return bin."""
    if not (bin_dir() / "initdb").exists():
        if is_root():
            # Debian would otherwise create and start a system cluster on port 5432.
            dropin = Path("/etc/postgresql-common/createcluster.d/movierec-harness.conf")
            dropin.parent.mkdir(parents=True, exist_ok=True)
            dropin.write_text(
                "# written by the movierec test harness\ncreate_main_cluster = false\n"
            )
        # The metapackage depends on the distribution's current major (15 on Debian 12,
        # 16 on Ubuntu 24.04).
        apt_install(["postgresql"])
    if not (bin_dir() / "initdb").exists():
        found = ", ".join(map(str, installed_majors())) or "none"
        raise ServiceError(
            f"no PostgreSQL server >= {MIN_MAJOR} under {PG_ROOT} (found: {found}); "
            "install the distribution's postgresql package or set MOVIEREC_PG_BIN"
        )
    return bin_dir()


@dataclass
class PostgresServer:
    """A running throwaway cluster; ``restart`` keeps the data directory and port."""

    workdir: Path
    port: int
    password: str

    @property
    def datadir(self) -> Path:
        """The cluster's data directory (owned by the postgres OS user)."""
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self.workdir / "postgres.log"

    @property
    def pid(self) -> int | None:
        """The postmaster PID from postmaster.pid (None when it is not running)."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, PermissionError, IndexError, ValueError):
            return None

    def url(self, database: str = "postgres", driver: str = "psycopg2") -> str:
        """An SQLAlchemy URL, e.g. ``postgresql+psycopg2://movierec:PW@127.0.0.1:PORT/db``."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{DB_USER}:{quote(self.password)}@{HOST}:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        """Shell variables describing this server."""
        return {
            "MOVIEREC_PG_URL": self.url(),
            "MOVIEREC_PG_HOST": HOST,
            "MOVIEREC_PG_PORT": str(self.port),
            "MOVIEREC_PG_USER": DB_USER,
            "MOVIEREC_PG_PASSWORD": self.password,
            "MOVIEREC_PG_PID": str(self.pid or ""),
            "MOVIEREC_PG_DIR": str(self.workdir),
        }

    def start(self, timeout: float = 60) -> None:
        """Start the server (pg_ctl waits for it) and check a login works."""
        options = " ".join(f"-c {key}={value}" for key, value in _SERVER_SETTINGS.items())
        argv = [
            str(bin_dir() / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            f"-p {self.port} -k {self.workdir} {options}",
            "start",
        ]
        try:
            run(run_as_user(argv, OS_USER), what="starting PostgreSQL", timeout=timeout + 10)
        except ServiceError as err:
            raise ServiceError(f"{err}\nlog {self.log_path}:\n{log_tail(self.log_path)}") from err
        self._check_login()

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT: roll back open transactions, disconnect clients)."""
        pid = self.pid
        if pid is not None:
            stop_pid(
                pid,
                marker=str(self.datadir),
                sig=signal.SIGINT,
                group=False,
                timeout=60,
                name="postgres",
            )

    def restart(self, timeout: float = 60) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start(timeout)

    def running(self) -> bool:
        """True while the postmaster runs."""
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database (a unique name by default); return its SQLAlchemy URL."""
        database = name or f"test_{uuid.uuid4().hex[:16]}"
        if not _SAFE_NAME.match(database):
            raise ValueError(f"unsafe database name {database!r}")
        self.execute(f'CREATE DATABASE "{database}"')
        return self.url(database)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        if not _SAFE_NAME.match(name):
            raise ValueError(f"unsafe database name {name!r}")
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, sql: str) -> None:
        """Run one statement in autocommit mode on the ``postgres`` database."""
        import psycopg2

        connection = psycopg2.connect(self._dsn(), connect_timeout=10)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def _dsn(self, database: str = "postgres") -> str:
        return (
            f"host={HOST} port={self.port} user={DB_USER} "
            f"password={self.password} dbname={database}"
        )

    def _check_login(self) -> None:
        import psycopg2

        try:
            psycopg2.connect(self._dsn(), connect_timeout=10).close()
        except psycopg2.Error as err:
            raise ServiceError(
                f"PostgreSQL on port {self.port} started but login failed: {err}"
                f"\nlog {self.log_path}:\n{log_tail(self.log_path)}"
            ) from err

    def _save(self) -> None:
        state = {"port": self.port, "password": self.password}
        state_file = self.workdir / "state.json"
        state_file.write_text(json.dumps(state))
        state_file.chmod(0o600)


def start(workdir: Path, *, timeout: float = 60) -> PostgresServer:
    """initdb a new cluster under ``workdir`` and start it on a free port."""
    ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    if is_root():
        _open_path_for_postgres(workdir)
    server = PostgresServer(workdir, free_port(), secrets.token_hex(12))
    password_file = workdir / "pwfile"
    password_file.write_text(server.password + "\n")
    chown_tree(workdir, OS_USER)
    argv = [
        str(bin_dir() / "initdb"),
        "-D",
        str(server.datadir),
        "-U",
        DB_USER,
        f"--pwfile={password_file}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    ]
    try:
        run(run_as_user(argv, OS_USER), what="initdb", log_path=None, timeout=120)
    finally:
        password_file.unlink(missing_ok=True)
    server._save()
    server.start(timeout)
    return server


def _open_path_for_postgres(workdir: Path) -> None:
    """Let the postgres OS user traverse to ``workdir``: open our temp folders, never others."""
    temp_root = Path(tempfile.gettempdir()).resolve()
    for folder in [workdir.resolve(), *workdir.resolve().parents]:
        if folder.stat().st_mode & 0o001:
            continue
        if folder == temp_root or temp_root not in folder.parents:
            raise ServiceError(
                f"the postgres OS user cannot enter {folder}; put the work dir under {temp_root}"
            )
        folder.chmod(folder.stat().st_mode | 0o711)


def attach(workdir: Path) -> PostgresServer:
    """The server whose cluster lives in ``workdir`` (for stopping it from another process)."""
    state = json.loads((workdir / "state.json").read_text())
    return PostgresServer(workdir, state["port"], state["password"])
