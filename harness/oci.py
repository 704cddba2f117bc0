"""OCI image archives from a directory (no docker, no registry) and their import into containerd."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.process import ServiceError, run
from harness.system import require_tool

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONTAINERD_NAMESPACE = "k8s.io"  # the namespace the kubelet's CRI reads images from
_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+zstd"


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config: what a container starts with."""

    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""  # numeric "uid:gid", so runAsNonRoot can verify it

    def as_json(self) -> dict[str, object]:
        """The `config` object of an OCI image configuration."""
        env = {"PATH": DEFAULT_PATH, **self.env}
        body: dict[str, object] = {
            "Env": [f"{key}={value}" for key, value in env.items()],
            "WorkingDir": self.workdir,
        }
        if self.entrypoint:
            body["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            body["Cmd"] = list(self.cmd)
        if self.user:
            body["User"] = self.user
        return body


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack(rootfs: Path, name: str, out: Path, config: ImageConfig) -> str:
    """Write ``rootfs`` as a one-layer OCI image-layout tar named ``name``; return the manifest digest.

    The layer is zstd-compressed (several times faster than gzip on 2 cores); containerd 1.6
    imports such layers. The archive is written beside ``out`` and renamed into place, so a
    crash never leaves a half archive that a cache check would accept.
    """
    zstd = require_tool("zstd", ["zstd"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw = Path(tmp) / "layer.tar"
        run(
            ["tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", raw, "."],
            what=f"archiving {rootfs}",
            timeout=1800,
        )
        diff_id = _sha256_file(raw)
        compressed = Path(tmp) / "layer.tar.zst"
        run(
            [zstd, "-q", "-T0", "-3", "--rm", "-o", compressed, raw],
            what="compressing the layer",
            timeout=1800,
        )
        layer_digest = _sha256_file(compressed)
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": config.as_json(),
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
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
                {
                    "mediaType": _LAYER_MEDIA_TYPE,
                    "digest": f"sha256:{layer_digest}",
                    "size": compressed.stat().st_size,
                }
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
            archive.add(compressed, arcname=f"blobs/sha256/{layer_digest}")
        os.replace(partial, out)
    return f"sha256:{manifest_digest}"


def import_archive(archive: Path, *, address: str, namespace: str = CONTAINERD_NAMESPACE) -> None:
    """Import an image archive into the containerd listening on ``address`` (a socket path)."""
    ctr = require_tool("ctr", ["containerd"])
    run(
        [ctr, "--address", address, "-n", namespace, "images", "import", archive],
        what=f"importing {archive.name} into containerd",
        timeout=900,
    )


def image_present(name: str, *, address: str, namespace: str = CONTAINERD_NAMESPACE) -> bool:
    """True when containerd already holds an image called ``name``."""
    ctr = require_tool("ctr", ["containerd"])
    done = subprocess.run(
        [ctr, "--address", address, "-n", namespace, "images", "ls", "-q", f"name=={name}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise ServiceError(f"ctr images ls failed: {done.stderr.strip()}")
    return name in done.stdout.split()
