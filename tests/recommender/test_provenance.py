"""Provenance events: their format, the non-blocking sink, real Kafka delivery and outages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from movierec_ingestor.events import RecommendationEvent, parse_line
from movierec_recommender.provenance import ProvenanceSink, build_event, course_log_line
from movierec_recommender.serving.app import create_app
from movierec_recommender.serving.settings import ServingSettings
from prometheus_client import CollectorRegistry

from harness.appservice import free_port, train_model


def _event(**kw: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "user_id": 42,
        "track": "canary",
        "model_name": "movies",
        "model_version": "7",
        "ids": ["the+matrix+1999", "up+2009"],
        "scores": [4.5, 4.25],
        "latency_ms": 12.3456,
        "status": 200,
    }
    fields.update(kw)
    return build_event(**fields)  # type: ignore[arg-type]


def test_event_has_every_field_the_contract_names() -> None:
    event = _event()
    assert set(event) >= {"time", "user_id", "track", "model_name", "model_version", "items",
                          "latency_ms", "status"}  # fmt: skip
    assert event["items"] == [
        {"movie_id": "the+matrix+1999", "score": 4.5},
        {"movie_id": "up+2009", "score": 4.25},
    ]
    json.dumps(event)  # serialisable as is


def test_course_log_line_parses_as_a_recommendation_event() -> None:
    parsed = parse_line(course_log_line(_event(), "movierec-canary"))
    assert isinstance(parsed, RecommendationEvent)
    assert parsed.user_id == 42
    assert parsed.status == 200
    assert parsed.results == ("the+matrix+1999", "up+2009")
    assert parsed.latency_ms == 12


def test_sink_without_bootstrap_is_disabled_and_free() -> None:
    sink = ProvenanceSink(None, "recommendations", CollectorRegistry())
    sink.emit(_event())
    assert not sink.enabled
    assert sink._thread is None


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def _wait(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_emit_never_blocks_and_counts_drops_when_the_buffer_is_full() -> None:
    registry = CollectorRegistry()
    dead_port = free_port()  # nothing listens: the sender can never drain into Kafka
    sink = ProvenanceSink(f"127.0.0.1:{dead_port}", "recommendations", registry, buffer_size=5)
    started = time.monotonic()
    for _ in range(500):
        sink.emit(_event())
    assert time.monotonic() - started < 0.5
    dropped = _value(registry, "movierec_provenance_dropped_total", reason="buffer_full")
    assert dropped >= 490


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("pmodel") / "3", n_users=200, n_movies=60)


def _app(model_dir: Path, bootstrap: str, topic: str) -> Flask:
    settings = ServingSettings(
        model=str(model_dir),
        kafka_bootstrap=bootstrap,
        provenance_topic=topic,
        track="canary",
    )
    app = create_app(settings, start=False)
    assert app.extensions["movierec"].holder.load()
    return app


@pytest.mark.kafka
def test_every_answer_arrives_on_kafka(
    model_dir: Path, kafka_bootstrap: str, kafka_topic: str
) -> None:
    from kafka import KafkaConsumer

    app = _app(model_dir, kafka_bootstrap, kafka_topic)
    client = app.test_client()
    users = [1, 2, 3, 999_999]
    answers = {u: client.get(f"/recommend/{u}").get_data(as_text=True).split(",") for u in users}
    sink = app.extensions["movierec"].provenance
    sink.close(timeout=20)
    consumer = KafkaConsumer(
        kafka_topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15_000,
    )
    try:
        events = []
        for message in consumer:
            events.append(json.loads(message.value))
            if len(events) == len(users):
                break
    finally:
        consumer.close()
    by_user = {e["user_id"]: e for e in events}
    assert set(by_user) == set(users)
    for uid, ids in answers.items():
        event = by_user[uid]
        assert [item["movie_id"] for item in event["items"]] == ids
        assert event["model_version"] == "3"
        assert event["model_name"] == "3"
        assert event["track"] == "canary"
        assert event["status"] == 200
        assert event["latency_ms"] > 0
    assert by_user[999_999]["fallback"] == "unknown_user"
    registry = app.extensions["movierec"].registry
    assert _value(registry, "movierec_provenance_sent_total") == len(users)


def test_kafka_outage_never_fails_an_answer_and_drops_are_counted(model_dir: Path) -> None:
    app = _app(model_dir, f"127.0.0.1:{free_port()}", "recommendations")
    client = app.test_client()
    started = time.monotonic()
    statuses = [client.get(f"/recommend/{u % 50}").status_code for u in range(200)]
    elapsed = time.monotonic() - started
    assert statuses == [200] * 200
    assert elapsed < 10
    registry = app.extensions["movierec"].registry

    def dropped() -> float:
        return sum(
            _value(registry, "movierec_provenance_dropped_total", reason=r)
            for r in ("buffer_full", "unreachable", "send_failed")
        )

    _wait(lambda: dropped() >= 200)
    text = client.get("/metrics").get_data(as_text=True)
    assert "movierec_provenance_dropped_total" in text


def test_broker_stopped_mid_run_answers_flow_drops_counted_then_recovers(
    model_dir: Path, broker_control: Any
) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker_control.bootstrap)
    admin.create_topics([NewTopic("recommendations", 1, 1)])
    admin.close()
    app = _app(model_dir, broker_control.bootstrap, "recommendations")
    client = app.test_client()
    registry = app.extensions["movierec"].registry

    def sent() -> float:
        return _value(registry, "movierec_provenance_sent_total")

    def dropped() -> float:
        return sum(
            _value(registry, "movierec_provenance_dropped_total", reason=r)
            for r in ("buffer_full", "unreachable", "send_failed")
        )

    for u in range(20):
        assert client.get(f"/recommend/{u}").status_code == 200
    _wait(lambda: sent() == 20)

    broker_control.stop()
    started = time.monotonic()
    statuses = [client.get(f"/recommend/{u % 50}").status_code for u in range(100)]
    assert statuses == [200] * 100
    assert time.monotonic() - started < 10
    _wait(lambda: dropped() >= 100, seconds=60)

    broker_control.start()
    before = sent()
    deadline = time.monotonic() + 90
    while sent() <= before:  # the producer reconnects by itself; keep answering meanwhile
        assert time.monotonic() < deadline, "provenance never recovered after the broker restart"
        assert client.get("/recommend/1").status_code == 200
        time.sleep(0.2)
