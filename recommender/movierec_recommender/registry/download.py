"""Fetch a registered version's native model dir (no pyfunc on the serving path) and verify it."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from movierec_recommender.registry.pyfunc import NATIVE_SUBPATH
from movierec_recommender.registry.runs import TAG_ARTIFACT_SHA256, dir_sha256
from movierec_recommender.registry.store import client, resolve_tracking_uri
from movierec_recommender.registry.versions import parse_model_uri, resolve_version

if TYPE_CHECKING:
    from movierec_recommender.models import Recommender

log = logging.getLogger(__name__)

PROBE_USER = "__movierec_probe_user__"
# Loading a version that has no registered checksum is refused unless this is "true": such a
# version cannot be told apart from one whose files were swapped after registration.
ALLOW_UNVERIFIED_ENV = "MOVIEREC_ALLOW_UNVERIFIED_MODELS"


def _allow_unverified_default() -> bool:
    return os.environ.get(ALLOW_UNVERIFIED_ENV, "").strip().lower() in ("1", "true", "yes")


class ModelArtifactError(RuntimeError):
    """A registered version's artifact is missing, corrupted or does not load and answer."""


class ModelDownloadError(ModelArtifactError):
    """The artifact could not be fetched: maybe broken, maybe a passing storage or network fault."""


def download_model(
    uri: str,
    tracking_uri: str | None = None,
    *,
    dst_dir: str | Path | None = None,
    allow_unverified: bool | None = None,
) -> tuple[Recommender, str]:
    """Load ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``; returns (model, version).

    The native dir is checked against the checksum recorded at registration, loaded with
    ``models.load_model`` and asked a probe prediction. ``dst_dir`` keeps the downloaded files
    (default: a temporary dir removed once the model is loaded). A version without a recorded
    checksum is refused unless `allow_unverified` (default: the `MOVIEREC_ALLOW_UNVERIFIED_MODELS`
    variable) says otherwise.
    """
    import mlflow.artifacts

    from movierec_recommender.models import load_model

    ref = parse_model_uri(uri)
    resolved = resolve_tracking_uri(tracking_uri)
    version = resolve_version(ref, resolved)
    what = f"model {ref.name} version {version}"
    mlflow_client = client(resolved)
    model_version = mlflow_client.get_model_version(ref.name, version)
    expected_sha = model_version.tags.get(TAG_ARTIFACT_SHA256)
    if allow_unverified is None:
        allow_unverified = _allow_unverified_default()
    if expected_sha is None and not allow_unverified:
        raise ModelArtifactError(
            f"{what}: no {TAG_ARTIFACT_SHA256} tag, so its files cannot be verified; register "
            f"it again, or set {ALLOW_UNVERIFIED_ENV}=true to load unverified versions"
        )
    if expected_sha is None:
        log.warning("%s has no registered checksum: loading it unverified (allowed)", what)
    if model_version.model_id:
        # ask the tracking store directly: no process-global MLflow state on the serving path
        source = mlflow_client.get_logged_model(model_version.model_id).artifact_location
    else:  # registered from a plain run artifact path
        source = mlflow_client.get_model_version_download_uri(ref.name, version)
    source = source.rstrip("/")

    work = Path(dst_dir) if dst_dir is not None else Path(tempfile.mkdtemp(prefix="movierec-dl-"))
    try:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{source}/{NATIVE_SUBPATH}",
                    dst_path=str(work),
                    tracking_uri=resolved,
                )
            )
        except Exception as exc:
            raise ModelDownloadError(
                f"{what}: cannot download its native artifact from {source}: {exc}"
            ) from exc
        if expected_sha is not None and dir_sha256(local) != expected_sha:
            raise ModelArtifactError(
                f"{what}: artifact checksum mismatch (registered {expected_sha[:12]}…, "
                f"downloaded {dir_sha256(local)[:12]}…): the stored artifact is corrupted"
            )
        try:
            # memory-map only files that stay: a temporary download is read into memory
            model = load_model(local, mmap=dst_dir is not None)
            _probe(model)
        except Exception as exc:
            raise ModelArtifactError(
                f"{what}: artifact does not load or answer: {type(exc).__name__}: {exc}"
            ) from exc
    finally:
        if dst_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    log.info("loaded %s (%s) from %s", what, model.algo, source)
    return model, version


def _probe(model: Recommender) -> None:
    """A loaded model must answer a prediction and a recommendation (unknown ids: fallbacks)."""
    import numpy as np

    movies = model.popular(1) or ["__movierec_probe_movie__"]
    prediction = np.asarray(model.predict(np.array([PROBE_USER]), np.array(movies[:1])))
    if prediction.shape != (1,) or not np.all(np.isfinite(prediction)):
        raise ValueError(f"probe prediction is {prediction!r}, expected one finite number")
    items, _scores = model.recommend(PROBE_USER, n=5)
    if len(items) == 0:
        raise ValueError("probe recommendation for an unknown user is empty")
