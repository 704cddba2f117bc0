"""A Kafka topic read by a consumer group; the store, not Kafka, holds the offsets that count."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kafka import ConsumerRebalanceListener

from movierec_ingestor.batch import Batch, TimePolicy
from movierec_ingestor.errors import BadInputError

log = logging.getLogger(__name__)

_EMPTY_ASSIGNMENT_SETTLE_S = 5.0
# Bounded so a broker outage delays the loop instead of hanging it (the commit to Kafka is
# only a mirror; end offsets are retried on the next read).
_KAFKA_CALL_TIMEOUT_MS = 10_000

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
    """One member of a consumer group on one topic.

    Exactly-once into the store: offsets are written in the same transaction as the events,
    and on every partition assignment the consumer seeks to the store's offsets (to the
    beginning when the store has none). Kafka's committed offsets are written after the
    store commits, only so that lag monitoring works; they are never read back, except as a
    safe fallback (they trail the store's) while the store cannot be asked.
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
        from kafka import KafkaConsumer

        self.address = address
        self.name = f"kafka:{address.topic}"
        self._committed_offsets = committed_offsets
        self.policy = policy or TimePolicy()
        self._consumer = KafkaConsumer(
            bootstrap_servers=address.bootstrap.split(","),
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_poll_records,
            # Larger fetches: the job reads tens of thousands of short lines per batch.
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(1000, session_timeout_ms // 4),
            metrics_enabled=False,
            # A typo in the topic must not create an empty topic that "catches up" at once.
            allow_auto_create_topics=False,
            # TLS / SASL settings (security_protocol, sasl_*, ssl_*): settings.kafka_client_config
            **dict(client_config or {}),
        )
        self._targets: dict[int, int] = {}  # partition -> end offset seen when assigned
        self._joined = False
        self._assigned_at = 0.0
        self._pending: set[Any] = set()  # assigned partitions not yet positioned from the store
        self._consumer.subscribe([address.topic], listener=_Listener(self))

    # -- rebalance callbacks ------------------------------------------------------------
    # kafka-python 3 runs these on its IO thread, where blocking consumer calls are refused:
    # they only note the change and pause the new partitions; `read` positions them.

    def _assigned(self, partitions: set[Any]) -> None:
        self._joined = True
        self._assigned_at = time.monotonic()
        self._pending = set(partitions)
        if partitions:
            self._consumer.pause(*partitions)
        log.info(
            "assigned %s partitions %s",
            self.address.topic,
            sorted(tp.partition for tp in partitions),
        )

    def _revoked(self, partitions: set[Any]) -> None:
        # A batch of these partitions may still be committing on the writer thread: harmless,
        # the next owner starts from the store's offsets and a replay only finds duplicates.
        self._pending.difference_update(partitions)
        log.info(
            "revoked %s partitions %s",
            self.address.topic,
            sorted(tp.partition for tp in partitions),
        )

    def _position_pending(self) -> None:
        """Seek newly assigned partitions to the store's offsets, then let them fetch.

        Raises when the store cannot be read: the partitions stay paused (nothing is read
        from a position the store did not confirm) and the job retries.
        """
        pending = self._pending & self._consumer.assignment()
        self._pending = pending
        if not pending:
            return
        from kafka.errors import KafkaError

        committed = self._committed_offsets(self.name)
        try:
            ends = self._consumer.end_offsets(list(pending), timeout_ms=_KAFKA_CALL_TIMEOUT_MS)
        except KafkaError as exc:  # broker away: stay paused, the next read tries again
            log.warning("cannot read end offsets yet (%s); partitions stay paused", exc)
            return
        for tp in pending:
            self._targets.setdefault(tp.partition, int(ends.get(tp) or 0))
            if tp.partition in committed:
                self._consumer.seek(tp, committed[tp.partition])
            else:
                self._consumer.seek_to_beginning(tp)
        self._consumer.resume(*pending)
        self._pending = set()
        log.info(
            "positioned %s partitions from the store: %s",
            self.address.topic,
            {tp.partition: committed.get(tp.partition, "beginning") for tp in pending},
        )

    # -- Source ---------------------------------------------------------------------------

    def read(self, max_lines: int, timeout_s: float) -> Batch:
        """The next records of the assigned partitions; positions are `partition:offset`."""
        self._position_pending()
        records = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_lines)
        # A rebalance inside poll may have handed us partitions: records already fetched for
        # them start wherever Kafka thought; drop them and seek to the store's offsets.
        pending = set(self._pending)
        try:
            self._position_pending()
        except Exception as exc:  # records of the other partitions must still be returned
            log.warning("positioning new partitions failed (they stay paused): %s", exc)
        batch = Batch(self.name, policy=self.policy)
        add = batch.add
        for tp, messages in records.items():
            if not messages or tp in pending:
                continue
            prefix = f"{tp.partition}:"
            for message in messages:
                add(message.value, prefix + str(message.offset))
            batch.offsets[tp.partition] = messages[-1].offset + 1
        return batch

    def committed(self, batch: Batch) -> None:
        """Mirror the store's offsets to Kafka for lag dashboards; failures only cost a log line."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        if not batch.offsets:
            return
        offsets = {
            TopicPartition(self.address.topic, p): OffsetAndMetadata(o, "", -1)
            for p, o in batch.offsets.items()
        }
        try:
            self._consumer.commit(offsets, timeout_ms=_KAFKA_CALL_TIMEOUT_MS)
        except KafkaError as exc:
            log.warning("mirroring offsets to Kafka failed (the store has them): %s", exc)

    def caught_up(self) -> bool:
        """True once every assigned partition was read up to its end at assignment time."""
        if not self._joined or self._pending:
            return False
        assignment = self._consumer.assignment()
        if not assignment:
            # Either the group has more members than the topic has partitions (nothing to do),
            # or the join happened before the topic's metadata arrived and a rejoin follows:
            # give that rejoin time before calling an empty assignment final.
            settled = time.monotonic() - self._assigned_at > _EMPTY_ASSIGNMENT_SETTLE_S
            return settled and bool(self._consumer.partitions_for_topic(self.address.topic))
        for tp in assignment:
            if self._consumer.position(tp) < self._targets.get(tp.partition, 0):
                return False
        return True

    def lag(self) -> dict[int, int]:
        """Messages behind the high watermark per assigned partition (from the last fetch)."""
        lags: dict[int, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is not None and tp not in self._pending:
                lags[tp.partition] = max(0, high - self._consumer.position(tp))
        return lags

    def close(self) -> None:
        """Leave the group at once so the remaining members take over without waiting."""
        self._consumer.close(autocommit=False, timeout_ms=_KAFKA_CALL_TIMEOUT_MS)


class _Listener(ConsumerRebalanceListener):
    """Rebalance callbacks, delegated to the source."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self._source._revoked(set(revoked))

    def on_partitions_assigned(self, assigned: set[Any]) -> None:
        self._source._assigned(set(assigned))
