"""The MLflow adapter against a real MLflow server (PostgreSQL backend) with real models: what a
run records, what a version carries, downloads by version and alias, and broken artifacts."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from movierec_ingestor.errors import BadInputError
from movierec_recommender import registry
from movierec_recommender.data import RatingsData
from movierec_recommender.models import build_model
from movierec_recommender.pipeline.lineage import snapshot
from movierec_recommender.registry import store as registry_store
from movierec_recommender.registry.pyfunc import NATIVE_SUBPATH

from harness.session import MlflowNames

# 12 users x 8 movies, two taste groups: enough for both kNN variants to have neighbours.
USERS = [str(u) for u in range(12)]
MOVIES = [f"movie+{m}+2001" for m in range(8)]


def tiny_data() -> RatingsData:
    rng = np.random.default_rng(3)
    rows = [
        (u, m, float(np.clip((5 if (int(u) % 2) == (i % 2) else 2) + rng.integers(-1, 2), 1, 5)))
        for u in USERS
        for i, m in enumerate(MOVIES)
        if rng.random() < 0.7
    ]
    users, movies, ratings = zip(*rows, strict=True)
    return RatingsData.from_arrays(users, movies, ratings, 1_700_000_000 + np.arange(len(rows)))


@pytest.fixture(scope="module")
def data() -> RatingsData:
    return tiny_data()


PAIRS = (
    np.array([*USERS[:4], "unknown-user", "3"]),
    np.array([*MOVIES[:4], MOVIES[0], "unknown+movie"]),
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/movies/3", registry.ModelRef("movies", version="3")),
        ("models:/movies@champion", registry.ModelRef("movies", alias="champion")),
        (" models:/m-1@challenger ", registry.ModelRef("m-1", alias="challenger")),
    ],
)
def test_model_uris_parse(uri: str, expected: registry.ModelRef) -> None:
    assert registry.parse_model_uri(uri) == expected
    assert str(expected) == uri.strip()


@pytest.mark.parametrize(
    "uri", ["movies", "models:/movies", "models:/movies/latest", "runs:/abc/model", "models:/a/1/2"]
)
def test_other_uris_are_bad_input(uri: str) -> None:
    with pytest.raises(BadInputError, match="models:/NAME/VERSION"):
        registry.parse_model_uri(uri)


def test_default_store_is_a_sqlite_file_with_artifacts_under_var(
    data: RatingsData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model = build_model("item-item").fit(data)

    version = registry.log_and_register(model, snapshot(data), {"rmse": 1.0}, "local")

    assert registry.resolve_tracking_uri() == f"sqlite:///{tmp_path}/var/mlflow.db"
    assert (tmp_path / "var" / "mlflow.db").is_file()
    assert list((tmp_path / "var" / "mlartifacts").rglob("meta.json"))
    loaded, got = registry.download_model("models:/local/1")
    assert got == version == "1"
    np.testing.assert_allclose(loaded.predict(*PAIRS), model.predict(*PAIRS))


@pytest.mark.mlflow
def test_a_registered_version_records_params_metrics_lineage_and_a_signed_pyfunc(
    data: RatingsData, mlflow_uri: str, mlflow_names: MlflowNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_model("user-user", {"neighbors": 5}).fit(data)
    lineage = snapshot(data, source="test")
    monkeypatch.setenv("MOVIEREC_GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")  # images

    version = registry.log_and_register(
        model,
        lineage,
        {"rmse": 0.9, "ndcg@10": 0.4},
        mlflow_names.model,
        tracking_uri=mlflow_uri,
        experiment=mlflow_names.experiment,
    )

    client = MlflowClient(mlflow_uri, mlflow_uri)
    mv = client.get_model_version(mlflow_names.model, version)
    run = client.get_run(mv.run_id)
    assert run.data.params["algo"] == "user-user" and run.data.params["neighbors"] == "5"
    assert run.data.metrics == {"rmse": 0.9, "ndcg_at_10": 0.4}
    for key, value in {
        "lineage.rows": str(len(data)),
        "lineage.users": "12",
        "lineage.movies": "8",
        "lineage.sha256": lineage.sha256,
        "lineage.time_min": lineage.time_min,
        "algo": "user-user",
    }.items():
        assert run.data.tags[key] == value, key
        assert mv.tags[key] == value, key
    assert run.data.tags["git_commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert mv.tags["metric.ndcg_at_10"] == "0.4"

    # any MLflow tool can use the version: a pyfunc with a signature, same predictions
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{mlflow_names.model}/{version}")
    assert pyfunc.metadata.signature.inputs.input_names() == ["user_id", "movie_id"]
    got = pyfunc.predict(pd.DataFrame({"user_id": PAIRS[0], "movie_id": PAIRS[1]}))
    np.testing.assert_allclose(got, model.predict(*PAIRS), rtol=1e-6)


@pytest.mark.mlflow
def test_download_by_version_and_by_alias_answers_like_the_saved_model(
    data: RatingsData, mlflow_uri: str, mlflow_names: MlflowNames
) -> None:
    first = build_model("item-item").fit(data)
    second = build_model("user-user").fit(data)
    v1 = registry.log_and_register(
        first,
        snapshot(data),
        {"rmse": 1.0},
        mlflow_names.model,
        mlflow_uri,
        experiment=mlflow_names.experiment,
    )
    v2 = registry.log_and_register(
        second,
        snapshot(data),
        {"rmse": 0.9},
        mlflow_names.model,
        mlflow_uri,
        experiment=mlflow_names.experiment,
    )
    assert (v1, v2) == ("1", "2")
    registry.set_alias(mlflow_names.model, "champion", v1, mlflow_uri)
    registry.set_alias(mlflow_names.model, "challenger", v2, mlflow_uri)

    by_version, version = registry.download_model(f"models:/{mlflow_names.model}/1", mlflow_uri)
    assert version == "1" and by_version.algo == "item-item"
    np.testing.assert_array_equal(by_version.predict(*PAIRS), first.predict(*PAIRS))
    by_alias, version = registry.download_model(
        f"models:/{mlflow_names.model}@challenger", mlflow_uri
    )
    assert version == "2" and by_alias.algo == "user-user"
    np.testing.assert_array_equal(by_alias.predict(*PAIRS), second.predict(*PAIRS))
    assert by_alias.recommend("1", n=5)[0] == second.recommend("1", n=5)[0]

    # moving an alias is what promotion does; the old target keeps its other alias
    registry.set_alias(mlflow_names.model, "champion", v2, mlflow_uri)
    assert registry.get_alias_version(mlflow_names.model, "champion", mlflow_uri) == "2"
    assert sorted(registry.get_version_aliases(mlflow_names.model, "2", mlflow_uri)) == [
        "challenger",
        "champion",
    ]
    assert registry.get_version_aliases(mlflow_names.model, "1", mlflow_uri) == []


@pytest.mark.mlflow
def test_missing_versions_and_aliases_are_errors_a_person_can_act_on(
    data: RatingsData, mlflow_uri: str, mlflow_names: MlflowNames
) -> None:
    registry.log_and_register(
        build_model("item-item").fit(data),
        snapshot(data),
        {},
        mlflow_names.model,
        mlflow_uri,
        experiment=mlflow_names.experiment,
    )
    assert registry.get_alias_version(mlflow_names.model, "champion", mlflow_uri) is None
    with pytest.raises(
        registry.ModelNotFoundError, match=rf"models:/{mlflow_names.model}@champion"
    ):
        registry.download_model(f"models:/{mlflow_names.model}@champion", mlflow_uri)
    with pytest.raises(registry.ModelNotFoundError, match=rf"models:/{mlflow_names.model}/7"):
        registry.download_model(f"models:/{mlflow_names.model}/7", mlflow_uri)
    assert registry.get_alias_version("no-such-model", "champion", mlflow_uri) is None


@pytest.mark.mlflow
def test_a_corrupted_artifact_is_refused_with_the_version_named(
    data: RatingsData, mlflow_uri: str, mlflow_names: MlflowNames, tmp_path: Path
) -> None:
    model = build_model("item-item").fit(data)
    version = registry.log_and_register(
        model,
        snapshot(data),
        {},
        mlflow_names.model,
        mlflow_uri,
        experiment=mlflow_names.experiment,
    )
    client = MlflowClient(mlflow_uri, mlflow_uri)
    # overwrite one file of the stored native model through the server, as a bad upload would
    source = client.get_model_version_download_uri(mlflow_names.model, version).rstrip("/")
    repo = get_artifact_repository(f"{source}/{NATIVE_SUBPATH}", tracking_uri=mlflow_uri)
    garbage = tmp_path / "meta.json"
    garbage.write_text("{not json")
    repo.log_artifact(str(garbage))

    with pytest.raises(
        registry.ModelArtifactError, match=rf"{mlflow_names.model} version {version}.*corrupted"
    ):
        registry.download_model(f"models:/{mlflow_names.model}/{version}", mlflow_uri)

    # without the registered checksum the version is refused outright ...
    client.delete_model_version_tag(mlflow_names.model, version, "artifact_sha256")
    with pytest.raises(registry.ModelArtifactError, match=r"no artifact_sha256 tag.*ALLOW"):
        registry.download_model(f"models:/{mlflow_names.model}/{version}", mlflow_uri)
    # ... and when explicitly allowed, loading itself still catches the damage
    with pytest.raises(
        registry.ModelArtifactError, match=rf"version {version}: artifact does not load"
    ):
        registry.download_model(
            f"models:/{mlflow_names.model}/{version}", mlflow_uri, allow_unverified=True
        )


@pytest.mark.mlflow
def test_an_untagged_tampered_version_never_loads(
    data: RatingsData,
    mlflow_uri: str,
    mlflow_names: MlflowNames,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Index arrays out of range, checksum tag removed: refused, and structurally caught even
    when unverified versions are allowed."""
    model = build_model("item-item").fit(data)
    version = registry.log_and_register(
        model,
        snapshot(data),
        {},
        mlflow_names.model,
        mlflow_uri,
        experiment=mlflow_names.experiment,
    )
    client = MlflowClient(mlflow_uri, mlflow_uri)
    source = client.get_model_version_download_uri(mlflow_names.model, version).rstrip("/")
    repo = get_artifact_repository(f"{source}/{NATIVE_SUBPATH}", tracking_uri=mlflow_uri)
    bad = tmp_path / "s_indices.npy"
    np.save(bad, np.full_like(model.S.indices, 10_000), allow_pickle=False)
    repo.log_artifact(str(bad))
    client.delete_model_version_tag(mlflow_names.model, version, "artifact_sha256")
    uri = f"models:/{mlflow_names.model}/{version}"
    with pytest.raises(registry.ModelArtifactError, match="cannot be verified"):
        registry.download_model(uri, mlflow_uri)
    monkeypatch.setenv("MOVIEREC_ALLOW_UNVERIFIED_MODELS", "true")
    with pytest.raises(registry.ModelArtifactError, match="ModelIntegrityError"):
        registry.download_model(uri, mlflow_uri)


def test_a_silent_tracking_server_fails_fast_not_after_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that accepts connections and never answers: MLflow alone would wait 120 s per
    request and retry 7 times; the registry's bounded defaults give up in about 20 s."""
    import socket
    import time

    for key in registry_store.HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(Exception):  # noqa: B017 - any failure, as long as it comes soon
            registry.download_model("models:/anything/1", f"http://127.0.0.1:{port}")
    finally:
        silent.close()
    assert time.monotonic() - started < 45
