"""Go builds through the module proxy, with GOCACHE/GOMODCACHE kept in ~/.cache/movierec/go."""

from __future__ import annotations

import logging
import os
import re
import shutil
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from harness.cache import cache_root, install_lock, is_complete, mark_complete, reset_dir
from harness.process import ServiceError, run

log = logging.getLogger(__name__)

MIN_GO = (1, 26)  # etcd 3.6.16's go.mod says go 1.26.0; Kubernetes 1.34 needs 1.24+
TOOLCHAIN = "1.26.8"  # fetched from the module proxy (golang.org/toolchain) when go is older
DEFAULT_PROXY = "https://proxy.golang.org"


def go_root() -> Path:
    """The folder for Go's build and module caches."""
    return cache_root() / "go"


def _version(go: str) -> tuple[int, int] | None:
    try:
        output = run([go, "env", "GOVERSION"], what="go env GOVERSION", timeout=60)
    except ServiceError:
        return None
    match = re.match(r"go(\d+)\.(\d+)", output.strip())
    return (int(match[1]), int(match[2])) if match else None


def go_binary() -> str:
    """A go command new enough for the builds: the machine's, or a toolchain from the proxy."""
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).exists():
            version = _version(candidate)
            if version is not None and version >= MIN_GO:
                return candidate
    return str(_download_toolchain() / "bin" / "go")


def _proxy() -> str:
    for entry in re.split(r"[,|]", os.environ.get("GOPROXY", "")):
        if entry.startswith("http"):
            return entry.rstrip("/")
    return DEFAULT_PROXY


def _download_toolchain() -> Path:
    """Fetch the official Go toolchain module zip (linux-amd64) and unpack it into the cache."""
    folder = go_root() / f"toolchain-go{TOOLCHAIN}"
    if is_complete(folder):
        return folder
    with install_lock("go-toolchain"):
        if is_complete(folder):
            return folder
        reset_dir(folder)
        module = f"v0.0.1-go{TOOLCHAIN}.linux-amd64"
        url = f"{_proxy()}/golang.org/toolchain/@v/{module}.zip"
        archive = folder / "toolchain.zip"
        log.info("downloading Go %s from %s", TOOLCHAIN, url)
        try:
            with urllib.request.urlopen(url, timeout=600) as response, archive.open("wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as err:
            raise ServiceError(f"cannot download the Go toolchain from {url}: {err}") from err
        prefix = f"golang.org/toolchain@{module}/"
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                if info.is_dir() or not info.filename.startswith(prefix):
                    continue
                target = folder / info.filename[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                mode = (info.external_attr >> 16) & 0o777
                target.chmod(mode or 0o644)
        archive.unlink()
        mark_complete(folder, f"go {TOOLCHAIN}")
    return folder


def go_env() -> dict[str, str]:
    """Environment for reproducible, cached, static builds on few cores."""
    root = go_root()
    return {
        **os.environ,
        "GOCACHE": str(root / "cache"),
        "GOMODCACHE": str(root / "mod"),
        "GOPATH": str(root / "path"),
        "GOPROXY": os.environ.get("GOPROXY") or f"{DEFAULT_PROXY},direct",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        # Other work shares the machine's cores; MOVIEREC_GO_JOBS raises the build parallelism.
        "GOFLAGS": f"-buildvcs=false -p={os.environ.get('MOVIEREC_GO_JOBS', '2')}",
        "GOWORK": "off",
    }


def build(
    *,
    name: str,
    module_dir: Path,
    go_mod: str,
    packages: Sequence[str],
    out_dir: Path,
    binary_name: str | None = None,
    ldflags: str = "-s -w",
) -> None:
    """Write a wrapper module, resolve ``packages`` through the proxy and build them to out_dir.

    ``binary_name`` names the output of a single package (go would call
    ``go.etcd.io/etcd/server/v3`` "server").
    """
    go = go_binary()
    env = go_env()
    reset_dir(module_dir)
    (module_dir / "go.mod").write_text(go_mod)
    build_log = module_dir / "build.log"
    log.info("building %s with %s (the first build takes minutes; log %s)", name, go, build_log)
    run(
        [go, "get", *packages],
        what=f"resolving {name} modules",
        env=env,
        cwd=module_dir,
        timeout=3600,
        log_path=build_log,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    output = str(out_dir / binary_name) if binary_name else f"{out_dir}/"
    run(
        [go, "build", "-ldflags", ldflags, "-o", output, *_without_versions(packages)],
        what=f"building {name}",
        env=env,
        cwd=module_dir,
        timeout=7200,
        log_path=build_log,
    )


def _without_versions(packages: Sequence[str]) -> list[str]:
    return [package.split("@", 1)[0] for package in packages]
