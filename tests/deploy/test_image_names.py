"""One image, one name: the chart, local values, operator default, manifests, Dockerfile, workflows and harness agree."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from movierec_operator import constants
from movierec_operator.settings import Settings

from harness import images, images_app

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "movierec"
WORKFLOWS = ROOT / ".github" / "workflows"
UPSTREAM_OWNER = "movierec"  # github.repository_owner of the upstream repository


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def _reference(block: dict[str, Any], default_tag: str = "") -> str:
    return f"{block['repository']}:{block.get('tag') or default_tag}"


def _split(reference: str) -> tuple[str, str]:
    """(repository, tag) of ``repo[:port]/path:tag``; the tag part never contains '/'."""
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        return reference, ""
    return repository, tag


def _workflow_text(name: str) -> str:
    text = (WORKFLOWS / name).read_text()
    return text.replace("${{ github.repository_owner }}", UPSTREAM_OWNER)


def test_chart_default_image_is_the_published_one_at_the_app_version() -> None:
    values = _yaml(CHART / "values.yaml")
    chart = _yaml(CHART / "Chart.yaml")
    assert str(chart["appVersion"]) == _version(), "Chart appVersion must be the package version"
    assert values["image"]["repository"] == images_app.UPSTREAM_APP_REPOSITORY
    assert (values["image"]["tag"] or str(chart["appVersion"])) == _version()


def test_operator_default_image_is_the_chart_default() -> None:
    expected = f"{images_app.UPSTREAM_APP_REPOSITORY}:{_version()}"
    assert expected == constants.DEFAULT_IMAGE
    assert Settings.model_fields["image"].default == expected


def test_local_values_name_the_images_make_images_builds() -> None:
    local = _yaml(CHART / "ci" / "local-values.yaml")
    assert _reference(local["image"]) == images_app.APP_IMAGE
    built = {image.name for image in images.images()}
    infra = {
        key: _reference(block["image"])
        for key, block in local.items()
        if isinstance(block, dict) and isinstance(block.get("image"), dict)
    }
    assert infra, "local values override no infrastructure image"
    for key, reference in infra.items():
        assert reference in built, f"{key}: {reference} is not built by `make images`"


def test_every_chart_image_has_a_local_build_or_is_off_locally() -> None:
    values = _yaml(CHART / "values.yaml")
    local = _yaml(CHART / "ci" / "local-values.yaml")
    for key, block in values.items():
        if not (isinstance(block, dict) and isinstance(block.get("image"), dict)):
            continue
        local_block = local.get(key) or {}
        if local_block.get("enabled") is False:
            continue
        assert "image" in local_block, (
            f"{key}: runs locally but local values keep its upstream image"
        )


@pytest.mark.parametrize("component", ["kafka", "postgresql"])
def test_local_infrastructure_versions_follow_the_chart(component: str) -> None:
    upstream = _yaml(CHART / "values.yaml")[component]["image"]["tag"]
    local = _yaml(CHART / "ci" / "local-values.yaml")[component]["image"]["tag"]
    assert str(local) == str(upstream)


def test_manifests_name_the_one_application_image() -> None:
    found = []
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for match in re.finditer(r"\bimage:\s*[\"']?([^\s\"']+)", path.read_text()):
            reference = match.group(1)
            if "movierec" in reference:
                found.append((path.relative_to(ROOT), reference))
    assert found, "no manifest names a movierec image"
    for path, reference in found:
        repository, tag = _split(reference)
        assert repository == images_app.UPSTREAM_APP_REPOSITORY, f"{path}: {reference}"
        assert tag in {_version(), "latest"}, f"{path}: {reference}"


def _metadata_step(workflow: dict[str, Any]) -> dict[str, Any]:
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("docker/metadata-action@"):
                return dict(step["with"])
    raise AssertionError("images.yml has no docker/metadata-action step")


def test_images_workflow_publishes_the_chart_repository_with_its_tags() -> None:
    workflow = yaml.safe_load(_workflow_text("images.yml"))
    assert workflow["env"]["IMAGE"] == images_app.UPSTREAM_APP_REPOSITORY
    meta = _metadata_step(workflow)
    assert meta["images"] == "${{ env.IMAGE }}"
    tags = meta["tags"].split()
    # `v0.1.0` → `0.1.0`, the form of the chart's appVersion and the operator's default tag.
    assert "type=semver,pattern={{version}}" in tags
    assert "type=sha" in tags
    builds = [
        step["with"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if str(step.get("uses", "")).startswith("docker/build-push-action@")
    ]
    assert [build["file"] for build in builds] == ["Dockerfile"]


def test_no_workflow_builds_a_component_image() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        text = path.read_text()
        assert not re.search(r"\w+/Dockerfile", text), f"{path.name} names a component Dockerfile"
        assert not re.search(r"movierec-(recommender|operator|ingestor|simulator)\b", text), path
    assert not list(ROOT.glob("*/Dockerfile")), "component Dockerfiles are back"


def test_kind_workflow_loads_the_local_image_name() -> None:
    text = (WORKFLOWS / "e2e-kind.yml").read_text()
    assert f"docker build -t {images_app.APP_IMAGE}" in text
    assert f"kind load docker-image {images_app.APP_IMAGE}" in text


def _dockerfile_final_stage() -> dict[str, Any]:
    """ENTRYPOINT, USER, WORKDIR and ENV of the Dockerfile's last stage."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stage = text.split("\nFROM ")[-1]
    found: dict[str, Any] = {"env": {}}
    for line in stage.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENTRYPOINT":
            found["entrypoint"] = json.loads(rest)
        elif instruction in {"USER", "WORKDIR"}:
            found[instruction.lower()] = rest.strip()
        elif instruction == "ENV":
            found["env"].update(item.split("=", 1) for item in shlex.split(rest))
    return found


def test_dockerfile_describes_the_image_make_images_builds() -> None:
    stage = _dockerfile_final_stage()
    app = next(image for image in images.images() if image.name == images_app.APP_IMAGE)
    assert stage["entrypoint"] == list(app.config.entrypoint)
    assert stage["user"] == app.config.user == "10001:10001"
    assert stage["workdir"] == app.config.workdir
    for key in ("PATH", "HOME", "PYTHONUNBUFFERED", "MLFLOW_DISABLE_TELEMETRY"):
        assert stage["env"].get(key) == app.config.env[key], key
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"python -m venv {images_app.APP_VENV}" in dockerfile
    assert f'".[{images_app.APP_EXTRAS}]"' in dockerfile
