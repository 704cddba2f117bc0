"""The one process runner: start services with their own log, wait for readiness, stop them by PID.

Used by ``movierec demo`` (installed from the wheel) and by the test harness (``harness.process``
re-exports it), so free ports, log tails and readiness waits exist once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A port that is free on 127.0.0.1 now and was not handed out before by this process."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("could not find a free port on 127.0.0.1")


def http_ok(url: str, *, token: str | None = None, insecure_tls: bool = False) -> bool:
    """True when GET url answers 2xx within a few seconds."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = None
    if insecure_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=3, context=context) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ServiceError(RuntimeError):
    """A real service could not be installed, started or stopped; the message says which and why."""


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last lines of a service log, for error messages."""
    if path is None or not path.exists():
        return "(no log file)"
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie; reaps it when it is our exited child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in {"Z", "X"}


def pid_cmdline(pid: int) -> str:
    """The command line of ``pid`` with spaces between arguments ("" when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace")


def stop_pid(
    pid: int,
    *,
    marker: str | None = None,
    sig: signal.Signals = signal.SIGTERM,
    group: bool = True,
    timeout: float = 30.0,
    name: str = "process",
) -> None:
    """Stop ``pid`` (its process group when it leads one), then SIGKILL after ``timeout``.

    ``marker`` must appear in the command line, so a recycled PID is never signalled.
    """
    if not pid_alive(pid):
        return
    if marker and marker not in pid_cmdline(pid):
        log.warning("not stopping pid %s: it is no longer %s (%s)", pid, name, marker)
        return
    try:
        use_group = group and os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    _signal(pid, sig, use_group)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            if use_group:
                _signal(pid, signal.SIGKILL, use_group)  # leftover children of the group
            return
        time.sleep(0.1)
    log.warning("%s (pid %s) ignored %s for %.0fs; killing it", name, pid, sig.name, timeout)
    _signal(pid, signal.SIGKILL, use_group)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


class ServiceProcess:
    """One long-running service process that logs to a file and leads its own session."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        marker: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = [os.fspath(arg) for arg in argv]
        self.log_path = log_path
        self.marker = marker
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        """Spawn the process in its own session (so it outlives this Python process)."""
        if self.pid is not None and pid_alive(self.pid):
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n=== start: {' '.join(self.argv)}\n".encode())
            log_file.flush()
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as err:
                raise ServiceError(f"cannot run {self.name} ({self.argv[0]}): {err}") from err
        self.pid = self._popen.pid
        return self.pid

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        """The child's Popen while this object started it and it was not stopped."""
        return self._popen

    def alive(self) -> bool:
        """True while the process runs."""
        if self._popen is not None:
            return self._popen.poll() is None
        return self.pid is not None and pid_alive(self.pid) and self.marker in pid_cmdline(self.pid)

    def exit_code(self) -> int | None:
        """The exit code once it ended, when this process started it."""
        return self._popen.poll() if self._popen is not None else None

    def stop(self, sig: signal.Signals | None = None) -> None:
        """Stop by PID (and process group); a no-op when it is not running."""
        if self.pid is None:
            return
        stop_pid(
            self.pid,
            marker=self.marker,
            sig=sig or self.stop_signal,
            timeout=self.stop_timeout,
            name=self.name,
        )
        if self._popen is not None:
            try:
                self._popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %s) did not exit", self.name, self.pid)
            self._popen = None

    def wait_ready(self, check: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``check`` until it passes; fail naming the service and showing its log tail."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                code = self.exit_code()
                raise ServiceError(
                    f"{self.name} exited while starting (exit code {code}); waited for {what}."
                    f"\nlog {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if check():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} (pid {self.pid}) was not ready after {timeout:.0f}s: {what}."
                    f"\nlog {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.2)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    log_path: Path | None = None,
) -> str:
    """Run a setup command to completion; raise ServiceError with its output when it fails."""
    args = [os.fspath(arg) for arg in argv]
    try:
        done = subprocess.run(
            args,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as err:
        raise ServiceError(f"{what}: {args[0]} is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise ServiceError(f"{what}: timed out after {timeout}s: {' '.join(args)}") from err
    output = (done.stdout + done.stderr).decode("utf-8", errors="replace")
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as handle:
            handle.write(f"\n=== {' '.join(args)}\n{output}")
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise ServiceError(f"{what} failed (exit code {done.returncode}): {' '.join(args)}\n{tail}")
    return done.stdout.decode("utf-8", errors="replace")


class ProcessGroup:
    """Services started together (each its own log in ``log_dir``) and stopped together, newest
    first; ``movierec demo`` runs its gunicorn servers this way."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[ServiceProcess] = []

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> ServiceProcess:
        child = ServiceProcess(
            name,
            argv,
            log_path=self.log_dir / f"{name}.log",
            marker="",  # we hold its Popen: the PID cannot be recycled before we reap it
            env={**os.environ, **(env or {})},
        )
        child.start()
        self.children.append(child)
        log.info("started %s (pid %s)", name, child.pid)
        return child

    def wait_http(self, child: ServiceProcess, url: str, timeout: float = 90.0) -> None:
        """Wait until ``url`` answers 2xx; fail with the child's log tail if it exits first."""
        child.wait_ready(lambda: http_ok(url), timeout=timeout, what=url)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


@contextlib.contextmanager
def process_group(log_dir: Path) -> Iterator[ProcessGroup]:
    """A :class:`ProcessGroup` whose services are stopped when the block ends."""
    group = ProcessGroup(log_dir)
    try:
        yield group
    finally:
        group.stop_all()
