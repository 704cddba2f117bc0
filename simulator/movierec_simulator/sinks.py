"""Where stream lines go: an append-only file, a Kafka topic keyed by user, or memory (tests, demo)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

log = logging.getLogger(__name__)


class SinkError(RuntimeError):
    """A sink could not take the lines (unwritable file, unreachable broker); the message says why."""


class Sink(Protocol):
    """Takes stream lines one at a time; `key` is the user id a partitioned sink keys by."""

    def write(self, line: str | bytes, key: int | None = None) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class _Closing:
    def close(self) -> None:  # overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FileSink(_Closing):
    """Appends newline-terminated lines to a file; garbage lines are written as their raw bytes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.lines = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out: IO[bytes] = self.path.open("ab", buffering=1 << 20)
        except OSError as exc:
            raise SinkError(f"cannot write to {self.path}: {exc.strerror or exc}") from exc

    def write(self, line: str | bytes, key: int | None = None) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self._out.write(data + b"\n")
        self.lines += 1

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        if not self._out.closed:
            self._out.close()


class MemorySink(_Closing):
    """Keeps lines (and their keys) in order: for tests and the embedded demo."""

    def __init__(self) -> None:
        self.lines: list[str | bytes] = []
        self.keys: list[int | None] = []

    def write(self, line: str | bytes, key: int | None = None) -> None:
        self.lines.append(line)
        self.keys.append(key)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """Nothing to release."""


class KafkaSink(_Closing):
    """Produces each line as one message to `topic`, keyed by user id (a user's events stay in
    order within a partition), with acks=all; `close` flushes so nothing is lost."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        connect_timeout_s: float = 10.0,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError
        from movierec_ingestor.kafka_config import KafkaSecurity

        self.topic = topic
        self.lines = 0
        self._error: BaseException | None = None
        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "acks": "all",
            "linger_ms": 20,
            "batch_size": 256 * 1024,
            "max_request_size": 2 * 1024 * 1024,
            "bootstrap_timeout_ms": int(connect_timeout_s * 1000),
            "max_block_ms": int(connect_timeout_s * 1000),
            "client_id": "movierec-simulator",
            # TLS / SASL from MOVIEREC_KAFKA_* (the same settings every client reads)
            **KafkaSecurity().client_config(),
        }
        config.update(producer_config or {})
        try:
            self._producer = KafkaProducer(**config)
        except KafkaError as exc:
            raise SinkError(
                f"Kafka broker at {bootstrap} is unreachable ({exc}); "
                "check the address and that the broker is running"
            ) from exc

    def write(self, line: str | bytes, key: int | None = None) -> None:
        from kafka.errors import KafkaError

        value = line.encode("utf-8") if isinstance(line, str) else line
        try:
            future = self._producer.send(
                self.topic, value=value, key=None if key is None else str(key).encode()
            )
        except KafkaError as exc:
            raise SinkError(f"cannot send to Kafka topic {self.topic}: {exc}") from exc
        future.add_errback(self._remember)
        self.lines += 1

    def _remember(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def flush(self) -> None:
        from kafka.errors import KafkaError

        try:
            self._producer.flush()
        except KafkaError as exc:
            raise SinkError(f"flushing to Kafka topic {self.topic} failed: {exc}") from exc
        if self._error is not None:
            raise SinkError(f"Kafka rejected messages for topic {self.topic}: {self._error}")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()


def write_lines(
    sink: Sink, lines: Iterable[tuple[int | None, str | bytes]], flush_every: int = 0
) -> int:
    """Write (key, line) pairs to `sink`, then flush; returns how many were written."""
    n = 0
    for key, line in lines:
        sink.write(line, key)
        n += 1
        if flush_every and n % flush_every == 0:
            sink.flush()
    sink.flush()
    log.debug("wrote %d lines", n)
    return n
