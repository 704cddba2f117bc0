"""`movierec retrain` records its last success on the Pushgateway (for `MovierecModelStale`):
a successful run pushes `movierec_retrain_last_success_timestamp_seconds`, a stopped one does
not, and an unreachable Pushgateway never fails the run."""

from __future__ import annotations

import time
import urllib.request
from datetime import timedelta

import pytest
import sqlalchemy as sa
from movierec_ingestor import schema
from movierec_recommender.pipeline import metrics

from harness.session import MlflowNames
from tests.recommender.test_pipeline import NOW, World, ingest, movie_id, retrain

pytestmark = [pytest.mark.mlflow, pytest.mark.postgres]

METRIC = "movierec_retrain_last_success_timestamp_seconds"


def pushed(gateway: str, model: str) -> float | None:
    """The value the Pushgateway holds for ``model``'s retrain job, if any."""
    with urllib.request.urlopen(f"{gateway.rstrip('/')}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if (
            line.startswith(METRIC + "{")
            and 'job="movierec-retrain"' in line
            and f'model_name="{model}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_only_a_successful_retrain_records_its_time(
    *,
    pg_url: str,
    mlflow_uri: str,
    mlflow_names: MlflowNames,
    pushgateway_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOVIEREC_PUSHGATEWAY_URL", pushgateway_url)
    ingest(pg_url, World(), NOW - timedelta(days=20), NOW - timedelta(hours=2), seed=1)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:  # a schema error the quality gate blocks on
        conn.execute(
            schema.rating_events.insert().values(
                event_key="corrupt", time=NOW - timedelta(hours=1), user_id=1,
                movie_id=movie_id(1), rating=9,
            )
        )  # fmt: skip
    engine.dispose()

    code, _, _ = retrain(pg_url, mlflow_names, mlflow_uri, capsys=capsys)
    assert code == 1
    assert pushed(pushgateway_url, mlflow_names.model) is None  # a stopped run is no success

    before = time.time()
    code, summary, _ = retrain(pg_url, mlflow_names, mlflow_uri, "--force", capsys=capsys)
    assert code == 0 and summary["version"]
    value = pushed(pushgateway_url, mlflow_names.model)
    assert value is not None and before <= value <= time.time()


def test_an_unreachable_pushgateway_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    assert metrics.record_success("movies", gateway="http://127.0.0.1:9", now=1.0) is False
    assert "pushing the retrain metrics" in caplog.text


def test_no_pushgateway_configured_pushes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOVIEREC_PUSHGATEWAY_URL", raising=False)
    assert metrics.record_success("movies", now=1.0) is None
