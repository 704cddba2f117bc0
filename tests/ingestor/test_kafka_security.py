"""Every Kafka client over TLS + SASL: the simulator produces, the serving side's provenance
producer sends, the ingestor consumes, all through the harness broker's SASL_SSL listener."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness import kafka as harness_kafka

from .streams import make_stream


def _movierec(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "movierec", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


@pytest.fixture
def secure(broker_control: harness_kafka.KafkaBroker) -> tuple[str, dict[str, str]]:
    assert broker_control.sasl_bootstrap, "the harness broker has no SASL_SSL listener"
    return broker_control.sasl_bootstrap, broker_control.client_env()


def test_simulator_provenance_and_ingestor_over_sasl_ssl(
    secure: tuple[str, dict[str, str]],
    broker_control: harness_kafka.KafkaBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap, env = secure
    for topic in ("movielog", "recommendations"):
        harness_kafka.create_topic(broker_control.bootstrap, partitions=2, name=topic)
    url = f"sqlite:///{tmp_path}/store.db"
    # the simulator, producing course lines over SASL_SSL
    done = _movierec(
        env, "simulate", "--users", "50", "--movies", "30", "--hours", "2", "--seed", "1",
        "--kafka", bootstrap, "--topic", "movielog",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = json.loads(done.stdout)["lines"]
    # the serving side's provenance producer, in this process
    from movierec_recommender.provenance import ProvenanceSink, build_event
    from prometheus_client import CollectorRegistry

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sink = ProvenanceSink(bootstrap, "recommendations", CollectorRegistry())
    for user in range(20):
        sink.emit(
            build_event(
                user_id=user, track="stable", model_name="m", model_version="1",
                ids=["a+"], scores=[1.0], latency_ms=3.0, status=200,
            )
        )  # fmt: skip
    sink.close(timeout=30)
    assert sink.metrics.sent._value.get() == 20
    # the ingestor, consuming both topics over SASL_SSL
    done = _movierec(
        env, "ingest", "--source", f"kafka://{bootstrap}/movielog,recommendations",
        "--db", url, "--until-caught-up",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["read"] == lines + 20
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            provenance = conn.execute(
                sa.text("SELECT count(*) FROM recommendations WHERE source = 'provenance'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert provenance == 20


def test_a_wrong_password_is_refused(
    secure: tuple[str, dict[str, str]], broker_control: harness_kafka.KafkaBroker, tmp_path: Path
) -> None:
    bootstrap, env = secure
    harness_kafka.create_topic(broker_control.bootstrap, partitions=1, name="movielog")
    log = tmp_path / "x.log"
    log.write_bytes(b"\n".join(make_stream(10, garbage_every=0).lines) + b"\n")
    done = _movierec(
        {**env, "MOVIEREC_KAFKA_SASL_PASSWORD": "wrong"},
        "ingest", "--source", f"kafka://{bootstrap}/movielog", "--db",
        f"sqlite:///{tmp_path}/s.db", "--until-caught-up", "--max-seconds", "20",
    )  # fmt: skip
    assert done.returncode != 0
    assert "uthentication" in done.stderr


def test_sasl_without_credentials_is_a_settings_error() -> None:
    from movierec_ingestor.kafka_config import KafkaSecurity
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="SASL_USERNAME"):
        KafkaSecurity(security_protocol="SASL_SSL")
