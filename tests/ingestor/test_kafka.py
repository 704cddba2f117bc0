"""Kafka into PostgreSQL for real: end to end, a shared consumer group, and faults.

The fault tests end with exactly the valid distinct events of the stream in the database (none
missing, none doubled) and every invalid line in `dead_letters`, whatever was killed or
restarted along the way.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness import kafka as harness_kafka
from harness.postgres import PostgresServer
from movierec.cli import main

from .streams import Stream, assert_exactly, make_stream

_ENV = {
    **os.environ,
    "MOVIEREC_INGESTOR_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "MOVIEREC_INGESTOR_POLL_TIMEOUT_S": "0.5",
    "MOVIEREC_INGESTOR_DB_RETRY_S": "120",
}


def produce(bootstrap: str, topic: str, lines: Sequence[bytes], *, partitions: int = 3) -> None:
    """Send lines round-robin over the partitions and wait until the broker has them all."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024, acks="all"
    )
    try:
        for i, line in enumerate(lines):
            producer.send(topic, value=line, partition=i % partitions)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=30)


def stored_count(url: str) -> int:
    """Rows in the raw event tables plus dead letters (what an ingest has made durable)."""
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT (SELECT count(*) FROM watch_events) + "
                        "(SELECT count(*) FROM rating_events) + "
                        "(SELECT count(*) FROM recommendations) + "
                        "(SELECT count(*) FROM dead_letters)"
                    )
                ).scalar_one()
            )
    except sa.exc.DBAPIError:
        return -1  # schema not there yet, or the server is restarting
    finally:
        engine.dispose()


