"""Hot swap against a real MLflow server: follow an alias, move it, no restart, no failed request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from movierec_recommender import registry
from movierec_recommender.data import RatingsData
from movierec_recommender.models import build_model

from harness.appservice import (
    RECOMMENDER_APP,
    Service,
    http_get,
    synthetic_ratings,
)
from harness.session import MlflowNames


def _register(algo: str, seed: int, uri: str, names: MlflowNames) -> str:
    users, movies, ratings = synthetic_ratings(300, 80, 15, seed)
    data = RatingsData.from_arrays(users, movies, ratings)
    model = build_model(algo).fit(data)
    lineage = {"source": "synthetic", "seed": seed, "rows": len(ratings)}
    return registry.log_and_register(
        model, lineage, {"rmse": 1.0}, names.model, uri, experiment=names.experiment
    )


def _reloads(svc: Service) -> float:
    """Successful model loads counted over every worker of the service."""
    metrics = http_get(svc.url + "/metrics")[2].decode()
    for line in metrics.splitlines():
        if line.startswith('movierec_model_reloads_total{result="success"}'):
            return float(line.split()[-1])
    return 0.0


def test_alias_move_swaps_the_model_without_restart_or_failed_request(
    mlflow_uri: str, mlflow_names: MlflowNames, tmp_path: Path
) -> None:
    v1 = _register("item-item", 1, mlflow_uri, mlflow_names)
    v2 = _register("user-user", 2, mlflow_uri, mlflow_names)
    registry.set_alias(mlflow_names.model, "champion", v1, mlflow_uri)
    env = {
        "MOVIEREC_RECOMMENDER_MODEL": f"models:/{mlflow_names.model}@champion",
        "MOVIEREC_RECOMMENDER_TRACKING_URI": mlflow_uri,
        "MOVIEREC_RECOMMENDER_POLL_INTERVAL_SECONDS": "0.5",
    }
    with Service(RECOMMENDER_APP, env, workers=2, log_dir=tmp_path) as svc:
        pid = svc.proc.pid if svc.proc else None
        assert http_get(svc.url + "/recommend/1")[1]["X-Model-Version"] == v1

        results: list[tuple[int, str]] = []
        stop = threading.Event()

        def hammer() -> None:
            uid = 0
            while not stop.is_set():
                uid = (uid + 7) % 400
                try:
                    status, headers, _ = http_get(f"{svc.url}/recommend/{uid}", timeout=2)
                    results.append((status, headers.get("X-Model-Version", "")))
                except OSError as exc:
                    results.append((0, type(exc).__name__))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            registry.set_alias(mlflow_names.model, "champion", v2, mlflow_uri)
            deadline = time.monotonic() + 60
            while True:
                # Every worker has swapped when each counted its second load: a run of v2
                # answers alone can all come from one worker (the other accepted none of them).
                recent = [v for _, v in results[-60:]]
                if len(recent) == 60 and set(recent) == {v2} and _reloads(svc) >= 4:
                    break
                assert time.monotonic() < deadline, f"never swapped: {Counter(recent)}"
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()

        statuses = Counter(status for status, _ in results)
        assert statuses == {200: len(results)}, f"failed requests during the swap: {statuses}"
        assert {v for _, v in results} == {v1, v2}
        assert svc.proc is not None and svc.proc.pid == pid and svc.proc.poll() is None
        metrics = http_get(svc.url + "/metrics")[2].decode()
        assert f'movierec_model_info{{algo="user-user",model_version="{v2}"}} 1.0' in metrics
        assert f'movierec_model_info{{algo="item-item",model_version="{v1}"}} 0.0' in metrics
        assert _reloads(svc) >= 4  # 2 workers x (load + swap)
        assert "hot swap: model version" in svc.log_tail(200)


def test_broken_new_version_keeps_the_old_one_serving(
    mlflow_uri: str, mlflow_names: MlflowNames, tmp_path: Path
) -> None:
    v1 = _register("item-item", 3, mlflow_uri, mlflow_names)
    registry.set_alias(mlflow_names.model, "champion", v1, mlflow_uri)
    v2 = _register("item-item", 4, mlflow_uri, mlflow_names)
    # corrupt v2: its recorded checksum no longer matches the stored artifact
    client = registry.store.client(mlflow_uri)
    client.set_model_version_tag(
        mlflow_names.model, v2, registry.runs.TAG_ARTIFACT_SHA256, "0" * 64
    )
    env = {
        "MOVIEREC_RECOMMENDER_MODEL": f"models:/{mlflow_names.model}@champion",
        "MOVIEREC_RECOMMENDER_TRACKING_URI": mlflow_uri,
        "MOVIEREC_RECOMMENDER_POLL_INTERVAL_SECONDS": "0.5",
    }
    with Service(RECOMMENDER_APP, env, workers=1, log_dir=tmp_path) as svc:
        registry.set_alias(mlflow_names.model, "champion", v2, mlflow_uri)
        deadline = time.monotonic() + 60
        while 'reloads_total{result="failure"}' not in http_get(svc.url + "/metrics")[2].decode():
            assert time.monotonic() < deadline, "the broken version was never tried"
            time.sleep(0.3)
        status, headers, _ = http_get(svc.url + "/recommend/5")
        assert status == 200
        assert headers["X-Model-Version"] == v1
        assert "checksum" in svc.log_tail(200)


pytestmark = pytest.mark.mlflow
