"""Write the LaunchDarkly flag-data file the router reads (format: docs/CONTRACTS-internal.md).

The operator writes the same file (``movierec_operator.builders.build_flag_data``) without
importing this package: both are held to the golden files in ``tests/fixtures/flagdata/``, so a
user lands in the same bucket whoever wrote the file.

Tracks are listed stable first and the others after it, in the order given; LaunchDarkly hands
out buckets cumulatively in that order, so a track's bucket range only grows while its weight
grows: a user on the canary at 10 % is still on it at 25 % and 50 % (same salt).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRACK_FLAG = "movierec-track"
KILL_SWITCH_FLAG = "movierec-kill-switch"
DEFAULT_SALT = "movierec-track"
STABLE = "stable"
TOTAL_WEIGHT = 100_000


def _thousandths(weights: Mapping[str, int | float]) -> dict[str, int]:
    """Percent weights -> LaunchDarkly weights (thousandths of a percent) summing to 100000."""
    if any(w < 0 for w in weights.values()):
        raise ValueError(f"weights must be >= 0: {dict(weights)}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("weights must not all be zero")
    scaled = {k: round(w * TOTAL_WEIGHT / total) for k, w in weights.items()}
    # rounding drift goes to the first track (stable) so the sum is exact
    first = next(iter(scaled))
    scaled[first] += TOTAL_WEIGHT - sum(scaled.values())
    return scaled


def build_flags(
    weights: Mapping[str, int | float],
    kill_switch: bool = False,
    salt: str = DEFAULT_SALT,
    version: int = 1,
) -> dict[str, Any]:
    """The flag data: `movierec-track` as a percentage rollout, `movierec-kill-switch`."""
    ordered = dict(weights)
    if STABLE not in ordered:
        ordered = {STABLE: 0, **ordered}
    ordered = {STABLE: ordered.pop(STABLE), **ordered}
    scaled = _thousandths(ordered)
    names = list(scaled)
    track_flag = {
        "key": TRACK_FLAG,
        "version": version,
        "on": True,
        "variations": names,
        "offVariation": names.index(STABLE),
        "fallthrough": {
            "rollout": {
                "variations": [
                    {"variation": i, "weight": scaled[name]} for i, name in enumerate(names)
                ],
                "bucketBy": "key",
            }
        },
        "targets": [],
        "contextTargets": [],
        "rules": [],
        "prerequisites": [],
        "salt": salt,
        "trackEvents": False,
        "trackEventsFallthrough": False,
        "clientSide": False,
        "deleted": False,
    }
    kill_flag = {
        "key": KILL_SWITCH_FLAG,
        "version": version,
        "on": True,
        "variations": [False, True],
        "offVariation": 0,
        "fallthrough": {"variation": 1 if kill_switch else 0},
        "targets": [],
        "contextTargets": [],
        "rules": [],
        "prerequisites": [],
        "salt": KILL_SWITCH_FLAG,
        "trackEvents": False,
        "trackEventsFallthrough": False,
        "clientSide": False,
        "deleted": False,
    }
    return {"flags": {TRACK_FLAG: track_flag, KILL_SWITCH_FLAG: kill_flag}}


def write_flag_file(
    path: str | Path,
    weights: Mapping[str, int | float],
    kill_switch: bool = False,
    salt: str = DEFAULT_SALT,
) -> Path:
    """Write the flag-data file atomically (readers never see half a file); bumps the version."""
    path = Path(path)
    version = 1
    try:
        old = json.loads(path.read_text())
        version = int(old["flags"][TRACK_FLAG]["version"]) + 1
    except (OSError, ValueError, KeyError, TypeError):
        pass
    data = build_flags(weights, kill_switch=kill_switch, salt=salt, version=version)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)
    return path
