"""How a promotion decision is written on a model version (tags), and the manual promotion that
`movierec promote` performs: a person moves `champion`, recorded like a forced promotion."""

from __future__ import annotations

import getpass
import logging
from datetime import UTC, datetime

log = logging.getLogger(__name__)

MANUAL = "manual"


def actor() -> str:
    """Who acts: $LOGNAME / $USER (a CronJob or CI sets one), else the OS account."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def decision_tags(
    outcome: str,
    promoted: bool,
    reason: str,
    *,
    previous_champion: str | None,
    forced_reason: str | None = None,
) -> dict[str, str]:
    """The `promotion.*` tags: what was decided, why, by whom, when, against which champion."""
    tags = {
        "promotion.outcome": outcome,
        "promotion.promoted": str(promoted).lower(),
        "promotion.reason": reason,
        "promotion.forced": str(forced_reason is not None).lower(),
        "promotion.by": actor(),
        "promotion.at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "promotion.previous_champion": previous_champion or "",
    }
    if forced_reason is not None:
        tags["promotion.forced_reason"] = forced_reason
    return tags


def promote_version(
    name: str, version: str, reason: str, tracking_uri: str | None = None
) -> dict[str, str | None]:
    """Point `champion` at ``version`` (after checking it downloads, loads and answers)."""
    from movierec_recommender import registry

    if not reason.strip():
        from movierec_ingestor.errors import BadInputError

        raise BadInputError("--reason must say why the champion changes")
    # refuse a version that could not serve before making it the one that must
    _, version = registry.download_model(f"models:/{name}/{version}", tracking_uri)
    before = registry.get_alias_version(name, registry.CHAMPION, tracking_uri)
    registry.set_version_tags(
        name,
        version,
        decision_tags(
            MANUAL, True, f"manual: {reason}", previous_champion=before, forced_reason=reason
        ),
        tracking_uri,
    )
    registry.set_alias(name, registry.CHAMPION, version, tracking_uri)
    log.info("champion of %s: %s -> %s (%s)", name, before, version, reason)
    return {"name": name, "champion_before": before, "champion_after": version, "reason": reason}
