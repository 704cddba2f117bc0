"""Layers from an overlay mount: overlayfs deletion marks rewritten as OCI whiteouts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

_OVERLAY_OPAQUE = "trusted.overlay.opaque"


def overlay_upper_to_layer(upper: Path) -> None:
    """Rewrite an overlayfs upper directory's deletion marks as OCI whiteout files, in place.

    overlayfs records a deleted file as a 0/0 character device and a replaced directory with
    an ``opaque`` xattr; an image layer says the same with ``.wh.<name>`` and ``.wh..wh..opq``.
    """
    for folder, dirs, files in os.walk(upper):
        base = Path(folder)
        for name in [*files, *dirs]:
            path = base / name
            info = path.lstat()
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                path.unlink()
                (base / f".wh.{name}").touch()
        try:
            opaque = os.getxattr(base, _OVERLAY_OPAQUE, follow_symlinks=False) == b"y"
        except OSError:
            opaque = False
        if opaque:
            os.removexattr(base, _OVERLAY_OPAQUE, follow_symlinks=False)
            (base / ".wh..wh..opq").touch()
