"""Ingest metrics: the contract's names, and the CronJob push to a real Pushgateway."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from movierec_ingestor.metrics import IngestMetrics
from prometheus_client import generate_latest

from movierec.cli import main

from .streams import make_stream, write_lines


def test_batch_accounting_uses_the_contract_names() -> None:
    metrics = IngestMetrics()
    metrics.record_batch(
        read_by_type={"watch": 3, "rate": 1, "recommendation": 0},
        stored_by_type={"watch": 2, "rate": 1, "recommendation": 0},
        duplicates=1,
        dead_by_reason={"bad_time": 2},
        newest_time=datetime(2000, 1, 1),
        seconds=0.2,
        lag={0: 5, 1: 0},
    )
    text = generate_latest(metrics.registry).decode()
    assert 'movierec_ingest_events_total{type="watch"} 3.0' in text
    assert 'movierec_ingest_dead_letters_total{reason="bad_time"} 2.0' in text
    assert 'movierec_ingest_consumer_lag_messages{partition="0"} 5.0' in text
    assert "movierec_ingest_batch_seconds_count 1.0" in text
    lag = next(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("movierec_ingest_lag_seconds ")
    )
    assert lag > 20 * 365 * 86400  # an event from 2000 is decades old


def test_cronjob_pushes_to_the_pushgateway(
    pushgateway_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "s.log"
    stream = make_stream(500)
    write_lines(str(log), stream.lines)
    code = main(
        [
            "ingest",
            "--source",
            str(log),
            "--db",
            f"sqlite:///{tmp_path}/x.db",
            "--until-caught-up",
            "--pushgateway",
            pushgateway_url,
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    with urllib.request.urlopen(f"{pushgateway_url.rstrip('/')}/metrics", timeout=10) as response:
        text = response.read().decode()
    pushed = [
        line
        for line in text.splitlines()
        if line.startswith("movierec_ingest_dead_letters_total{")
        and 'job="movierec-ingest"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in pushed) == summary["dead_letters"] > 0
