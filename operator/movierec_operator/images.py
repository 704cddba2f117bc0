"""Which images a RecommenderModel may run: ``spec.image`` checked against the allowed prefixes."""

from __future__ import annotations

from collections.abc import Sequence


def repository(image: str) -> str:
    """``registry/path/name`` of an image reference, without its tag or digest."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name  # a colon before the last "/" is a port


def allowed_by(image: str, prefix: str) -> bool:
    """``prefix`` ending in "/" allows every repository under it; otherwise it names one
    repository (any tag or digest of it), so "ghcr.io/a/app" does not allow "ghcr.io/a/app-x"."""
    if prefix.endswith("/"):
        return image.startswith(prefix) and len(image) > len(prefix)
    return repository(image) == repository(prefix) and (
        prefix == repository(prefix) or image == prefix
    )


def effective_prefixes(allowed: Sequence[str], default_image: str) -> tuple[str, ...]:
    """The configured prefixes, or the operator's default image's repository when none are."""
    return tuple(allowed) or (repository(default_image),)


def refusal(image: str | None, allowed: Sequence[str], default_image: str) -> str | None:
    """Why ``spec.image`` may not run (``None``: it may, or the spec names no image)."""
    if image is None:
        return None
    prefixes = effective_prefixes(allowed, default_image)
    if any(allowed_by(image, p) for p in prefixes):
        return None
    return (
        f"spec.image {image!r} is not allowed: this operator runs only images under "
        f"{', '.join(prefixes)} (MOVIEREC_OPERATOR_ALLOWED_IMAGE_PREFIXES). Remove spec.image "
        "to use the default image, or ask the cluster's administrator to allow it"
    )
