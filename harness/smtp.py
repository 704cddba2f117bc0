"""An SMTP sink (aiosmtpd) that stores every received e-mail as a file, for alert tests."""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from harness.ports import HOST, free_port, port_open
from harness.process import ServiceError, ServiceProcess


@dataclass
class SmtpSink:
    """A running sink; messages land in ``maildir`` as ``*.eml`` files."""

    workdir: Path
    port: int
    pid: int | None = None
    _process: ServiceProcess | None = field(default=None, repr=False)

    host = HOST

    @property
    def maildir(self) -> Path:
        """Where received messages are stored, one file each, in arrival order by name."""
        return self.workdir / "mail"

    def env(self) -> dict[str, str]:
        """Shell variables describing this sink."""
        return {
            "MOVIEREC_SMTP_HOST": HOST,
            "MOVIEREC_SMTP_PORT": str(self.port),
            "MOVIEREC_SMTP_MAILDIR": str(self.maildir),
            "MOVIEREC_SMTP_PID": str(self.pid or ""),
            "MOVIEREC_SMTP_DIR": str(self.workdir),
        }

    def _proc(self) -> ServiceProcess:
        if self._process is None:
            self._process = ServiceProcess(
                "smtp sink",
                [
                    sys.executable,
                    "-m",
                    "harness.smtp",
                    "--port",
                    str(self.port),
                    "--maildir",
                    self.maildir,
                ],
                log_path=self.workdir / "smtp.log",
                marker=str(self.maildir),
                env={**os.environ, "PYTHONPATH": _repo_root()},
            )
            self._process.pid = self.pid
        return self._process

    def start(self, timeout: float = 30) -> None:
        """Start the sink and wait until it accepts connections."""
        self.maildir.mkdir(parents=True, exist_ok=True)
        proc = self._proc()
        self.pid = proc.start()
        (self.workdir / "state.json").write_text(json.dumps({"port": self.port, "pid": self.pid}))
        proc.wait_ready(lambda: port_open(self.port), timeout=timeout, what=f"SMTP on {self.port}")

    def stop(self) -> None:
        """Stop by PID."""
        self._proc().stop()

    def running(self) -> bool:
        """True while the process runs."""
        return self._proc().alive()

    def restart(self, timeout: float = 30) -> None:
        """Stop and start again; stored messages stay."""
        self.stop()
        self.start(timeout)

    def mailbox(self) -> Mailbox:
        """A view of the messages that arrive from now on."""
        return Mailbox(self.maildir, since=_names(self.maildir), port=self.port)


@dataclass
class Mailbox:
    """Messages in a maildir, optionally only those not yet there when the view was made."""

    maildir: Path
    since: frozenset[str] = frozenset()
    host: str = HOST
    port: int = 0

    def messages(self) -> list[EmailMessage]:
        """The messages, oldest first."""
        found = []
        for name in sorted(_names(self.maildir) - self.since):
            with (self.maildir / name).open("rb") as handle:
                message = email.message_from_binary_file(handle, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found

    def wait_for(
        self,
        predicate: Callable[[EmailMessage], bool] = lambda _message: True,
        *,
        timeout: float = 60,
    ) -> EmailMessage:
        """Wait for a message matching ``predicate``; fail listing the subjects that came."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages()
            for message in messages:
                if predicate(message):
                    return message
            if time.monotonic() > deadline:
                subjects = [str(message["Subject"]) for message in messages]
                raise ServiceError(
                    f"no matching e-mail in {self.maildir} after {timeout:.0f}s; got {subjects}"
                )
            time.sleep(0.2)


def _names(maildir: Path) -> frozenset[str]:
    return frozenset(path.name for path in maildir.glob("*.eml"))


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def start(workdir: Path, *, timeout: float = 30) -> SmtpSink:
    """Start a sink on a free port storing mail under ``workdir``."""
    ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    sink = SmtpSink(workdir, free_port())
    sink.start(timeout)
    return sink


def attach(workdir: Path) -> SmtpSink:
    """The sink whose state lives in ``workdir``."""
    state = json.loads((workdir / "state.json").read_text())
    return SmtpSink(workdir, state["port"], state["pid"])


def ensure_installed() -> None:
    """Check aiosmtpd is importable."""
    import importlib.util

    if importlib.util.find_spec("aiosmtpd") is None:
        raise ServiceError("aiosmtpd missing from the venv: run `make install`")


class _MaildirHandler:
    """aiosmtpd handler writing each message atomically to ``maildir``."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        (maildir / "tmp").mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd hook name)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.eml"
        headers = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        temporary = self.maildir / "tmp" / name
        temporary.write_bytes(headers + envelope.original_content)
        temporary.rename(self.maildir / name)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    """Run the sink in the foreground until SIGTERM."""
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description="SMTP sink storing messages as files")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args(argv)
    controller = Controller(_MaildirHandler(args.maildir), hostname=HOST, port=args.port)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    controller.start()
    try:
        stopped.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
