"""Reading and writing .services.env, the shell-variable file describing running services."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

HEADER = (
    "# Real services for tests, written by `python -m harness up` (`make services-up`).\n"
    "# Source it in a shell; `python -m harness down` stops the PIDs below.\n"
)


def default_path() -> Path:
    """``.services.env`` at the repo root (override: MOVIEREC_SERVICES_ENV)."""
    override = os.environ.get("MOVIEREC_SERVICES_ENV")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / ".services.env"


def read(path: Path | None = None) -> dict[str, str]:
    """The variables in the file ({} when there is none)."""
    target = path or default_path()
    if not target.exists():
        return {}
    values: dict[str, str] = {}
    for line in target.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        words = shlex.split(stripped.removeprefix("export "))
        if words and "=" in words[0]:
            key, value = words[0].split("=", 1)
            values[key] = value
    return values


def write(values: Mapping[str, str], path: Path | None = None) -> Path:
    """Write the variables atomically (readable by ``.`` in sh and by make's ``include``)."""
    target = path or default_path()
    body = "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(HEADER + body)
    temporary.chmod(0o600)
    temporary.replace(target)
    return target


def remove(path: Path | None = None) -> None:
    """Delete the file if it exists."""
    (path or default_path()).unlink(missing_ok=True)
