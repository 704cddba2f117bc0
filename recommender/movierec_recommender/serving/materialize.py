"""Answers for every known user, computed once per model version and shared by the workers.

A kNN answer costs milliseconds; a table lookup costs microseconds. The table is built in
batches with the model's vectorised `recommend_batch`, written to a cache folder under a file
lock (the first worker builds, the others wait and memory-map it), and consulted before the
model. Users missing from it (a model without a user vocabulary, a table still building) are
computed on demand within the request budget.

The cache folder is trusted only when it is private: a real directory (no symlink) owned by this
process's user with no group or other permissions (created 0700). Each table's `.complete`
manifest holds the SHA-256 of its files; a table whose files do not match, or whose codes fall
outside its vocabulary, is rebuilt rather than served. Anything else builds the table in the
worker without sharing it: answers planted by another local user are never served.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_FILES = ("users", "codes", "scores", "vocab")
_MANIFEST = ".complete"


class UntrustedCacheError(RuntimeError):
    """The cache folder is not private to this user, or a table in it fails its checksums."""


class AnswerTable:
    """Sorted user ids -> top-n (movie codes into `vocab`, scores)."""

    def __init__(
        self, users: np.ndarray, codes: np.ndarray, scores: np.ndarray, vocab: np.ndarray
    ) -> None:
        # plain ndarray views of the memory maps: the memmap subclass costs per indexing
        self.users, self.codes = np.asarray(users), np.asarray(codes)
        self.scores, self.vocab = np.asarray(scores), np.asarray(vocab)
        self._row = {u: i for i, u in enumerate(self.users.tolist())}
        self._vocab = self.vocab.tolist()

    def __len__(self) -> int:
        return len(self.users)

    def get(self, user_id: str) -> tuple[tuple[str, ...], tuple[float, ...]] | None:
        pos = self._row.get(user_id)
        if pos is None:
            return None
        vocab = self._vocab
        codes = self.codes[pos].tolist()
        scores = self.scores[pos].tolist()
        ids = tuple(vocab[c] for c in codes if c >= 0)
        return ids, tuple(s for c, s in zip(codes, scores, strict=True) if c >= 0)

    def save(self, folder: Path) -> None:
        for name in _FILES:
            np.save(folder / f"{name}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> AnswerTable:
        arrays = [np.load(folder / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in _FILES]
        users, codes, scores, vocab = arrays
        rows = users.shape[0]
        if (
            users.ndim != 1
            or codes.ndim != 2
            or codes.shape != scores.shape
            or codes.shape[0] != rows
            or vocab.ndim != 1
            or codes.dtype.kind not in "iu"
            or (codes.size and (codes.min() < -1 or codes.max() >= len(vocab)))
        ):
            raise UntrustedCacheError(f"{folder}: answer table arrays are inconsistent")
        return cls(*arrays)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(folder: Path) -> None:
    digests = {n: _digest(folder / f"{n}.npy") for n in _FILES}
    (folder / _MANIFEST).write_text(json.dumps(digests))


def _verified(folder: Path) -> bool:
    """True when every file matches the checksum its manifest recorded."""
    try:
        digests = json.loads((folder / _MANIFEST).read_text())
        return isinstance(digests, dict) and all(
            digests.get(n) == _digest(folder / f"{n}.npy") for n in _FILES
        )
    except (OSError, ValueError):
        return False


def private_dir(path: str | Path) -> Path:
    """`path` as a directory only this user can use: created 0700, or checked to be one.

    Raises UntrustedCacheError for a symlink, a non-directory, another owner, or any group or
    other permission bit: a folder someone else can write to can hold planted answers.
    """
    root = Path(path)
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700, parents=True)
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode):
        raise UntrustedCacheError(f"answer cache {root} is not a directory (or is a symlink)")
    if info.st_uid != os.geteuid():
        raise UntrustedCacheError(
            f"answer cache {root} belongs to uid {info.st_uid}, not to this user ({os.geteuid()})"
        )
    if info.st_mode & 0o022 == 0 and info.st_mode & 0o077:
        # ours and never writable by others (an older default): nothing could be planted
        os.chmod(root, 0o700)
    elif info.st_mode & 0o077:
        raise UntrustedCacheError(
            f"answer cache {root} has mode {stat.S_IMODE(info.st_mode):o}: others could plant "
            "answers there (it must be 0700)"
        )
    return root


def known_users(model: Any) -> np.ndarray | None:
    """The model's user vocabulary (sorted strings) when it exposes one."""
    users = getattr(model, "users", None)
    if users is None or not hasattr(model, "recommend_batch"):
        return None
    return np.asarray(users).astype(str)


def build_table(
    model: Any, n: int, *, batch: int = 512, stop: threading.Event | None = None
) -> AnswerTable | None:
    """Compute the table (None when the model has no user vocabulary or `stop` is set)."""
    users = known_users(model)
    if users is None:
        return None
    order = np.argsort(users, kind="stable")
    users = users[order]
    id_parts: list[np.ndarray] = []
    score_parts: list[np.ndarray] = []
    for start in range(0, len(users), batch):
        if stop is not None and stop.is_set():
            return None
        ids, scores = model.recommend_batch(users[start : start + batch], n, True)
        id_parts.append(np.asarray(ids).astype(str))
        score_parts.append(np.asarray(scores, dtype=np.float32))
        time.sleep(0)  # let request threads have the GIL between batches
    all_ids = np.concatenate(id_parts) if id_parts else np.empty((0, n), dtype=str)
    vocab, codes = np.unique(all_ids, return_inverse=True)
    codes = codes.reshape(all_ids.shape).astype(np.int32)
    if "" in vocab:  # unfillable slots
        empty = int(np.searchsorted(vocab, ""))
        codes[codes == empty] = -1
    scores = np.concatenate(score_parts) if score_parts else np.empty((0, n), dtype=np.float32)
    scores = np.where(np.isfinite(scores), scores, 0.0).astype(np.float32)
    return AnswerTable(users, codes, scores, vocab)


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def shared_table(
    model: Any,
    n: int,
    key: str,
    cache_dir: str | Path | None,
    stop: threading.Event | None = None,
) -> AnswerTable | None:
    """The table for `key`: loaded from the cache folder, or built (once across workers) and saved."""
    if cache_dir is None:
        return build_table(model, n, stop=stop)
    try:
        root = private_dir(cache_dir)
    except UntrustedCacheError as exc:
        log.warning("%s; building answers in this worker without sharing them", exc)
        return build_table(model, n, stop=stop)
    folder = root / key
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    lock_fd = os.open(root / f"{key}.lock", flags, 0o600)
    with os.fdopen(lock_fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here while one builds
        try:
            if (folder / _MANIFEST).is_file():
                if _verified(folder):
                    try:
                        return AnswerTable.load(folder)
                    except (UntrustedCacheError, ValueError, OSError) as exc:
                        log.warning("answer table %s unusable, rebuilding: %s", folder, exc)
                else:
                    log.warning("answer table %s fails its checksums: rebuilding it", folder)
            table = build_table(model, n, stop=stop)
            if table is None:
                return None
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}."))
            table.save(tmp)
            _write_manifest(tmp)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
            return AnswerTable.load(folder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
