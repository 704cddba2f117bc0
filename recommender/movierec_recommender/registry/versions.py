"""Model versions by name: parse ``models:/`` URIs, resolve aliases, read and write version tags."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from movierec_ingestor.errors import BadInputError

from movierec_recommender.registry.store import client

CHAMPION = "champion"
CHALLENGER = "challenger"

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_\-]+))$")


class ModelNotFoundError(BadInputError, LookupError):
    """The model, version or alias a person asked for does not exist (the CLI exits 2)."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""

    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return (
            f"models:/{self.name}/{self.version}"
            if self.version
            else f"models:/{self.name}@{self.alias}"
        )


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``; anything else is bad input."""
    match = _URI.match(uri.strip())
    if not match:
        raise BadInputError(
            f"not a model URI: {uri!r} (expected models:/NAME/VERSION or models:/NAME@ALIAS)"
        )
    return ModelRef(match["name"], match["version"], match["alias"])


def resolve_version(ref: ModelRef, tracking_uri: str | None = None) -> str:
    """The version number ``ref`` points at now; ModelNotFoundError when it points nowhere."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking_uri)
    try:
        if ref.alias is not None:
            return str(mlflow_client.get_model_version_by_alias(ref.name, ref.alias).version)
        return str(mlflow_client.get_model_version(ref.name, str(ref.version)).version)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            raise ModelNotFoundError(
                f"{ref} does not exist in the registry: {exc.message}"
            ) from exc
        raise


def get_alias_version(name: str, alias: str, tracking_uri: str | None = None) -> str | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist."""
    try:
        return resolve_version(ModelRef(name, alias=alias), tracking_uri)
    except ModelNotFoundError:
        return None


def set_alias(name: str, alias: str, version: str, tracking_uri: str | None = None) -> None:
    """Point ``alias`` of model ``name`` at ``version`` (moving it if it pointed elsewhere)."""
    client(tracking_uri).set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str, tracking_uri: str | None = None) -> None:
    """Remove ``alias`` from model ``name``."""
    client(tracking_uri).delete_registered_model_alias(name, alias)


def set_version_tags(
    name: str, version: str, tags: Mapping[str, str], tracking_uri: str | None = None
) -> None:
    """Set (or overwrite) tags on one model version."""
    mlflow_client = client(tracking_uri)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, str(value))


def get_version_tags(name: str, version: str, tracking_uri: str | None = None) -> dict[str, str]:
    """All tags of one model version."""
    return dict(client(tracking_uri).get_model_version(name, str(version)).tags)


def get_version_aliases(name: str, version: str, tracking_uri: str | None = None) -> list[str]:
    """The aliases pointing at one model version."""
    return list(client(tracking_uri).get_model_version(name, str(version)).aliases)