def _grew(url: str, before: int) -> bool:
    return stored_count(url) > before


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Consumer:
    """`movierec ingest` in a child process, as Kubernetes would run it."""

    def __init__(self, log_dir: Path, source: str, url: str, *extra: str) -> None:
        self.log_path = log_dir / f"consumer-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "movierec", "ingest", "--source", source, "--db", url, *extra],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=_ENV,
        )

    def has_partitions(self) -> bool:
        """True when the last assignment this consumer logged was not empty."""
        assigned = [line for line in self.log_path.read_text().splitlines() if " assigned " in line]
        return bool(assigned) and not assigned[-1].endswith("partitions []")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self, timeout: float = 90) -> dict[str, int]:
        """SIGTERM, then the run's JSON summary (the process must exit 0)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 180) -> dict[str, int]:
        out, _ = self.proc.communicate(timeout=timeout)
        self._log.close()
        assert self.proc.returncode == 0, self.log_path.read_text()[-3000:]
        return dict(json.loads(out))


def _ingest_in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, int]:
    assert main(["ingest", *argv]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_kafka_to_postgres_end_to_end(
    kafka_bootstrap: str, kafka_topic: str, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = make_stream(20_000)
    produce(kafka_bootstrap, kafka_topic, stream.lines)
    source = f"kafka://{kafka_bootstrap}/{kafka_topic}"
    first = _ingest_in_process(capsys, "--source", source, "--db", pg_url, "--until-caught-up")
    assert first["read"] == 20_000
    assert first["stored"] == len(stream.keys)
    assert first["dead_letters"] == stream.invalid
    assert_exactly(stream, pg_url)
    # Another group on the same database starts from the database's offsets, not Kafka's.
    again = _ingest_in_process(
        capsys, "--source", source, "--db", pg_url, "--until-caught-up", "--group", "other"
    )
    assert again == {"read": 0, "stored": 0, "duplicates": 0, "dead_letters": 0, "skipped": 0}
    # Offsets are mirrored to Kafka after each commit so that lag dashboards work.
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        offsets = admin.list_group_offsets("movierec-ingestor")["movierec-ingestor"]
    finally:
        admin.close()
    assert sum(meta.offset for tp, meta in offsets.items() if tp.topic == kafka_topic) == 20_000


def test_movielog_and_provenance_topics_in_one_job_exactly_once(
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[..., str],
    pg_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from movierec_recommender.provenance import ProvenanceSink, build_event
    from prometheus_client import CollectorRegistry

    movielog, recommendations = kafka_topic_factory(3), kafka_topic_factory(2)
    stream = make_stream(5000, seed=5)
    produce(kafka_bootstrap, movielog, stream.lines)
    # The serving side's real producer; one HEAD and one shed answer among them.
    sink = ProvenanceSink(kafka_bootstrap, recommendations, CollectorRegistry())
    events = [
        build_event(
            user_id=u,
            track="canary" if u % 2 else "stable",
            model_name="movierec-knn",
            model_version="7" if u % 2 else "6",
            ids=["a+1999", "b+"],
            scores=[2.5, 1.5],
            latency_ms=10.0 + u,
            status=200,
        )
        for u in range(300)
    ]
    for event in events:
        sink.emit(event)
    sink.emit({**events[0], "request_id": "head", "method": "HEAD"})
    sink.emit({**events[0], "request_id": "shed", "status": 503, "items": []})
    sink.close(timeout=30)
    assert sink.metrics.sent._value.get() == 302

    source = f"kafka://{kafka_bootstrap}/{movielog},{recommendations}"
    first = _ingest_in_process(capsys, "--source", source, "--db", pg_url, "--until-caught-up")
    assert first["read"] == 5000 + 302
    assert first["skipped"] == 2
    assert first["stored"] == len(stream.keys) + 300
    again = _ingest_in_process(capsys, "--source", source, "--db", pg_url, "--until-caught-up")
    assert again["read"] == 0
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            by_track = dict(
                conn.execute(
                    sa.text(
                        "SELECT track || '/' || model_version, count(*) FROM recommendations "
                        "WHERE source = 'provenance' GROUP BY 1"
                    )
                ).all()
            )
            offsets = dict(
                conn.execute(
                    sa.text("SELECT source, sum(next_offset) FROM source_offsets GROUP BY source")
                ).all()
            )
            request_ids = set(
                conn.execute(
                    sa.text("SELECT request_id FROM recommendations WHERE source = 'provenance'")
                ).scalars()
            )
    finally:
        engine.dispose()
    assert by_track == {"canary/7": 150, "stable/6": 150}
    assert request_ids == {e["request_id"] for e in events}
    # Each topic's offsets committed with its events, in the same store.
    assert offsets == {f"kafka:{movielog}": 5000, f"kafka:{recommendations}": 302}


def test_two_consumers_in_one_group_share_the_partitions(
    kafka_bootstrap: str, kafka_topic: str, pg_url: str, tmp_path: Path
) -> None:
    stream = make_stream(20_000, seed=11)
    source = f"kafka://{kafka_bootstrap}/{kafka_topic}"
    consumers = [
        Consumer(tmp_path, source, pg_url, "--group", "shared", "--batch-size", "2000")
        for _ in range(2)
    ]
    wait_for(lambda: all(c.has_partitions() for c in consumers), 180, "both consumers to join")
    produce(kafka_bootstrap, kafka_topic, stream.lines)
    expected = len(stream.keys) + stream.invalid
    wait_for(lambda: stored_count(pg_url) == expected, 240, "both consumers to drain the topic")
    summaries = [c.stop() for c in consumers]
    assert all(s["read"] > 0 for s in summaries), summaries
    assert sum(s["stored"] for s in summaries) == len(stream.keys)
    # A rebalance can hand a partition over while its last batch is still committing: the new
    # owner reads those lines again (at-least-once reading). The store keeps them once.
    assert sum(s["dead_letters"] for s in summaries) >= stream.invalid
    assert_exactly(stream, pg_url)


def test_consumer_killed_at_random_points_loses_and_doubles_nothing(
    kafka_bootstrap: str, kafka_topic: str, pg_url: str, tmp_path: Path
) -> None:
    stream = make_stream(100_000, seed=3)
    source = f"kafka://{kafka_bootstrap}/{kafka_topic}"
    rng = random.Random(20261127)
    chunks = [stream.lines[i : i + 5_000] for i in range(0, len(stream.lines), 5_000)]

    def stream_in() -> None:  # the stream keeps flowing while consumers die
        for chunk in chunks:
            produce(kafka_bootstrap, kafka_topic, chunk)
            time.sleep(0.5)

    producer = threading.Thread(target=stream_in)
    producer.start()
    progress = []
    try:
        for _ in range(4):
            consumer = Consumer(
                tmp_path, source, pg_url, "--group", "crashy", "--batch-size", "3000"
            )
            before = max(stored_count(pg_url), 0)
            wait_for(partial(_grew, pg_url, before), 120, "some progress")
            time.sleep(rng.uniform(0.2, 2.5))
            consumer.kill()
            progress.append(stored_count(pg_url))
    finally:
        producer.join()
    expected = len(stream.keys) + stream.invalid
    assert progress == sorted(progress)
    assert 0 < progress[0] < expected  # the first kill at least hit the stream mid-way
    Consumer(tmp_path, source, pg_url, "--group", "crashy", "--until-caught-up").wait()
    assert_exactly(stream, pg_url)


def _continuous_run_survives(
    fault: Callable[[], None],
    stream: Stream,
    *,
    bootstrap: str,
    topic: str,
    url: str,
    log_dir: Path,
) -> str:
    """Half the stream, the fault mid-consumption, the other half; returns the consumer's log."""
    half = len(stream.lines) // 2
    produce(bootstrap, topic, stream.lines[:half])
    consumer = Consumer(log_dir, f"kafka://{bootstrap}/{topic}", url, "--batch-size", "2000")
    wait_for(lambda: stored_count(url) > 2000, 120, "the consumer to be mid-stream")
    fault()
    produce(bootstrap, topic, stream.lines[half:])
    expected = len(stream.keys) + stream.invalid
    wait_for(lambda: stored_count(url) == expected, 240, "the consumer to catch up after the fault")
    consumer.stop()
    assert_exactly(stream, url)
    return consumer.log_path.read_text()


