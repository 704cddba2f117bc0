"""Which MLflow tracking store to talk to, and scoped use of MLflow's process-global fluent API."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_DB = Path("var") / "mlflow.db"
DEFAULT_ARTIFACTS = Path("var") / "mlartifacts"
DEFAULT_EXPERIMENT = "movierec"
_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# MLflow's own defaults wait 120 s per request and retry 7 times with doubling backoff: a dead
# tracking server would hold a model load or a retrain for many minutes. Ours: 5 s, 2 retries
# (about 20 s in all). The same variables set in the environment win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def bound_http_calls() -> None:
    """Give MLflow's HTTP client bounded timeouts and retries unless the environment sets them."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def default_tracking_uri() -> str:
    """The embedded store: a SQLite file under ./var, as an absolute path from the working dir."""
    return f"sqlite:///{DEFAULT_DB.absolute()}"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The explicit URI, else ``MLFLOW_TRACKING_URI``, else the embedded SQLite store."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    DEFAULT_DB.absolute().parent.mkdir(parents=True, exist_ok=True)
    return default_tracking_uri()


def client(tracking_uri: str | None = None) -> MlflowClient:
    """A client whose tracking and registry stores are both ``tracking_uri`` (resolved)."""
    from mlflow import MlflowClient

    bound_http_calls()
    uri = resolve_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def fluent_tracking(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's global fluent API (needed by ``log_model``) at ``tracking_uri``, then restore.

    MLflow keeps the fluent URIs in module globals mirrored into environment variables; both are
    restored afterwards so callers that pass different URIs (tests, the demo) stay independent.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    bound_http_calls()
    saved_env = {key: os.environ.get(key) for key in _URI_ENV}
    saved_tracking = tracking_utils._tracking_uri
    saved_registry = registry_utils._registry_uri
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]  # None unsets it
        registry_utils._registry_uri = saved_registry
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def experiment_id(tracking_uri: str, name: str = DEFAULT_EXPERIMENT) -> str:
    """The id of experiment ``name``, created on first use.

    On the embedded SQLite store the artifacts go to ./var/mlartifacts (absolute); an MLflow
    server decides its own artifact location.
    """
    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if tracking_uri == default_tracking_uri():
        location = DEFAULT_ARTIFACTS.absolute().as_uri()
    try:
        return str(mlflow_client.create_experiment(name, artifact_location=location))
    except MlflowException:
        # another process created it between our lookup and create: use theirs
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def git_commit(cwd: Path | None = None) -> str | None:
    """The commit of the code that trains: ``MOVIEREC_GIT_COMMIT`` (images), else ``git``, else None."""
    from_env = os.environ.get("MOVIEREC_GIT_COMMIT")
    if from_env:
        return from_env
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None
