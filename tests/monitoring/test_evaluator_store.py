"""The evaluator on a real store (SQLite, the harness's PostgreSQL) filled by the simulator and
the ingestor: course log lines, provenance events, metadata; and the `--follow` service."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from movierec_ingestor.db import create_engine
from movierec_recommender.online.evaluate import evaluate
from movierec_recommender.online.exposures import Exposure
from movierec_recommender.online.service import ModelCache, evaluate_once
from movierec_recommender.online.settings import EvaluatorSettings

from harness.ports import free_port
from tests.monitoring.support import HOURS, START, fill, movierec, simulate


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return simulate(tmp_path_factory.mktemp("world"))


def _settings(db: str, **extra: object) -> EvaluatorSettings:
    return EvaluatorSettings(
        db_url=db, lookback_minutes=HOURS * 60 + 240, window_minutes=120, min_group_size=5, **extra
    )


def _check_snapshot(db: str, world: dict[str, Path], models: dict[str, str]) -> None:
    engine = create_engine(db)
    try:
        snap = evaluate_once(
            engine,
            _settings(db),
            ModelCache(models, None),
            # every answer's 2-hour engagement window has passed
            now=START + timedelta(hours=HOURS + 3),
        )
    finally:
        engine.dispose()
    arms = {(a.track, a.model_version): a for a in snap.arms}
    assert sorted(arms) == [("canary", "7"), ("stable", "6")]
    for arm in arms.values():
        assert arm.requests > 20 and 0 < arm.success_rate <= 1
        assert 0 < arm.engagement_rate < 1
        assert 0 < arm.completion <= 1
        assert 0 < arm.exposure_gini < 1 and 0 < arm.coverage <= 1
        assert 0 <= arm.popular_share <= 1
        assert 0 <= arm.self_confirmation <= 1 and arm.self_confirmation_samples > 0
        assert set(arm.disparity) == {"age_group", "gender"}
    assert [ab.experiment for ab in snap.ab] == ["stable_vs_canary"]
    # the store's exposures through the one-shot evaluator (per track) give the same engagement
    engine = create_engine(db)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT time, user_id, track, model_version, results, status, latency_ms "
                "FROM recommendations WHERE source = 'provenance'"
            )
        ).all()
    engine.dispose()
    exposures = [
        Exposure(
            pd.Timestamp(r[0]).to_pydatetime(),
            r[1],
            r[2],
            r[3],
            tuple(r[4].split(",")) if r[4] else (),
            r[5],
            float(r[6] or 0),
        )
        for r in rows
    ]
    report = evaluate(exposures, db, window=timedelta(hours=2))
    for (track, _), arm in arms.items():
        assert arm.engagement_rate == pytest.approx(report.tracks[track].engagement_rate)
    if models:
        assert arms[("stable", "6")].rmse_samples > 0
        assert 0 < arms[("stable", "6")].online_rmse < 3


def test_evaluator_on_sqlite(world: dict[str, Path], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    fill(db, world)
    model = tmp_path / "model"
    movierec("train", "--db", db, "--algo", "item-item", "--out", str(model))
    _check_snapshot(db, world, {"6": str(model)})


def test_evaluator_on_postgres(world: dict[str, Path], pg_url: str) -> None:
    fill(pg_url, world)
    _check_snapshot(pg_url, world, {})


def test_follow_serves_metrics(world: dict[str, Path], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    fill(db, world)
    port = free_port()
    proc = subprocess.Popen(
        [
            # the store URL from the environment, as the chart's Deployment passes it
            sys.executable, "-m", "movierec", "evaluate-online", "--follow",
            "--interval", "1", "--port", str(port),
            # the simulated stream lies in the past: look back far enough to include it
            "--lookback-minutes", str((datetime.now() - START).total_seconds() / 60 + 60),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "MOVIEREC_EVALUATOR_DB_URL": db},
    )  # fmt: skip
    try:
        text = ""
        deadline = time.monotonic() + 60
        while "movierec_engagement_rate{" not in text and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                pass
            time.sleep(0.5)
        for name in (
            'movierec_engagement_rate{group="all",model_version="7",track="canary"}',
            'movierec_online_success_rate{model_version="6",track="stable"}',
            'movierec_fairness_disparity_ratio{attribute="gender",model_version="6",track="stable"}',
            'movierec_ab_p_value{experiment="stable_vs_canary"}',
            "movierec_online_last_success_timestamp_seconds",
        ):
            assert name in text, name
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
