"""spec.image is restricted to the registries/repositories the operator's administrator allows."""

from __future__ import annotations

import pytest
from movierec_operator import images

DEFAULT = "ghcr.io/movierec/movierec:0.1.0"


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        ("ghcr.io/movierec/movierec:0.1.0", "ghcr.io/movierec/movierec"),
        ("ghcr.io/movierec/movierec@sha256:abc", "ghcr.io/movierec/movierec"),
        ("registry:5000/team/app", "registry:5000/team/app"),
        ("registry:5000/team/app:1", "registry:5000/team/app"),
        ("movierec:test", "movierec"),
    ],
)
def test_repository_strips_tag_and_digest_not_the_port(image: str, repo: str) -> None:
    assert images.repository(image) == repo


@pytest.mark.parametrize(
    ("image", "allowed", "ok"),
    [
        # default: the default image's repository, any tag or digest
        ("ghcr.io/movierec/movierec:0.2.0", (), True),
        ("ghcr.io/movierec/movierec@sha256:abc", (), True),
        ("ghcr.io/movierec/movierec-evil:1", (), False),
        ("ghcr.io/movierec/other:1", (), False),
        ("docker.io/library/busybox:latest", (), False),
        # a registry/organisation prefix
        ("ghcr.io/movierec/other:1", ("ghcr.io/movierec/",), True),
        ("ghcr.io/movierecx/other:1", ("ghcr.io/movierec/",), False),
        # one exact reference
        ("movierec.local/movierec:dev", ("movierec.local/movierec:dev",), True),
        ("movierec.local/movierec:other", ("movierec.local/movierec:dev",), False),
        # several
        ("movierec.local/movierec:dev", ("ghcr.io/movierec/", "movierec.local/movierec"), True),
    ],
)
def test_spec_image_is_allowed_only_under_a_prefix(
    image: str, allowed: tuple[str, ...], ok: bool
) -> None:
    refused = images.refusal(image, allowed, DEFAULT)
    assert (refused is None) == ok
    if refused:
        assert image in refused and "MOVIEREC_OPERATOR_ALLOWED_IMAGE_PREFIXES" in refused


def test_no_spec_image_means_the_operators_own() -> None:
    assert images.refusal(None, ("somewhere/",), DEFAULT) is None
