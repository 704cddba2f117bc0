"""Log a trained recommender as an MLflow run (params, metrics, lineage, commit, pyfunc model) and
register it as a model version tagged with its lineage and metrics."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from movierec_recommender.registry.pyfunc import NATIVE_KEY, input_example, signature
from movierec_recommender.registry.store import (
    DEFAULT_EXPERIMENT,
    client,
    experiment_id,
    fluent_tracking,
    git_commit,
    resolve_tracking_uri,
)

log = logging.getLogger(__name__)

# models from code: MLflow stores this file with the model instead of a cloudpickled object
_ENTRY = Path(__file__).with_name("pyfunc_entry.py")

MODEL_NAME_IN_RUN = "model"
TAG_ALGO = "algo"
TAG_GIT_COMMIT = "git_commit"
TAG_ARTIFACT_SHA256 = "artifact_sha256"
LINEAGE_PREFIX = "lineage."
METRIC_PREFIX = "metric."


class SavableModel(Protocol):
    """What the registry needs from a recommender (``models.Recommender`` satisfies it)."""

    @property
    def algo(self) -> str: ...

    @property
    def config(self) -> BaseModel: ...

    def save(self, path: str | Path) -> Any: ...


@dataclass(frozen=True)
class LoggedRun:
    """One logged training run: where its model lives and what it scored."""

    run_id: str
    model_uri: str
    model_id: str
    algo: str
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)


def metric_key(name: str) -> str:
    """MLflow metric names cannot hold ``@``: ``ndcg@10`` is logged as ``ndcg_at_10``."""
    return name.replace("@", "_at_")


def flatten_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dicts as flat ``a.b`` MLflow params (string values)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def lineage_tags(lineage: BaseModel | Mapping[str, Any]) -> dict[str, str]:
    """``lineage.<field>`` tags from a lineage model or mapping (None values left out)."""
    values = lineage.model_dump(mode="json") if isinstance(lineage, BaseModel) else dict(lineage)
    return {
        f"{LINEAGE_PREFIX}{k}": str(v) for k, v in flatten_params(values).items() if v != "None"
    }


def metric_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    """``metric.<name>`` tags, so a version's scores show next to it in the registry."""
    return {f"{METRIC_PREFIX}{metric_key(k)}": repr(float(v)) for k, v in metrics.items()}


def dir_sha256(path: Path) -> str:
    """A sha256 over every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("mlflow", "numpy", "scipy", "pandas", "pydantic"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def log_run(
    model: SavableModel,
    lineage: BaseModel | Mapping[str, Any],
    metrics: Mapping[str, float],
    *,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> LoggedRun:
    """One MLflow run: the model's config as params, metrics, lineage and commit as tags, and the
    model as a pyfunc with a signature whose artifact is the native model dir. ``params`` adds
    settings of the caller (e.g. the pipeline's config) next to the model's own."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    run_tags = {TAG_ALGO: model.algo, **lineage_tags(lineage), **(tags or {})}
    commit = git_commit()
    if commit:
        run_tags[TAG_GIT_COMMIT] = commit
        run_tags["mlflow.source.git.commit"] = commit
    all_params = {
        "algo": model.algo,
        **flatten_params(model.config.model_dump(mode="json")),
        **flatten_params(params or {}),
    }
    clean_metrics = {metric_key(k): float(v) for k, v in metrics.items()}

    exp_id = experiment_id(uri, experiment)
    with tempfile.TemporaryDirectory(prefix="movierec-model-") as tmp:
        native = Path(tmp) / NATIVE_KEY
        model.save(native)
        run_tags[TAG_ARTIFACT_SHA256] = dir_sha256(native)
        with (
            fluent_tracking(uri),
            # MLflow prints run links on stdout, which belongs to the CLI's result line
            contextlib.redirect_stdout(sys.stderr),
            mlflow.start_run(
                experiment_id=exp_id, run_name=run_name or model.algo, tags=run_tags
            ) as run,
        ):
            mlflow.log_params(all_params)
            mlflow.log_metrics(clean_metrics)
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                python_model=str(_ENTRY),
                artifacts={NATIVE_KEY: str(native)},
                signature=signature(),
                input_example=input_example(model),
                pip_requirements=_pip_requirements(),
            )
    log.info("logged run %s (%s) to %s", run.info.run_id, model.algo, uri)
    return LoggedRun(
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        model_id=info.model_id,
        algo=model.algo,
        metrics=clean_metrics,
        tags=run_tags,
    )


def register_version(
    run: LoggedRun,
    name: str,
    *,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Register ``run``'s model as a new version of ``name``, tagged with lineage and metrics."""
    uri = resolve_tracking_uri(tracking_uri)
    mlflow_client = client(uri)
    version_tags = {
        **{k: v for k, v in run.tags.items() if not k.startswith("mlflow.")},
        **metric_tags(run.metrics),
        "run_id": run.run_id,
        **(tags or {}),
    }
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    rows = run.tags.get(f"{LINEAGE_PREFIX}rows", "?")
    # a SQL registry looks the logged model up through the fluent tracking store: point it here
    with fluent_tracking(uri):
        version = mlflow_client.create_model_version(
            name,
            source=run.model_uri,
            run_id=run.run_id,
            tags=version_tags,
            description=f"{run.algo} trained on {rows} ratings",
            model_id=run.model_id,
        )  # waits until the version is READY
    if version.status != "READY":
        raise RuntimeError(f"model {name} version {version.version} is {version.status}")
    log.info("registered %s version %s from run %s", name, version.version, run.run_id)
    return str(version.version)


def log_and_register(
    model: SavableModel,
    lineage: BaseModel | Mapping[str, Any],
    metrics: Mapping[str, float],
    name: str,
    tracking_uri: str | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """Log ``model`` as a run and register it as a new version of ``name``; returns the version."""
    run = log_run(
        model, lineage, metrics, tracking_uri=tracking_uri, experiment=experiment, tags=tags
    )
    return register_version(run, name, tracking_uri=tracking_uri)
