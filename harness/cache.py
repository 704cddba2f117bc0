"""Where the harness caches downloads and builds (~/.cache/movierec), and install locking."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

COMPLETE_MARKER = ".complete"


def cache_root() -> Path:
    """The cache folder, outside the repo so fresh clones reuse it (override: MOVIEREC_CACHE_DIR)."""
    root = Path(os.environ.get("MOVIEREC_CACHE_DIR") or Path.home() / ".cache" / "movierec")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def install_lock(name: str) -> Iterator[None]:
    """Hold an exclusive file lock so parallel sessions do not install the same thing twice."""
    lock_dir = cache_root() / "locks"
    lock_dir.mkdir(exist_ok=True)
    with (lock_dir / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_complete(folder: Path) -> bool:
    """True when an install into ``folder`` finished (the marker is written last)."""
    return (folder / COMPLETE_MARKER).is_file()


def mark_complete(folder: Path, note: str = "") -> None:
    """Record that the install into ``folder`` finished."""
    (folder / COMPLETE_MARKER).write_text(note + "\n")


def reset_dir(folder: Path) -> Path:
    """Remove a half-finished install and recreate the folder empty."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
