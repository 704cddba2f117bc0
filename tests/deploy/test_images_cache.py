"""`make images` caches the app image by a hash of exactly the files that go into the project wheel."""

from __future__ import annotations

import zipfile
from pathlib import Path

from harness import images


def test_the_hashed_files_are_the_wheel_contents(tmp_path: Path) -> None:
    wheel = images.build_project_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        packaged = {
            name for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")
        }
    hashed = {path.as_posix() for path in images.project_files()}
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
    assert app.name == images.APP_IMAGE
    assert app.key() == app.key()
    assert app.slug == "movierec-dev"
