"""Artifacts that cannot crash a server: mutated saved models, each loaded in a subprocess through
the serving load path, are refused while the old model keeps serving."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from movierec_recommender.models import load_model
from movierec_recommender.models.integrity import ModelIntegrityError

from harness.appservice import train_model

Mutation = Callable[[np.ndarray], np.ndarray]


def _set(index: int, value: object) -> Mutation:
    def mutate(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[index] = value
        return a

    return mutate


def _swap_middle(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    mid = len(a) // 2
    a[mid], a[mid + 1] = a[mid + 1] + 5, a[mid] - 5
    return a


# (saved array, how it is damaged)
MUTATIONS: dict[str, tuple[str, Mutation]] = {
    "z_indices past the last column": ("z_indices", _set(0, 10_000)),
    "s_indices negative": ("s_indices", _set(-1, -7)),
    "r_indices huge": ("r_indices", _set(3, 2**31 - 1)),
    "z_indptr not monotone": ("z_indptr", _swap_middle),
    "s_indptr ends past the data": ("s_indptr", lambda a: a + np.r_[np.zeros(len(a) - 1), 50]),
    "z_indptr one short": ("z_indptr", lambda a: a[:-1]),
    "z_indices as floats": ("z_indices", lambda a: a.astype(np.float64)),
    "x_data shorter than z_indices": ("x_data", lambda a: a[:-3]),
    "z_data NaN": ("z_data", _set(5, np.nan)),
    "s_data infinite": ("s_data", _set(2, np.inf)),
    "b_item infinite": ("b_item", _set(0, -np.inf)),
    "b_user one short": ("b_user", lambda a: a[:-1]),
    "users unsorted": ("users", lambda a: a[::-1].copy()),
    "items repeated": ("items", _set(1, "")),
    "item_counts negative": ("item_counts", _set(0, -3)),
    "s_indices unsorted within a row": ("s_indices", lambda a: np.r_[a[1::-1], a[2:]]),
}

# The serving load path in a fresh interpreter: load the good model, then the damaged one;
# report whether the damaged one was swapped in and what the old one still answers.
_SCRIPT = """
import json, sys
from movierec_recommender.serving.app import create_app
from movierec_recommender.serving.settings import ServingSettings

good, bad = sys.argv[1], sys.argv[2]
app = create_app(ServingSettings(model=good, model_version="good"), start=False)
holder = app.extensions["movierec"].holder
assert holder.load(), holder.last_error
swapped = holder.load(bad)
client = app.test_client()
statuses = [client.get(f"/recommend/{u}").status_code for u in ("0", "1", "5", "999999")]
print(json.dumps({"swapped": swapped, "version": holder.current.version,
                  "error": holder.last_error, "statuses": statuses}))
"""


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("integrity") / "good", n_users=120, n_movies=40)


def _damaged(good: Path, folder: Path, name: str) -> Path:
    array, mutate = MUTATIONS[name]
    out = folder / "bad"
    shutil.copytree(good, out)
    original = np.load(good / f"{array}.npy", allow_pickle=False)
    np.save(out / f"{array}.npy", mutate(original), allow_pickle=False)
    return out


def test_the_good_model_passes(good: Path) -> None:
    load_model(good)  # no ModelIntegrityError


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_damaged_model_is_refused_in_process(good: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelIntegrityError):
        load_model(_damaged(good, tmp_path, name))


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_damaged_model_never_crashes_the_server_and_the_old_one_serves(
    good: Path, tmp_path: Path, name: str
) -> None:
    bad = _damaged(good, tmp_path, name)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(good), str(bad)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["swapped"] is False, report
    assert report["version"] == "good"
    assert "ModelIntegrityError" in report["error"]
    assert report["statuses"] == [200, 200, 200, 200]
