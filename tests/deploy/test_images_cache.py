"""`make images` caches the app image by a hash of exactly the files that go into the project wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from harness import images, images_app
from harness.images_layers import overlay_upper_to_layer


def test_the_hashed_files_are_the_wheel_contents(tmp_path: Path) -> None:
    wheel = images_app.build_project_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        packaged = {
            name for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")
        }
    hashed = {path.as_posix() for path in images_app.project_files()}
    # the wheel stores `recommender/movierec_recommender/x.py` as `movierec_recommender/x.py`
    hashed_in_wheel = {
        path if path.startswith("movierec/") else path.split("/", 1)[1]
        for path in hashed
        if "/" in path
    }
    assert packaged, f"{wheel.name} is empty"
    assert packaged <= hashed_in_wheel, f"not hashed: {sorted(packaged - hashed_in_wheel)[:10]}"


def test_the_key_is_stable_and_names_the_archive() -> None:
    app = images.images()[0]
    assert app.name == images_app.APP_IMAGE
    assert app.key() == app.key()
    assert app.slug == "movierec-dev"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting an overlay needs root")
def test_overlay_deletions_become_oci_whiteouts(tmp_path: Path) -> None:
    lower, upper, work, merged = (tmp_path / name for name in ("l", "u", "w", "m"))
    for folder in (lower / "gone-dir", upper, work, merged):
        folder.mkdir(parents=True)
    (lower / "gone-file").write_text("x")
    (lower / "gone-dir" / "old").write_text("x")
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, merged], check=True)
    try:
        (merged / "gone-file").unlink()
        shutil.rmtree(merged / "gone-dir")
        (merged / "gone-dir").mkdir()  # replaced: overlayfs marks it opaque
        (merged / "new").write_text("y")
    finally:
        subprocess.run(["umount", merged], check=True)
    overlay_upper_to_layer(upper)
    names = sorted(str(path.relative_to(upper)) for path in upper.rglob("*"))
    assert names == [".wh.gone-file", "gone-dir", "gone-dir/.wh..wh..opq", "new"]
