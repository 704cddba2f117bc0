"""The shared answer cache trusts only a private folder and files matching their checksums:
planted or tampered answers are never served."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from movierec_recommender.models import load_model
from movierec_recommender.serving.materialize import AnswerTable, cache_key, shared_table

from harness.appservice import train_model

N = 10
KEY = cache_key("model", "1", "item-item", str(N))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> object:
    return load_model(train_model(tmp_path_factory.mktemp("cache") / "m", n_users=60, n_movies=30))


def _plant(folder: Path, model: object) -> AnswerTable:
    """What an attacker would leave: a complete-looking table answering 'evil' for everyone."""
    users = np.sort(np.asarray(model.users).astype(str))  # type: ignore[attr-defined]
    table = AnswerTable(
        users,
        np.zeros((len(users), N), dtype=np.int32),
        np.ones((len(users), N), dtype=np.float32),
        np.array(["evil+movie+2000"]),
    )
    folder.mkdir(parents=True)
    table.save(folder)
    (folder / ".complete").write_text("")
    return table


def _served_movies(table: AnswerTable | None) -> set[str]:
    assert table is not None
    return {m for u in table.users.tolist()[:20] for m in (table.get(u) or ((), ()))[0]}


def test_a_new_cache_folder_is_private(tmp_path: Path, model: object) -> None:
    root = tmp_path / "answers"
    table = shared_table(model, N, KEY, root)
    assert table is not None and len(table) == 60
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700
    # the second worker reads the same verified files
    again = shared_table(model, N, KEY, root)
    assert again is not None and _served_movies(again) == _served_movies(table)


def test_answers_planted_in_a_world_writable_folder_are_not_served(
    tmp_path: Path, model: object
) -> None:
    root = tmp_path / "movierec-answers"
    root.mkdir()
    os.chmod(root, 0o777)  # what /tmp/movierec-answers looked like to every local user
    _plant(root / KEY, model)
    table = shared_table(model, N, KEY, root)
    assert "evil+movie+2000" not in _served_movies(table)


def test_planted_or_tampered_files_in_the_private_folder_are_rebuilt(
    tmp_path: Path, model: object
) -> None:
    root = tmp_path / "answers"
    root.mkdir(mode=0o700)
    _plant(root / KEY, model)  # a manifest without checksums
    table = shared_table(model, N, KEY, root)
    assert "evil+movie+2000" not in _served_movies(table)
    honest = _served_movies(table)
    # a file changed after the manifest was written
    codes = np.load(root / KEY / "codes.npy")
    np.save(root / KEY / "codes.npy", np.zeros_like(codes))
    again = shared_table(model, N, KEY, root)
    assert _served_movies(again) == honest


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the folder to another user")
def test_a_folder_owned_by_another_user_is_not_trusted(tmp_path: Path, model: object) -> None:
    root = tmp_path / "answers"
    root.mkdir(mode=0o700)
    _plant(root / KEY, model)
    os.chown(root, 4242, 4242)
    table = shared_table(model, N, KEY, root)
    assert "evil+movie+2000" not in _served_movies(table)


def test_a_symlinked_folder_is_not_trusted(tmp_path: Path, model: object) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    _plant(real / KEY, model)
    link = tmp_path / "answers"
    link.symlink_to(real)
    table = shared_table(model, N, KEY, link)
    assert "evil+movie+2000" not in _served_movies(table)
