"""A Kafka topic read by a consumer group; the store, not Kafka, holds the offsets that count."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from movierec_ingestor.batch import Batch, TimePolicy
from movierec_ingestor.errors import BadInputError

log = logging.getLogger(__name__)

_EMPTY_ASSIGNMENT_SETTLE_S = 5.0
# Bounded so a broker outage delays the loop instead of hanging it (the commit to Kafka is
# only a mirror; end offsets are retried on the next check).
_KAFKA_CALL_TIMEOUT_S = 10.0
# librdkafka's own log lines, through Python logging.
_RDKAFKA_LOG = logging.getLogger("movierec_ingestor.rdkafka")

CommittedOffsets = Callable[[str], Mapping[int, int]]


@dataclass(frozen=True, slots=True)
class KafkaAddress:
    """`kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC]` split into bootstrap servers and topic(s)."""

    bootstrap: str
    topic: str

    @property
    def topics(self) -> tuple[str, ...]:
        """Each topic of the URL (topic names cannot contain commas)."""
        return tuple(self.topic.split(","))

    def one(self, topic: str) -> KafkaAddress:
        """The address of one of the topics."""
        return KafkaAddress(self.bootstrap, topic)

    @classmethod
    def parse(cls, url: str) -> KafkaAddress:
        """Parse a source URL, or raise BadInputError saying what is wrong."""
        parts = urlsplit(url)
        topic = parts.path.strip("/")
        if (
            parts.scheme != "kafka"
            or not parts.netloc
            or "/" in topic
            or not all(t.strip() for t in topic.split(","))
        ):
            raise BadInputError(f"bad Kafka source {url!r}: expected kafka://HOST:PORT/TOPIC")
        for server in parts.netloc.split(","):
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise BadInputError(f"bad Kafka broker {server!r} in {url!r}: expected HOST:PORT")
        return cls(parts.netloc, topic)


class KafkaSource:
    """One member of a consumer group on one topic, read with librdkafka (confluent-kafka).

    Exactly-once into the store: offsets are written with the events or after them, never
    before (see `IngestJob`), and on every partition assignment the consumer starts each
    partition at the store's offset (at the beginning when the store has none). Kafka's committed offsets are written
    after the store commits, only so that lag monitoring works; they are never read back.
    """

    def __init__(
        self,
        address: KafkaAddress,
        *,
        group: str,
        committed_offsets: CommittedOffsets,
        max_poll_records: int = 10_000,
        session_timeout_ms: int = 10_000,
        client_id: str = "movierec-ingestor",
        policy: TimePolicy | None = None,
        client_config: Mapping[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Consumer

        self.address = address
        self.name = f"kafka:{address.topic}"
        self._committed_offsets = committed_offsets
        self.policy = policy or TimePolicy()
        self._max_poll_records = max_poll_records
        self._consumer = Consumer(
            {
                "bootstrap.servers": address.bootstrap,
                "group.id": group,
                "client.id": client_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # Reaching a partition's end is an event: how `caught_up` knows, exactly.
                "enable.partition.eof": True,
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(1000, session_timeout_ms // 4),
                # Larger fetches: the job reads tens of thousands of short lines per batch.
                "max.partition.fetch.bytes": 8 << 20,
                "fetch.max.bytes": 64 << 20,
                # A typo in the topic must not create an empty topic that "catches up" at once.
                "allow.auto.create.topics": False,
                "error_cb": self._client_error,
                "on_commit": self._mirrored,
                "logger": _RDKAFKA_LOG,
                # TLS / SASL (security.protocol, sasl.*, ssl.*): settings.kafka_client_config
                **dict(client_config or {}),
            }
        )
        self._targets: dict[int, int] = {}  # partition -> end offset seen after assignment
        self._next: dict[int, int] = {}  # partition -> offset after the last record read
        self._assigned: set[int] = set()
        self._pending: set[int] = set()  # assigned, not yet positioned from the store
        self._joined = False
        self._assigned_at = 0.0
        self._fatal: str | None = None
        self._consumer.subscribe(
            [address.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    # -- rebalance callbacks ------------------------------------------------------------
    # librdkafka runs these inside `consume`, on the job's thread: blocking calls are fine.

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._joined = True
        self._assigned_at = time.monotonic()
        numbers = {tp.partition for tp in partitions}
        self._assigned = numbers
        for p in numbers:
            self._targets.pop(p, None)
            self._next.pop(p, None)
        log.info("assigned %s partitions %s", self.address.topic, sorted(numbers))
        try:
            committed = self._committed_offsets(self.name)
        except Exception as exc:  # the store is away: nothing is read until it says where
            log.warning("cannot ask the store for offsets yet (%s); partitions stay paused", exc)
            consumer.assign(partitions)
            if partitions:
                consumer.pause(partitions)
            self._pending = numbers
            return
        self._pending = set()
        consumer.assign([self._start(tp.partition, committed) for tp in partitions])
        self._log_positions(numbers, committed)
        for p in numbers:  # "caught up" means up to the end as of now (a failure: asked later)
            self._target(p)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # A batch of these partitions may still be committing on a writer thread: harmless,
        # the next owner starts from the store's offsets and a replay only finds duplicates.
        numbers = {tp.partition for tp in partitions}
        self._assigned -= numbers
        self._pending -= numbers
        consumer.unassign()
        log.info("revoked %s partitions %s", self.address.topic, sorted(numbers))

    def _start(self, partition: int, committed: Mapping[int, int]) -> Any:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        if partition in committed:
            self._next[partition] = committed[partition]
            return TopicPartition(self.address.topic, partition, committed[partition])
        return TopicPartition(self.address.topic, partition, OFFSET_BEGINNING)

    def _log_positions(self, numbers: set[int], committed: Mapping[int, int]) -> None:
        log.info(
            "positioned %s partitions from the store: %s",
            self.address.topic,
            {p: committed.get(p, "beginning") for p in sorted(numbers)},
        )

    def _position_pending(self) -> None:
        """Start partitions assigned while the store was away at the store's offsets.

        Raises when the store still cannot be read: they stay paused and the job retries.
        """
        if not self._pending:
            return
        committed = self._committed_offsets(self.name)
        pending = sorted(self._pending & self._assigned)
        starts = [self._start(p, committed) for p in pending]
        for tp in starts:
            self._consumer.seek(tp)
        self._consumer.resume(starts)
        self._pending = set()
        self._log_positions(set(pending), committed)

    def _client_error(self, error: Any) -> None:
        # Runs inside `consume`. Most errors are transient (a broker restarting) and the
        # client retries them; refused credentials or TLS are not, and end the run.
        from confluent_kafka import KafkaError

        code = error.code()
        refused = code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
        # A TLS error is refused only when the certificate is (a reset handshake is transient).
        untrusted = code == KafkaError._SSL and "certificate" in error.str().lower()
        if error.fatal() or refused or untrusted:
            self._fatal = f"Kafka {self.address.bootstrap}: {error.str()}"
        else:
            log.warning("Kafka %s: %s", self.address.bootstrap, error.str())

    # -- Source ---------------------------------------------------------------------------

    def read(self, max_lines: int, timeout_s: float) -> Batch:
        """The next records of the assigned partitions; positions are `partition:offset`."""
        from confluent_kafka import KafkaError

        self._position_pending()
        self._raise_fatal()
        messages = self._consumer.consume(min(max_lines, self._max_poll_records), timeout_s)
        self._raise_fatal()
        batch = Batch(self.name, policy=self.policy)
        add = batch.add
        offsets = batch.offsets
        next_offsets = self._next
        assigned = self._assigned
        for message in messages:
            partition = message.partition()
            error = message.error()
            offset = message.offset()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if partition in assigned and offset is not None:
                        next_offsets[partition] = max(next_offsets.get(partition, 0), offset)
                else:
                    self._message_error(error)
                continue
            if partition not in assigned or offset is None:
                continue  # fetched before a revocation: the new owner reads it
            add(message.value(), f"{partition}:{offset}")
            offsets[partition] = next_offsets[partition] = offset + 1
        return batch

    def _message_error(self, error: Any) -> None:
        from confluent_kafka import KafkaError

        if error.code() in (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            KafkaError.GROUP_AUTHORIZATION_FAILED,
        ):
            self._fatal = f"Kafka {self.address.bootstrap}: {error.str()}"
            self._raise_fatal()
        log.warning("Kafka %s: %s", self.address.topic, error.str())

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise KafkaRefusedError(self._fatal)

    def committed(self, batch: Batch) -> None:
        """Mirror the store's offsets to Kafka for lag dashboards; failures only cost a log line."""
        from confluent_kafka import KafkaException, TopicPartition

        if not batch.offsets:
            return
        offsets = [TopicPartition(self.address.topic, p, o) for p, o in batch.offsets.items()]
        try:
            # Asynchronous: the next read goes on at once; the outcome arrives in `_mirrored`.
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning("mirroring offsets to Kafka failed (the store has them): %s", exc)

    def _mirrored(self, error: Any, _partitions: list[Any]) -> None:
        if error is not None:
            log.warning("mirroring offsets to Kafka failed (the store has them): %s", error)

    def caught_up(self) -> bool:
        """True once every assigned partition was read up to its end as seen at assignment
        (or, when the broker could not say then, when first asked after it)."""
        if not self._joined or self._pending:
            return False
        if not self._assigned:
            # Either the group has more members than the topic has partitions (nothing to do),
            # or the join happened before the topic's metadata arrived and a rejoin follows:
            # give that rejoin time before calling an empty assignment final.
            settled = time.monotonic() - self._assigned_at > _EMPTY_ASSIGNMENT_SETTLE_S
            return settled and self._topic_exists()
        for partition in self._assigned:
            target = self._target(partition)
            if target is None or self._next.get(partition, -1) < target:
                return False
        return True

    def _target(self, partition: int) -> int | None:
        if partition not in self._targets:
            from confluent_kafka import KafkaException, TopicPartition

            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.address.topic, partition),
                    timeout=_KAFKA_CALL_TIMEOUT_S,
                )
            except KafkaException as exc:  # broker away: not caught up as far as we know
                log.warning("cannot read the end offset of partition %d yet: %s", partition, exc)
                return None
            self._targets[partition] = high
        return self._targets[partition]

    def _topic_exists(self) -> bool:
        from confluent_kafka import KafkaException

        try:
            meta = self._consumer.list_topics(self.address.topic, timeout=_KAFKA_CALL_TIMEOUT_S)
        except KafkaException:
            return False
        topic = meta.topics.get(self.address.topic)
        return topic is not None and topic.error is None and bool(topic.partitions)

    def lag(self) -> dict[int, int]:
        """Messages behind the high watermark per assigned partition (from the last fetch)."""
        from confluent_kafka import TopicPartition

        lags: dict[int, int] = {}
        for partition in self._assigned - self._pending:
            if partition not in self._next:
                continue
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.address.topic, partition), cached=True
            )
            if high >= 0:
                lags[partition] = max(0, high - self._next[partition])
        return lags

    def close(self) -> None:
        """Leave the group at once so the remaining members take over without waiting."""
        self._consumer.close()


class KafkaRefusedError(BadInputError):
    """The broker refused this client (credentials, TLS, authorization): a person must fix the
    settings, retrying cannot help."""
