"""Multi-layer OCI image archives: zstd layers made from directories (cached), one image-layout tar."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.oci import ImageConfig
from harness.process import run
from harness.system import require_tool

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+zstd"
_OVERLAY_OPAQUE = "trusted.overlay.opaque"


@dataclass(frozen=True)
class Layer:
    """A compressed layer blob and the digests an image config and manifest name it by."""

    blob: Path
    diff_id: str  # sha256 of the uncompressed tar (the config's rootfs.diff_ids)
    digest: str  # sha256 of the blob (the manifest's layer digest)
    size: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def cached_layer(blob: Path) -> Layer | None:
    """The layer stored at ``blob`` by :func:`layer_from_dir`, if it is complete."""
    meta = blob.with_suffix(".json")
    if not (blob.is_file() and meta.is_file()):
        return None
    data = json.loads(meta.read_text())
    return Layer(blob, data["diff_id"], data["digest"], data["size"])


def layer_from_dir(tree: Path, blob: Path) -> Layer:
    """Archive ``tree`` as a zstd layer at ``blob`` (its digests beside it in ``.json``)."""
    zstd = require_tool("zstd", ["zstd"])
    blob.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=blob.parent) as tmp:
        raw = Path(tmp) / "layer.tar"
        run(
            ["tar", "--numeric-owner", "--xattrs", "-C", tree, "-cf", raw, "."],
            what=f"archiving {tree}",
            timeout=1800,
        )
        diff_id = _sha256(raw)
        compressed = Path(tmp) / "layer.tar.zst"
        run(
            [zstd, "-q", "-T0", "-3", "--rm", "-o", compressed, raw],
            what="compressing a layer",
            timeout=1800,
        )
        layer = Layer(blob, diff_id, _sha256(compressed), compressed.stat().st_size)
        os.replace(compressed, blob)
    meta = {"diff_id": layer.diff_id, "digest": layer.digest, "size": layer.size}
    blob.with_suffix(".json").write_text(json.dumps(meta))
    return layer


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


def write_archive(name: str, layers: Sequence[Layer], config: ImageConfig, out: Path) -> str:
    """Write an OCI image-layout tar named ``name`` from ``layers``; return the manifest digest.

    Written beside ``out`` and renamed into place, so a crash never leaves a half archive.
    """
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config.as_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config_digest}",
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                },
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    partial = out.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:

        def add_bytes(member: str, data: bytes) -> None:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))

        add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes("index.json", json.dumps(index).encode())
        add_bytes(f"blobs/sha256/{config_digest}", config_bytes)
        add_bytes(f"blobs/sha256/{manifest_digest}", manifest_bytes)
        for layer in layers:
            archive.add(layer.blob, arcname=f"blobs/sha256/{layer.digest.split(':', 1)[1]}")
    os.replace(partial, out)
    return f"sha256:{manifest_digest}"