def test_broker_restart_mid_stream(
    broker_control: harness_kafka.KafkaBroker, pg_url: str, tmp_path: Path
) -> None:
    topic = harness_kafka.create_topic(broker_control.bootstrap, partitions=3)
    stream = make_stream(30_000, seed=5)
    _continuous_run_survives(
        broker_control.restart,
        stream,
        bootstrap=broker_control.bootstrap,
        topic=topic,
        url=pg_url,
        log_dir=tmp_path,
    )


def test_postgres_restart_mid_stream(
    pg_control: PostgresServer, kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    url = pg_control.create_database()
    stream = make_stream(30_000, seed=9)
    consumer_log = _continuous_run_survives(
        pg_control.restart,
        stream,
        bootstrap=kafka_bootstrap,
        topic=kafka_topic,
        url=url,
        log_dir=tmp_path,
    )
    assert "unavailable" in consumer_log  # the outage was seen, waited out, and nothing lost


def test_partitions_assigned_while_the_store_is_away_wait_for_its_offsets(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """Nothing is read from a position the store did not confirm: partitions assigned while
    the store cannot say where to start stay paused, then start at the store's offsets."""
    from movierec_ingestor.sources.kafka import KafkaAddress, KafkaSource
    from movierec_ingestor.store import StoreUnavailable

    stream = make_stream(300, garbage_every=0, repeat_every=0)
    produce(kafka_bootstrap, kafka_topic, stream.lines)  # 100 per partition
    asked = 0

    def offsets(_name: str) -> dict[int, int]:
        nonlocal asked
        asked += 1
        if asked <= 2:
            raise StoreUnavailable("database away")
        return {0: 40, 1: 100}  # partition 2 was never stored: from its beginning

    source = KafkaSource(
        KafkaAddress(kafka_bootstrap, kafka_topic), group="paused", committed_offsets=offsets
    )
    read = 0
    ends: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not source.caught_up():
            try:
                batch = source.read(1000, 0.5)
            except StoreUnavailable:
                continue
            if asked <= 2:
                assert batch.read == 0, "read before the store said where to start"
            read += batch.read
            ends.update(batch.offsets)
        assert source.caught_up()
    finally:
        source.close()
    assert asked == 3
    assert read == 60 + 0 + 100
    assert ends == {0: 100, 2: 100}
