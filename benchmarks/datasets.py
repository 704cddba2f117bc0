"""Real public rating data for benchmarks and tests, fetched from a package registry, never committed.

MovieLens 100K (GroupLens; 100,000 ratings, 943 users, 1,682 movies, 1997-98) ships inside the
RecBole wheel on PyPI (`recbole/dataset_example/ml-100k/ml-100k.inter`). We fetch that wheel with
`pip download --no-deps`, check its SHA-256, and cache the ratings as CSV under
~/.cache/movierec/datasets/ (override with MOVIEREC_DATASETS_DIR).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ML100K_WHEEL = "recbole==1.2.1"
ML100K_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
ML100K_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "movierec" / "datasets"
    return Path(os.environ.get("MOVIEREC_DATASETS_DIR", default))


def movielens_100k(download: bool = True) -> Path:
    """Path to `ml-100k.csv` (`user_id,movie_id,rating,timestamp`), fetching it once if needed."""
    target = cache_dir() / "ml-100k.csv"
    if target.exists():
        return target
    if not download:
        raise FileNotFoundError(f"{target} not cached; call movielens_100k(download=True)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                tmp,
                ML100K_WHEEL,
            ],
            check=True,
        )
        (wheel,) = Path(tmp).glob("recbole-*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != ML100K_WHEEL_SHA256:
            raise RuntimeError(f"{wheel.name}: sha256 {digest} != {ML100K_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as zf:
            lines = zf.read(ML100K_MEMBER).decode("utf-8").splitlines()
    # RecBole's atomic-file header is `user_id:token\titem_id:token\trating:float\ttimestamp:float`
    rows = ["user_id,movie_id,rating,timestamp"]
    rows += [",".join(line.split("\t")) for line in lines[1:] if line.strip()]
    tmp_target = target.with_suffix(".tmp")
    tmp_target.write_text("\n".join(rows) + "\n")
    tmp_target.replace(target)
    return target


if __name__ == "__main__":
    print(movielens_100k())
