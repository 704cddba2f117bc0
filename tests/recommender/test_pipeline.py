"""`movierec retrain` against a real MLflow server on PostgreSQL and a real PostgreSQL store:
gate, runs, registration, aliases, promotion rule, forced promotion, stopped runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from movierec_ingestor import schema
from movierec_ingestor.batch import Batch
from movierec_ingestor.store import Store
from movierec_recommender import registry
from movierec_recommender.registry.pyfunc import NATIVE_SUBPATH
from movierec_recommender.registry.store import git_commit

from harness.session import MlflowNames
from movierec.cli import main

pytestmark = [pytest.mark.mlflow, pytest.mark.postgres]

N_USERS, N_MOVIES, PER_USER = 60, 40, 18
NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)  # the stream's naive UTC


class World:
    """A small latent-factor world: users and movies with biases and tastes, seeded."""

    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.user_bias = rng.normal(0, 0.5, N_USERS)
        self.movie_bias = rng.normal(0, 0.6, N_MOVIES)
        self.user_taste = rng.normal(0, 1, (N_USERS, 2))
        self.movie_taste = rng.normal(0, 1, (N_MOVIES, 2))
        self.ages = rng.integers(16, 70, N_USERS)
        self.genders = rng.choice(["M", "F"], N_USERS)

    def rating(self, user: int, movie: int, rng: np.random.Generator) -> int:
        score = (
            3.4
            + self.user_bias[user]
            + self.movie_bias[movie]
            + 0.6 * float(self.user_taste[user] @ self.movie_taste[movie])
            + rng.normal(0, 0.3)
        )
        return int(np.clip(np.rint(score), 1, 5))


def movie_id(j: int) -> str:
    return f"movie+{j}+1999"


def ingest(db_url: str, world: World, start: datetime, end: datetime, seed: int) -> int:
    """Rate lines for every user through the real ingest path (validate, store); returns count."""
    rng = np.random.default_rng(seed)
    span = (end - start).total_seconds()
    batch = Batch(source=f"test-{seed}")
    for user in range(N_USERS):
        for movie in rng.choice(N_MOVIES, PER_USER, replace=False):
            when = start + timedelta(seconds=float(rng.uniform(0, span)))
            line = (
                f"{when.isoformat()},{user},GET /rate/{movie_id(int(movie))}="
                f"{world.rating(user, int(movie), rng)}"
            )
            assert batch.add(line, str(batch.read)) == "rate", line
    store = Store(db_url)
    try:
        store.write(batch)
        store.upsert(
            schema.users,
            [
                {
                    "user_id": u,
                    "age": int(world.ages[u]),
                    "occupation": None,
                    "gender": str(world.genders[u]),
                }
                for u in range(N_USERS)
            ],
        )
    finally:
        store.close()
    return len(batch.rate)


def retrain(
    db_url: str,
    names: MlflowNames,
    tracking_uri: str,
    *extra: str,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, dict[str, Any], str]:
    """`movierec retrain ...` in-process: exit code, the one JSON line on stdout, stderr."""
    code = main(
        [
            "retrain",
            "--db",
            db_url,
            "--name",
            names.model,
            "--experiment",
            names.experiment,
            "--tracking-uri",
            tracking_uri,
            *extra,
        ]
    )
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1, captured.err[-2000:]
    return code, json.loads(lines[0]), captured.err


def test_first_run_registers_the_better_algorithm_as_champion_until_its_artifact_breaks(
    pg_url: str,
    mlflow_uri: str,
    mlflow_names: MlflowNames,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    rows = ingest(pg_url, World(), NOW - timedelta(days=20), NOW - timedelta(hours=2), seed=1)

    code, summary, _ = retrain(pg_url, mlflow_names, mlflow_uri, capsys=capsys)

    assert code == 0
    assert summary["decision"] == "first" and summary["promoted"] is True
    version = summary["version"]
    assert summary["champion_before"] is None and summary["champion_after"] == version
    assert registry.get_alias_version(mlflow_names.model, "champion", mlflow_uri) == version
    assert registry.get_alias_version(mlflow_names.model, "challenger", mlflow_uri) == version

    client = MlflowClient(mlflow_uri, mlflow_uri)
    runs = {algo: client.get_run(run_id) for algo, run_id in summary["runs"].items()}
    assert set(runs) == {"user-user", "item-item"}
    for algo, run in runs.items():
        assert run.data.params["algo"] == algo
        assert "neighbors" in run.data.params and "pipeline.holdout_fraction" in run.data.params
        for metric in (
            "rmse",
            "mae",
            "precision_at_10",
            "recall_at_10",
            "ndcg_at_10",
            "coverage",
            "fairness_ratio",
        ):
            assert np.isfinite(run.data.metrics[metric]), (algo, metric)
        assert run.data.tags["lineage.rows"] == str(rows)
        assert run.data.tags["lineage.users"] == str(N_USERS)
        assert len(run.data.tags["lineage.sha256"]) == 64
        assert run.data.tags["lineage.time_min"] < run.data.tags["lineage.split_time"]
        assert run.data.tags.get("git_commit") == git_commit()  # None outside a git checkout
    # the registered one is the lower-RMSE candidate, tagged with its lineage and metrics
    best = min(summary["metrics"], key=lambda a: summary["metrics"][a]["rmse"])
    assert summary["algo"] == best
    tags = registry.get_version_tags(mlflow_names.model, version, mlflow_uri)
    assert tags["algo"] == best and tags["run_id"] == summary["runs"][best]
    assert float(tags["metric.rmse"]) == pytest.approx(summary["metrics"][best]["rmse"])
    assert tags["lineage.sha256"] == runs[best].data.tags["lineage.sha256"]
    assert tags["promotion.outcome"] == "first" and tags["promotion.by"]

    # the champion alias resolves to a loadable, verified model
    model, got = registry.download_model(f"models:/{mlflow_names.model}@champion", mlflow_uri)
    assert got == version and model.algo == best

    # a champion whose stored artifact got corrupted cannot serve: the next run replaces it
    source = client.get_model_version_download_uri(mlflow_names.model, version)
    garbage = tmp_path / "meta.json"
    garbage.write_text("{not json")
    get_artifact_repository(
        f"{source.rstrip('/')}/{NATIVE_SUBPATH}", tracking_uri=mlflow_uri
    ).log_artifact(str(garbage))

    code, second, _ = retrain(pg_url, mlflow_names, mlflow_uri, capsys=capsys)

    assert code == 0
    assert second["decision"] == "champion-unusable" and second["promoted"] is True
    assert f"version {version}" in second["reason"] and "corrupted" in second["reason"]
    assert (
        registry.get_alias_version(mlflow_names.model, "champion", mlflow_uri) == second["version"]
    )


def test_worse_challenger_is_not_promoted_forced_promotion_and_rollback_are_recorded(
    pg_url: str, mlflow_uri: str, mlflow_names: MlflowNames, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World()
    ingest(pg_url, world, NOW - timedelta(days=30), NOW - timedelta(days=10), seed=1)
    code, first, _ = retrain(pg_url, mlflow_names, mlflow_uri, capsys=capsys)
    assert code == 0 and first["promoted"]

    # Corrupt the history training reads (random ratings), then new clean ratings arrive: the
    # new challenger learns from noise; the champion, evaluated on the same clean holdout, wins.
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ratings SET rating = 1 + floor(random() * 5)::int"))
    engine.dispose()
    ingest(pg_url, world, NOW - timedelta(days=9), NOW - timedelta(hours=2), seed=2)

    code, second, _ = retrain(
        pg_url, mlflow_names, mlflow_uri, "--holdout-fraction", "0.3", capsys=capsys
    )

    assert code == 0
    assert second["decision"] == "rejected" and second["promoted"] is False
    assert second["champion_before"] == first["version"] == second["champion_after"]
    assert second["champion_metrics"]["rmse"] < second["challenger_metrics"]["rmse"]
    assert "RMSE" in second["reason"]
    assert (
        registry.get_alias_version(mlflow_names.model, "champion", mlflow_uri) == first["version"]
    )
    assert (
        registry.get_alias_version(mlflow_names.model, "challenger", mlflow_uri)
        == second["version"]
    )
    rejected = registry.get_version_tags(mlflow_names.model, second["version"], mlflow_uri)
    assert rejected["promotion.outcome"] == "rejected"
    assert rejected["promotion.previous_champion"] == first["version"]
    assert float(rejected["promotion.champion.rmse"]) == pytest.approx(
        second["champion_metrics"]["rmse"]
    )

    # a person overrides the rule, and the registry remembers who, why and when
    code, forced, _ = retrain(
        pg_url,
        mlflow_names,
        mlflow_uri,
        "--holdout-fraction",
        "0.3",
        "--force-promote",
        "--reason",
        "incident 42: old model leaks PII",
        capsys=capsys,
    )
    assert code == 0 and forced["decision"] == "forced" and forced["promoted"] is True
    assert (
        registry.get_alias_version(mlflow_names.model, "champion", mlflow_uri) == forced["version"]
    )
    tags = registry.get_version_tags(mlflow_names.model, forced["version"], mlflow_uri)
    assert tags["promotion.forced"] == "true"
    assert tags["promotion.forced_reason"] == "incident 42: old model leaks PII"
    assert tags["promotion.by"]
    assert datetime.strptime(tags["promotion.at"], "%Y-%m-%dT%H:%M:%SZ")
    assert tags["promotion.previous_champion"] == first["version"]

    # and can roll back by hand: `movierec promote` checks the version, moves the alias, records it
    code = main(
        [
            "promote",
            "--name",
            mlflow_names.model,
            "--version",
            first["version"],
            "--reason",
            "rollback after incident 43",
            "--tracking-uri",
            mlflow_uri,
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "name": mlflow_names.model,
        "champion_before": forced["version"],
        "champion_after": first["version"],
        "reason": "rollback after incident 43",
    }
    assert (
        registry.get_alias_version(mlflow_names.model, "champion", mlflow_uri) == first["version"]
    )
    rolled_back = registry.get_version_tags(mlflow_names.model, first["version"], mlflow_uri)
    assert rolled_back["promotion.outcome"] == "manual"
    assert rolled_back["promotion.forced_reason"] == "rollback after incident 43"
    assert rolled_back["promotion.previous_champion"] == forced["version"]


def test_failed_quality_gate_stops_before_anything_is_logged_unless_forced(
    pg_url: str, mlflow_uri: str, mlflow_names: MlflowNames, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(pg_url, World(), NOW - timedelta(days=20), NOW - timedelta(hours=2), seed=1)
    # a row that bypassed the ingest validator: rating 9 is a schema error the gate blocks on
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            schema.rating_events.insert().values(
                event_key="corrupt",
                time=NOW - timedelta(hours=1),
                user_id=1,
                movie_id=movie_id(1),
                rating=9,
            )
        )
    engine.dispose()

    code, summary, err = retrain(pg_url, mlflow_names, mlflow_uri, capsys=capsys)

    assert code == 1
    assert summary["decision"] == "stopped" and "quality gate failed" in summary["reason"]
    assert "rating_events" in summary["reason"] and "out_of_range" in summary["reason"]
    assert "--force" in err
    client = MlflowClient(mlflow_uri, mlflow_uri)
    assert client.search_registered_models(filter_string=f"name = '{mlflow_names.model}'") == []
    assert client.get_experiment_by_name(mlflow_names.experiment) is None  # not even a run

    # --force trains anyway, and the runs say the gate was overridden and why
    code, forced, _ = retrain(pg_url, mlflow_names, mlflow_uri, "--force", capsys=capsys)
    assert code == 0 and forced["promoted"]
    assert forced["quality_gate"].startswith("forced: blocking: schema:rating_events")
    run = client.get_run(forced["runs"][forced["algo"]])
    assert run.data.tags["quality_gate"] == forced["quality_gate"]
