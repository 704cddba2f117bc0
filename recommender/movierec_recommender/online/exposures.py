"""Exposures: which user was shown which ranked movies, by which track and model version, and when."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from movierec_ingestor.events import format_time, parse_time


@dataclass(frozen=True)
class Exposure:
    """One answered (or failed) recommendation request, as its provenance event records it."""

    time: datetime
    user_id: int
    track: str
    model_version: str
    items: tuple[str, ...] = field(default_factory=tuple)
    status: int = 200
    latency_ms: float = 0.0

    def to_json(self) -> str:
        data = asdict(self)
        data["time"] = format_time(self.time)
        data["items"] = list(self.items)
        return json.dumps(data, separators=(",", ":"))


def exposure_from_dict(data: dict[str, object]) -> Exposure:
    """Accepts provenance events: items as ids or as {"movie_id", "score"} objects."""
    raw_items = data.get("items") or []
    items: list[str] = []
    for it in raw_items if isinstance(raw_items, list) else []:
        items.append(str(it["movie_id"]) if isinstance(it, dict) else str(it))
    when = data["time"]
    return Exposure(
        time=when if isinstance(when, datetime) else parse_time(str(when)),
        user_id=int(str(data["user_id"])),
        track=str(data.get("track") or "unknown"),
        model_version=str(data.get("model_version") or "unknown"),
        items=tuple(items),
        status=int(str(data.get("status", 200))),
        latency_ms=float(str(data.get("latency_ms", 0.0))),
    )


def read_exposures(path: Path) -> Iterator[Exposure]:
    """Read a JSON-lines provenance file; a malformed line is an error naming its line number."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield exposure_from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a provenance event: {exc}") from exc


def write_exposures(path: Path, exposures: Iterable[Exposure]) -> int:
    n = 0
    with path.open("a", encoding="utf-8") as fh:
        for e in exposures:
            fh.write(e.to_json() + "\n")
            n += 1
    return n
