"""MLflow adapter: log and register recommenders, download verified versions, move aliases."""

from movierec_recommender.registry.download import (
    ModelArtifactError,
    ModelDownloadError,
    download_model,
)
from movierec_recommender.registry.runs import (
    LoggedRun,
    log_and_register,
    log_run,
    metric_key,
    register_version,
)
from movierec_recommender.registry.store import default_tracking_uri, resolve_tracking_uri
from movierec_recommender.registry.versions import (
    CHALLENGER,
    CHAMPION,
    ModelNotFoundError,
    ModelRef,
    delete_alias,
    get_alias_version,
    get_version_aliases,
    get_version_tags,
    parse_model_uri,
    resolve_version,
    set_alias,
    set_version_tags,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "LoggedRun",
    "ModelArtifactError",
    "ModelDownloadError",
    "ModelNotFoundError",
    "ModelRef",
    "default_tracking_uri",
    "delete_alias",
    "download_model",
    "get_alias_version",
    "get_version_aliases",
    "get_version_tags",
    "log_and_register",
    "log_run",
    "metric_key",
    "parse_model_uri",
    "register_version",
    "resolve_tracking_uri",
    "resolve_version",
    "set_alias",
    "set_version_tags",
]
