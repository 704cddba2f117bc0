"""Sinks: the file sink appends raw lines; the Kafka sink keys by user and loses nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from movierec_simulator.sinks import FileSink, KafkaSink, SinkError, write_lines
from movierec_simulator.stream import generate_history
from movierec_simulator.world import World

from harness.ports import free_port


def test_file_sink_appends_newline_terminated_lines_and_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "stream.log"
    with FileSink(path) as sink:
        sink.write("a,1,GET /rate/x=1", 1)
        sink.write(b"\x01\x02garbage\xff", None)
    with FileSink(path) as sink:
        sink.write("b,2,GET /rate/y=2", 2)
    assert path.read_bytes() == b"a,1,GET /rate/x=1\n\x01\x02garbage\xff\nb,2,GET /rate/y=2\n"


def test_file_sink_round_trips_a_generated_stream(tmp_path: Path) -> None:
    history = generate_history(World.generate(100, 50, 1), 3, seed=1)
    path = tmp_path / "s.log"
    with FileSink(path) as sink:
        assert write_lines(sink, history.keyed()) == history.summary.lines
    expected = [x if isinstance(x, bytes) else x.encode() for x in history]
    assert path.read_bytes().split(b"\n")[:-1] == expected


def test_file_sink_reports_an_unwritable_path(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(SinkError, match="cannot write"):
        FileSink(tmp_path / "dir")


def test_kafka_sink_fails_clearly_when_no_broker_listens() -> None:
    port = free_port()
    with pytest.raises(SinkError, match=rf"127\.0\.0\.1:{port} is unreachable"):
        KafkaSink(f"127.0.0.1:{port}", "movielog", connect_timeout_s=2)


@pytest.mark.kafka
def test_kafka_sink_delivers_every_line_keyed_by_user(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    history = generate_history(World.generate(80, 40, 2), 4, seed=2, malformed_share=0.05)
    with KafkaSink(kafka_bootstrap, kafka_topic) as sink:
        write_lines(sink, history.keyed())
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000
    )
    try:
        parts = [TopicPartition(kafka_topic, p) for p in consumer.partitions_for_topic(kafka_topic)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got = list(consumer)
    finally:
        consumer.close()
    expected = [x if isinstance(x, bytes) else x.encode() for x in history]
    assert Counter(r.value for r in got) == Counter(expected)
    # One user's lines all land in one partition, in the order they were written.
    partitions: dict[bytes, set[int]] = {}
    for r in got:
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values())
    user, line_order = next(iter(partitions)), []
    for key, line in history.keyed():
        if key is not None and str(key).encode() == user:
            line_order.append(line if isinstance(line, bytes) else line.encode())
    assert [r.value for r in sorted(got, key=lambda r: r.offset) if r.key == user] == line_order
