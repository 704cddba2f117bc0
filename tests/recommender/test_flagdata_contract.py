"""One flag-data contract: the router's writer and the operator's builder both produce the golden
files in tests/fixtures/flagdata/, and the real LaunchDarkly SDK buckets users the same from either;
the router follows a ConfigMap volume's atomic `..data` symlink swap."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from movierec_operator.builders import build_flag_data
from movierec_recommender.router.assign import Assigner
from movierec_recommender.router.flagdata import build_flags, write_flag_file

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "flagdata"
USERS = range(1000)


def golden_files() -> list[Path]:
    files = sorted(GOLDEN.glob("canary-*-version-*.json"))
    assert files, f"no golden flag data in {GOLDEN}"
    return files


def weight_and_version(path: Path) -> tuple[int, int]:
    _, weight, _, version = path.stem.split("-")
    return int(weight), int(version)


@pytest.mark.parametrize("golden", golden_files(), ids=lambda p: p.stem)
def test_router_writes_the_golden_flag_data(golden: Path) -> None:
    weight, version = weight_and_version(golden)
    built = build_flags({"stable": 100 - weight, "canary": weight}, version=version)
    assert built == json.loads(golden.read_text())


@pytest.fixture
def assigners() -> Iterator[list[Assigner]]:
    made: list[Assigner] = []
    yield made
    for a in made:
        a.close()


@pytest.mark.parametrize("weight", [10, 25, 50])
def test_same_weights_put_every_user_in_the_same_bucket_whoever_wrote_the_file(
    tmp_path: Path, assigners: list[Assigner], weight: int
) -> None:
    router_file = write_flag_file(
        tmp_path / "router" / "flags.json", {"stable": 100 - weight, "canary": weight}
    )
    operator_file = tmp_path / "operator" / "flags.json"
    operator_file.parent.mkdir()
    operator_file.write_text(json.dumps(build_flag_data(weight, version=3)))
    by_router = Assigner(flags_file=str(router_file))
    by_operator = Assigner(flags_file=str(operator_file))
    assigners += [by_router, by_operator]
    tracks = [by_router.track(u) for u in USERS]
    assert tracks == [by_operator.track(u) for u in USERS]
    assert tracks.count("canary") / len(tracks) == pytest.approx(weight / 100, abs=0.05)


def _kubelet_write(volume: Path, data: dict[str, Any], generation: int) -> None:
    """What the kubelet's atomic writer does for a ConfigMap volume: files go into a new
    ``..<timestamp>`` directory, the ``..data`` symlink is swapped to it in one rename, and the
    old directory is deleted. ``flags.json`` itself is a symlink to ``..data/flags.json``."""
    new_dir = volume / f"..2026_12_01_12_00_{generation:02d}.{1000 + generation}"
    new_dir.mkdir()
    (new_dir / "flags.json").write_text(json.dumps(data))
    data_link = volume / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp_link = volume / "..data_tmp"
    tmp_link.symlink_to(new_dir.name)
    tmp_link.rename(data_link)
    if not (volume / "flags.json").is_symlink():
        (volume / "flags.json").symlink_to("..data/flags.json")
    if old:
        for f in (volume / old).iterdir():
            f.unlink()
        (volume / old).rmdir()


def test_router_follows_a_configmap_volume_swap(tmp_path: Path, assigners: list[Assigner]) -> None:
    volume = tmp_path / "flags-volume"
    volume.mkdir()
    _kubelet_write(volume, build_flag_data(0, version=1), generation=1)
    assigner = Assigner(flags_file=str(volume / "flags.json"), poll_seconds=0.05)
    assigners.append(assigner)
    assert {assigner.track(u) for u in USERS} == {"stable"}

    _kubelet_write(volume, build_flag_data(100, version=2), generation=2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and assigner.track(1) != "canary":
        time.sleep(0.05)
    assert {assigner.track(u) for u in USERS} == {"canary"}  # the per-user cache was dropped too

    _kubelet_write(volume, build_flag_data(0, version=3), generation=3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and assigner.track(1) != "stable":
        time.sleep(0.05)
    assert {assigner.track(u) for u in USERS} == {"stable"}
